// import gemm/common.wgsl

// Workgroup-tiled GEMM (variants tiled64, tiled128, tiled128wide, tiled64wide).
// A workgroup of WG_X x WG_Y invocations computes a BM x BN tile of C
// (BM = WG_Y * TM, BN = WG_X * TN); each invocation a TM x TN register tile
// (generated straight-line code, src/gpu/gemm.rs), reading its operands from
// workgroup memory as vec4 loads. The k loop is double-buffered:
// while the workgroup multiplies one BK-deep slice, each invocation holds the
// next slice's global loads in registers and then stores them into the other
// buffer, so one barrier per slice suffices.
//
// Interior workgroups (the whole tile and every operand inside the matrices
// and buffers, k a multiple of BK) load and store without per-element checks;
// edge workgroups check every element.

const INVOCATIONS: u32 = WG_X * WG_Y;
// Quads (4 rows of A or 4 columns of op(B) at one k) of each operand slice
// one invocation loads per k-step.
const QUADS_A: u32 = BM * BK / (4u * INVOCATIONS);
const QUADS_B: u32 = BN * BK / (4u * INVOCATIONS);
const TILE_A: u32 = BK * BM / 4u; // vec4s per buffer
const TILE_B: u32 = BK * BN / 4u;

// Slices stored k-major: element (kk, i) of buffer s is component i % 4 of
// vec4 s * TILE + kk * (B? / 4) + i / 4, so each quad is one vec4 store.
var<workgroup> tile_a: array<vec4<f32>, 2u * TILE_A>;
var<workgroup> tile_b: array<vec4<f32>, 2u * TILE_B>;

// (quad, kk) of quad g of a slice of A, or of B^T: consecutive invocations
// walk k, which is contiguous in memory.
fn k_fastest(g: u32) -> vec2<u32> {
    return vec2<u32>(g / BK, g % BK);
}

// (quad, kk) of quad g of a slice of op(B).
fn b_quad(g: u32) -> vec2<u32> {
    if (TRANS_B) {
        return k_fastest(g);
    }
    return vec2<u32>(g % (BN / 4u), g / (BN / 4u)); // B is k x n: walk n
}

fn fetch_a(t: u32, row0: u32, k0: u32, fast: bool) -> array<vec4<f32>, QUADS_A> {
    var r: array<vec4<f32>, QUADS_A>;
    for (var q = 0u; q < QUADS_A; q++) {
        let s = k_fastest(t + INVOCATIONS * q);
        let row = row0 + 4u * s.x;
        let kk = k0 + s.y;
        if (fast) {
            let i = gp.a_off + row * gp.lda + kk;
            r[q] = vec4<f32>(mat_a[i], mat_a[i + gp.lda], mat_a[i + 2u * gp.lda],
                             mat_a[i + 3u * gp.lda]);
        } else {
            r[q] = vec4<f32>(load_a(row, kk), load_a(row + 1u, kk), load_a(row + 2u, kk),
                             load_a(row + 3u, kk));
        }
    }
    return r;
}

fn fetch_b(t: u32, col0: u32, k0: u32, fast: bool) -> array<vec4<f32>, QUADS_B> {
    var r: array<vec4<f32>, QUADS_B>;
    for (var q = 0u; q < QUADS_B; q++) {
        let s = b_quad(t + INVOCATIONS * q);
        let col = col0 + 4u * s.x;
        let kk = k0 + s.y;
        if (fast) {
            let i = b_index(col, kk);
            let step = select(1u, gp.ldb, TRANS_B); // to the next column
            r[q] = vec4<f32>(mat_b[i], mat_b[i + step], mat_b[i + 2u * step],
                             mat_b[i + 3u * step]);
        } else {
            r[q] = vec4<f32>(load_b(col, kk), load_b(col + 1u, kk), load_b(col + 2u, kk),
                             load_b(col + 3u, kk));
        }
    }
    return r;
}

fn stash(t: u32, buf: u32, ra: array<vec4<f32>, QUADS_A>, rb: array<vec4<f32>, QUADS_B>) {
    for (var q = 0u; q < QUADS_A; q++) {
        let s = k_fastest(t + INVOCATIONS * q);
        tile_a[buf * TILE_A + s.y * (BM / 4u) + s.x] = ra[q];
    }
    for (var q = 0u; q < QUADS_B; q++) {
        let s = b_quad(t + INVOCATIONS * q);
        tile_b[buf * TILE_B + s.y * (BN / 4u) + s.x] = rb[q];
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
    acc_clear();

    stash(t, 0u, fetch_a(t, row0, 0u, fast), fetch_b(t, col0, 0u, fast));
    workgroupBarrier();
    var buf = 0u;
    for (var k0 = 0u; k0 < gp.k; k0 += BK) {
        let more = k0 + BK < gp.k;
        var ra: array<vec4<f32>, QUADS_A>;
        var rb: array<vec4<f32>, QUADS_B>;
        if (more) {
            ra = fetch_a(t, row0, k0 + BK, fast);
            rb = fetch_b(t, col0, k0 + BK, fast);
        }
        for (var kk = 0u; kk < BK; kk++) {
            acc_step(buf * TILE_A + kk * (BM / 4u) + ty * (TM / 4u),
                     buf * TILE_B + kk * (BN / 4u) + tx * (TN / 4u));
        }
        if (more) {
            stash(t, 1u - buf, ra, rb);
        }
        workgroupBarrier();
        buf = 1u - buf;
    }

    acc_store(row0 + TM * ty, col0 + TN * tx, !fast);
}
