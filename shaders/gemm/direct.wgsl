// import gemm/common.wgsl

// Barrier-free GEMM (variant direct): no workgroup memory. Each invocation
// computes a TM x TN register tile straight from global memory, BK = 4 values
// of k at a time per row of A and per column of B (4 consecutive words where
// op(B) is B^T). On CPU-like adapters, where workgroup memory costs like any
// other memory and barriers serialise the invocations, this can beat tiling;
// on GPUs it relies on the caches. Interior workgroups skip the checks.

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * BM + lid.y * TM;
    let col0 = wid.x * BN + lid.x * TN;
    let fast = block_inside(wid.y * BM, wid.x * BN, BM, BN, BK);
    var acc: array<vec4<f32>, TM * TN / 4u>;
    for (var i = 0u; i < TM * TN / 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < gp.k; k0 += BK) {
        // a[i][kk] = A[row0 + i][k0 + kk]; b[kk][j] = op(B)[k0 + kk][col0 + j].
        var a: array<vec4<f32>, TM>;
        var b: array<array<vec4<f32>, TN / 4u>, BK>;
        for (var i = 0u; i < TM; i++) {
            for (var kk = 0u; kk < BK; kk++) {
                if (fast) {
                    a[i][kk] = mat_a[gp.a_off + (row0 + i) * gp.lda + k0 + kk];
                } else {
                    a[i][kk] = load_a(row0 + i, k0 + kk);
                }
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            for (var j = 0u; j < TN; j++) {
                if (fast) {
                    b[kk][j / 4u][j % 4u] = mat_b[b_index(col0 + j, k0 + kk)];
                } else {
                    b[kk][j / 4u][j % 4u] = load_b(col0 + j, k0 + kk);
                }
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN / 4u; j++) {
                    let slot = i * (TN / 4u) + j;
                    acc[slot] = fma(vec4<f32>(a[i][kk]), b[kk][j], acc[slot]);
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
