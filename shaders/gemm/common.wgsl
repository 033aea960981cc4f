// import @gemm_tile

// What every GEMM variant shares: C (+)= A * op(B) with one parameter layout
// and one binding layout, so the driver can swap variants freely.
//   A: m x k, row-major with leading dimension lda, starting at a_off.
//   B: TRANS_B = true : n x k (row-major, so C = A * B^T; the forward pass,
//                       where B is a weight matrix [out, in], and Gram matrices)
//      TRANS_B = false: k x n (row-major, so C = A * B; the backward pass).
//   C: m x n, leading dimension ldc, starting at c_off; accumulate != 0 adds.
//
// Every variant computes each element of C as the same chain,
//   acc = 0; for k ascending: acc = fma(A[row][k], B(k, col), acc);
//   C = acc (or C + acc when accumulating),
// so on devices whose fma is exact (Vulkan, Metal) all variants give
// bit-identical results; they differ only in how they stage operands.
// Padding beyond k adds fma(0, 0, acc) = acc exactly (acc is never -0).
//
// The variant's tile constants (BM, BN, BK, TM, TN, WG_X, WG_Y) come from a
// header the driver generates (src/gpu/gemm.rs).

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

// Element (row, kk) of A, zero outside the matrix or the buffer.
fn load_a(row: u32, kk: u32) -> f32 {
    if (row < gp.m && kk < gp.k) {
        let idx = gp.a_off + row * gp.lda + kk;
        if (idx < arrayLength(&mat_a)) { return mat_a[idx]; }
    }
    return 0.0;
}

// Index of element (kk, col) of op(B).
fn b_index(col: u32, kk: u32) -> u32 {
    if (TRANS_B) {
        return gp.b_off + col * gp.ldb + kk;
    }
    return gp.b_off + kk * gp.ldb + col;
}

// Element (kk, col) of op(B), zero outside the matrix or the buffer.
fn load_b(col: u32, kk: u32) -> f32 {
    if (col < gp.n && kk < gp.k) {
        let idx = b_index(col, kk);
        if (idx < arrayLength(&mat_b)) { return mat_b[idx]; }
    }
    return 0.0;
}

// Whether the block of C rows [row0, row0 + rows) x columns [col0, col0 + cols)
// and every operand element it reads lie inside the matrices and the buffers:
// then a kernel may skip the per-element checks (its fast interior path).
// Needs k > 0 and k a multiple of `k_step`.
fn block_inside(row0: u32, col0: u32, rows: u32, cols: u32, k_step: u32) -> bool {
    if (row0 + rows > gp.m || col0 + cols > gp.n || gp.k == 0u || gp.k % k_step != 0u) {
        return false;
    }
    let last_row = row0 + rows - 1u;
    let last_col = col0 + cols - 1u;
    let a_last = gp.a_off + last_row * gp.lda + gp.k - 1u;
    let b_last = max(b_index(last_col, gp.k - 1u), b_index(col0, gp.k - 1u));
    let c_last = gp.c_off + last_row * gp.ldc + last_col;
    return a_last < arrayLength(&mat_a) && b_last < arrayLength(&mat_b)
        && c_last < arrayLength(&mat_c);
}

// Stores one finished element; `checked` bounds-checks it first.
fn store_c(row: u32, col: u32, v: f32, checked: bool) {
    if (checked && (row >= gp.m || col >= gp.n)) { return; }
    let idx = gp.c_off + row * gp.ldc + col;
    if (checked && idx >= arrayLength(&mat_c)) { return; }
    if (gp.accumulate != 0u) {
        mat_c[idx] = mat_c[idx] + v;
    } else {
        mat_c[idx] = v;
    }
}
