// Subgroup GEMM (variant subgroup; needs wgpu::Features::SUBGROUP). No
// workgroup memory and no barriers: a workgroup of WG_X invocations computes
// TM rows x BN = WG_X * TN columns of C, every invocation the same TM rows
// and its own TN columns. The rows of A are loaded once per subgroup, one k
// per lane (coalesced), and handed round with subgroupShuffle; op(B) is read
// from global memory. All lanes of a workgroup share the rows, so the result
// does not depend on how the driver groups invocations into subgroups.
// The driver verifies this variant against the reference before it is used.

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_size) sg_size: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN + lid.x * TN;
    // A subgroup larger than the workgroup holds only WG_X live lanes.
    let step = min(sg_size, WG_X);
    let fast = block_inside(row0, wid.x * BN, BM, BN, step);
    var acc: array<vec4<f32>, TM * TN / 4u>;
    for (var i = 0u; i < TM * TN / 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < gp.k; k0 += step) {
        var mine: array<f32, TM>; // A[row0 + i][k0 + lane]
        for (var i = 0u; i < TM; i++) {
            if (fast) {
                mine[i] = mat_a[gp.a_off + (row0 + i) * gp.lda + k0 + lane];
            } else {
                mine[i] = load_a(row0 + i, k0 + lane);
            }
        }
        let steps = min(step, gp.k - k0);
        for (var kk = 0u; kk < steps; kk++) {
            var b: array<vec4<f32>, TN / 4u>;
            for (var j = 0u; j < TN; j++) {
                if (fast) {
                    b[j / 4u][j % 4u] = mat_b[b_index(col0 + j, k0 + kk)];
                } else {
                    b[j / 4u][j % 4u] = load_b(col0 + j, k0 + kk);
                }
            }
            for (var i = 0u; i < TM; i++) {
                let a = subgroupShuffle(mine[i], kk);
                for (var j = 0u; j < TN / 4u; j++) {
                    let slot = i * (TN / 4u) + j;
                    acc[slot] = fma(vec4<f32>(a), b[j], acc[slot]);
                }
            }
        }
    }

    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store_c(row0 + i, col0 + j, acc[i * (TN / 4u) + j / 4u][j % 4u], !fast);
        }
    }
}
