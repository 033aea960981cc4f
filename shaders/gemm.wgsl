// Tiled single-precision matrix multiply: C (+)= A * op(B).
//   A: m x k, row-major with leading dimension lda, starting at a_off.
//   B: TRANS_B = true : n x k (row-major, so C = A * B^T; the forward pass,
//                       where B is a weight matrix [out, in], and Gram matrices)
//      TRANS_B = false: k x n (row-major, so C = A * B; the backward pass).
//   C: m x n, leading dimension ldc, starting at c_off; accumulate != 0 adds.
// A workgroup of 16 x 16 invocations computes a 64 x 64 tile of C; each
// invocation a 4 x 4 register tile, reading its operands from workgroup memory
// as vec4 loads. Every global load is bounds-checked (zero-filled outside the
// matrix) and every store checks row < m and col < n.
//
// The B-tile load is the swappable step: `load_b` is the only place that reads
// B, so a variant that regenerates weight tiles from the RNG can replace it.

struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> gp: GemmParams;
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<f32>;

override TRANS_B: bool = true;

// BM, BN, BK (the tile sizes) come from the prelude (src/gpu/layout.rs).

// Tiles stored k-major: tile_a[kk][i] for i in 0..BM, as vec4 over i.
var<workgroup> tile_a: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> tile_b: array<vec4<f32>, BK * BN / 4u>;

fn load_a(row: u32, kk: u32) -> f32 {
    if (row < gp.m && kk < gp.k) {
        let idx = gp.a_off + row * gp.lda + kk;
        if (idx < arrayLength(&mat_a)) { return mat_a[idx]; }
    }
    return 0.0;
}

fn load_b(col: u32, kk: u32) -> f32 {
    if (col < gp.n && kk < gp.k) {
        var idx: u32;
        if (TRANS_B) {
            idx = gp.b_off + col * gp.ldb + kk;
        } else {
            idx = gp.b_off + kk * gp.ldb + col;
        }
        if (idx < arrayLength(&mat_b)) { return mat_b[idx]; }
    }
    return 0.0;
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x; // column group: columns 4 tx .. 4 tx + 3 of the tile
    let ty = lid.y; // row group: rows 4 ty .. 4 ty + 3
    let t = ty * 16u + tx;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<vec4<f32>, 4>; // acc[i] = row 4 ty + i, columns 4 tx .. +3
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < gp.k; k0 += BK) {
        // Load 1024 elements of each operand, 4 per invocation, into the
        // k-major tiles (element (kk, i) is component i % 4 of vec4 kk * 16 + i / 4).
        for (var q = 0u; q < 4u; q++) {
            let e = t + 256u * q;
            // A: consecutive invocations walk k (contiguous in memory).
            let ar = e / BK;
            let ak = e % BK;
            tile_a[ak * 16u + ar / 4u][ar % 4u] = load_a(row0 + ar, k0 + ak);
            var bk: u32;
            var bc: u32;
            if (TRANS_B) {
                bc = e / BK;
                bk = e % BK;
            } else {
                // B is k x n: consecutive invocations walk n (contiguous).
                bk = e / BN;
                bc = e % BN;
            }
            tile_b[bk * 16u + bc / 4u][bc % 4u] = load_b(col0 + bc, k0 + bk);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = tile_a[kk * 16u + ty];
            let b = tile_b[kk * 16u + tx];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let row = row0 + 4u * ty + i;
        if (row >= gp.m) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + 4u * tx + j;
            if (col >= gp.n) { continue; }
            let idx = gp.c_off + row * gp.ldc + col;
            if (idx >= arrayLength(&mat_c)) { continue; }
            if (gp.accumulate != 0u) {
                mat_c[idx] = mat_c[idx] + acc[i][j];
            } else {
                mat_c[idx] = acc[i][j];
            }
        }
    }
}
