// Workgroup-tiled GEMM (variants tiled64, tiled128x64, tiled128). A workgroup
// of WG_X x WG_Y invocations computes a BM x BN tile of C (BM = WG_Y * TM,
// BN = WG_X * TN); each invocation a TM x TN register tile, reading its
// operands from workgroup memory as vec4 loads. The k loop is double-buffered:
// while the workgroup multiplies one BK-deep slice, each invocation holds the
// next slice's global loads in registers and then stores them into the other
// buffer, so one barrier per slice suffices.
//
// Interior workgroups (the whole tile and every operand inside the matrices
// and buffers, k a multiple of BK) load and store without per-element checks;
// edge workgroups check every element.

const INVOCATIONS: u32 = WG_X * WG_Y;
// Elements of each operand slice one invocation loads per k-step.
const LOADS_A: u32 = BM * BK / INVOCATIONS;
const LOADS_B: u32 = BN * BK / INVOCATIONS;
const TILE_A: u32 = BK * BM / 4u; // vec4s per buffer
const TILE_B: u32 = BK * BN / 4u;

// Slices stored k-major: element (kk, i) of buffer s is component i % 4 of
// vec4 s * TILE + kk * (B? / 4) + i / 4.
var<workgroup> tile_a: array<vec4<f32>, 2u * TILE_A>;
var<workgroup> tile_b: array<vec4<f32>, 2u * TILE_B>;

// Which (row or column, kk) of a slice element e of A or B is.
fn a_slot(e: u32) -> vec2<u32> {
    // Consecutive invocations walk k (contiguous in A).
    return vec2<u32>(e / BK, e % BK);
}

fn b_slot(e: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>(e / BK, e % BK); // B is n x k: walk k
    }
    return vec2<u32>(e % BN, e / BN); // B is k x n: walk n
}

fn fetch_a(t: u32, row0: u32, k0: u32, fast: bool) -> array<f32, LOADS_A> {
    var r: array<f32, LOADS_A>;
    for (var q = 0u; q < LOADS_A; q++) {
        let s = a_slot(t + INVOCATIONS * q);
        if (fast) {
            r[q] = mat_a[gp.a_off + (row0 + s.x) * gp.lda + k0 + s.y];
        } else {
            r[q] = load_a(row0 + s.x, k0 + s.y);
        }
    }
    return r;
}

fn fetch_b(t: u32, col0: u32, k0: u32, fast: bool) -> array<f32, LOADS_B> {
    var r: array<f32, LOADS_B>;
    for (var q = 0u; q < LOADS_B; q++) {
        let s = b_slot(t + INVOCATIONS * q);
        if (fast) {
            r[q] = mat_b[b_index(col0 + s.x, k0 + s.y)];
        } else {
            r[q] = load_b(col0 + s.x, k0 + s.y);
        }
    }
    return r;
}

fn stash(t: u32, buf: u32, ra: array<f32, LOADS_A>, rb: array<f32, LOADS_B>) {
    for (var q = 0u; q < LOADS_A; q++) {
        let s = a_slot(t + INVOCATIONS * q);
        tile_a[buf * TILE_A + s.y * (BM / 4u) + s.x / 4u][s.x % 4u] = ra[q];
    }
    for (var q = 0u; q < LOADS_B; q++) {
        let s = b_slot(t + INVOCATIONS * q);
        tile_b[buf * TILE_B + s.y * (BN / 4u) + s.x / 4u][s.x % 4u] = rb[q];
    }
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x; // columns TN tx .. TN tx + TN - 1 of the tile
    let ty = lid.y; // rows TM ty .. TM ty + TM - 1
    let t = ty * WG_X + tx;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let fast = block_inside(row0, col0, BM, BN, BK);
    // acc[i * TN / 4 + j] = row TM ty + i, columns TN tx + 4 j .. + 3
    var acc: array<vec4<f32>, TM * TN / 4u>;
    for (var i = 0u; i < TM * TN / 4u; i++) { acc[i] = vec4<f32>(0.0); }

    stash(t, 0u, fetch_a(t, row0, 0u, fast), fetch_b(t, col0, 0u, fast));
    workgroupBarrier();
    var buf = 0u;
    for (var k0 = 0u; k0 < gp.k; k0 += BK) {
        let more = k0 + BK < gp.k;
        var ra: array<f32, LOADS_A>;
        var rb: array<f32, LOADS_B>;
        if (more) {
            ra = fetch_a(t, row0, k0 + BK, fast);
            rb = fetch_b(t, col0, k0 + BK, fast);
        }
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<vec4<f32>, TM / 4u>;
            for (var i = 0u; i < TM / 4u; i++) {
                a[i] = tile_a[buf * TILE_A + kk * (BM / 4u) + ty * (TM / 4u) + i];
            }
            for (var j = 0u; j < TN / 4u; j++) {
                let b = tile_b[buf * TILE_B + kk * (BN / 4u) + tx * (TN / 4u) + j];
                for (var i = 0u; i < TM; i++) {
                    let slot = i * (TN / 4u) + j;
                    acc[slot] = fma(vec4<f32>(a[i / 4u][i % 4u]), b, acc[slot]);
                }
            }
        }
        if (more) {
            stash(t, 1u - buf, ra, rb);
        }
        workgroupBarrier();
        buf = 1u - buf;
    }

    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store_c(row0 + TM * ty + i, col0 + TN * tx + j, acc[i * (TN / 4u) + j / 4u][j % 4u], !fast);
        }
    }
}
