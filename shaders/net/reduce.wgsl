// Per-workgroup partial statistics of a tensor, finished on the host in f64.
//
// Each workgroup covers ITEMS * RED_WG consecutive elements. It first finds the
// largest finite |x|, picks the power of two s = 2^e >= it (e clamped to
// [-126, 126]) and sums y = x * 2^-e and y^2 — exact scalings, so the sums
// cannot overflow even when the network explodes. Record (8 words):
//   [s, sum y, sum y^2, finite count, exact zeros, saturated, non-finite, 0]
// The float sums carry a relative error of at most (ITEMS + 8) * 2^-24 of
// sum |y| (ITEMS sequential additions, then an 8-level tree). The square is
// accumulated by an explicit fma, so no driver contracts it differently; the
// CPU mirror (src/net/mirror.rs) runs the same sequence and tree.

// RED_WG, ITEMS and RECORD_WORDS come from the prelude (src/gpu/layout.rs).

struct RedParams {
    n: u32,
    // First record of this tensor in `recs`.
    rec: u32,
    // Count x < sat_lo or x > sat_hi as saturated.
    sat_enabled: u32,
    _pad0: u32,
    sat_lo: f32,
    sat_hi: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> rp: RedParams;
@group(0) @binding(1) var<storage, read> red_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> recs: array<u32>;

var<workgroup> red_f: array<f32, RED_WG>;
var<workgroup> red_g: array<f32, RED_WG>;
var<workgroup> red_u: array<vec4<u32>, RED_WG>;

// By the bits, so fast-math cannot fold the test away.
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn element(base: u32, q: u32, l: u32) -> u32 {
    return base + q * RED_WG + l;
}

@compute @workgroup_size(RED_WG)
fn partial_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let base = g * RED_WG * ITEMS;
    let n = min(rp.n, arrayLength(&red_x));

    var mx = 0.0;
    for (var q = 0u; q < ITEMS; q++) {
        let i = element(base, q, l);
        if (i < n) {
            let x = red_x[i];
            if (finite(x)) { mx = max(mx, abs(x)); }
        }
    }
    red_f[l] = mx;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { red_f[l] = max(red_f[l], red_f[l + s]); }
        workgroupBarrier();
    }
    let m = red_f[0];
    workgroupBarrier();
    // frexp(m).exp clamped to [-126, 126], from the bits: the exponent field
    // minus 126 (a subnormal m, field 0, clamps to -126 either way). Integer
    // operations, so no device's frexp on subnormals matters (lavapipe's is
    // wrong there).
    var e = 0i;
    if (m > 0.0) { e = clamp(i32((bitcast<u32>(m) >> 23u) & 0xffu) - 126i, -126i, 126i); }
    let inv = bitcast<f32>(u32(127i - e) << 23u);

    var s1 = 0.0;
    var s2 = 0.0;
    var counts = vec4<u32>(0u); // finite, zeros, saturated, non-finite
    for (var q = 0u; q < ITEMS; q++) {
        let i = element(base, q, l);
        if (i < n) {
            let x = red_x[i];
            if (finite(x)) {
                let y = x * inv;
                s1 += y;
                s2 = fma(y, y, s2);
                counts.x += 1u;
                if (x == 0.0) { counts.y += 1u; }
                if (rp.sat_enabled != 0u && (x < rp.sat_lo || x > rp.sat_hi)) { counts.z += 1u; }
            } else {
                counts.w += 1u;
            }
        }
    }
    red_f[l] = s1;
    red_g[l] = s2;
    red_u[l] = counts;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            red_f[l] += red_f[l + s];
            red_g[l] += red_g[l + s];
            red_u[l] += red_u[l + s];
        }
        workgroupBarrier();
    }
    if (l == 0u) {
        let r = (rp.rec + g) * RECORD_WORDS;
        if (r + 7u < arrayLength(&recs)) {
            recs[r] = u32(127i + e) << 23u;
            recs[r + 1u] = bitcast<u32>(red_f[0]);
            recs[r + 2u] = bitcast<u32>(red_g[0]);
            recs[r + 3u] = red_u[0].x;
            recs[r + 4u] = red_u[0].y;
            recs[r + 5u] = red_u[0].z;
            recs[r + 6u] = red_u[0].w;
            recs[r + 7u] = 0u;
        }
    }
}
