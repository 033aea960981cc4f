// import gemm/common.wgsl

// Subgroup GEMM (variant subgroup; needs wgpu::Features::SUBGROUP). No
// workgroup memory and no barriers. A workgroup of WG_X invocations computes
// TM rows x BN = WG_X * TN columns of C: every invocation the same TM rows
// and its own TN columns. Per BK-deep step, lane l of each subgroup loads
// column k0 + l % BK of those rows of A (one word per row, consecutive lanes
// reading consecutive words), and every invocation takes the value of each
// (row, k) from lane k with subgroupBroadcast at a constant lane, which a
// SIMD compiler turns into a register splat; op(B) is read from global
// memory. So each invocation loads TM / BK words of A and TN of B per k
// instead of TM + TN.
//
// The step is generated straight-line code (src/gpu/gemm.rs): `sg_step_fast`
// for interior workgroups (no checks) and `sg_step_edge` (every load
// checked). It loads the BK rows of op(B) first, then runs row by row, all
// BK fmas of a row's accumulators together (still ascending k), so they can
// stay in registers for the whole step. The kernel needs subgroups of at least BK lanes, all full, which
// the driver checks against the adapter's subgroup sizes; lanes beyond BK
// hold copies. The tuner still compares its result bit for bit with the
// reference variant before using it.

// Element (row, kk) of A, unchecked (interior workgroups).
fn a_fast(row: u32, kk: u32) -> f32 {
    return mat_a[gp.a_off + row * gp.lda + kk];
}

// Columns col .. col + 3 of row kk of op(B), unchecked.
fn b4_fast(col: u32, kk: u32) -> vec4<f32> {
    let i = b_index(col, kk);
    let step = select(1u, gp.ldb, TRANS_B); // to the next column
    return vec4<f32>(mat_b[i], mat_b[i + step], mat_b[i + 2u * step], mat_b[i + 3u * step]);
}

// The same, each element checked (zero outside).
fn b4_edge(col: u32, kk: u32) -> vec4<f32> {
    return vec4<f32>(load_b(col, kk), load_b(col + 1u, kk), load_b(col + 2u, kk),
                     load_b(col + 3u, kk));
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * BM;
    let col = wid.x * BN + lid.x * TN;
    let fast = block_inside(row0, wid.x * BN, BM, BN, BK);
    acc_clear();
    // Both loops are uniform across the workgroup: every lane reaches every
    // broadcast.
    if (fast) {
        for (var k0 = 0u; k0 < gp.k; k0 += BK) {
            sg_step_fast(row0, col, k0, lane % BK);
        }
    } else {
        for (var k0 = 0u; k0 < gp.k; k0 += BK) {
            sg_step_edge(row0, col, k0, lane % BK);
        }
    }
    acc_store(row0, col, !fast);
}
