// import bench/common.wgsl

// Memory roofline with 16-byte stores: invocation i writes words 4i .. 4i+3
// as one vec4 (the same words and values as `fill`), coalesced across
// invocations. A separate module because its output is an array of vec4.

override WORKGROUP_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> bp: BenchParams;
@group(0) @binding(1) var<storage, read_write> bench_out4: array<vec4<u32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fill_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid.x;
    let n4 = min(bp.n / 4u, arrayLength(&bench_out4));
    if (i < n4) {
        let o = 4u * i;
        bench_out4[i] = vec4<u32>(bp.value ^ o, bp.value ^ (o + 1u), bp.value ^ (o + 2u),
                                  bp.value ^ (o + 3u));
    }
}

// Memory roofline with 16-byte stores, 4 per invocation: invocation i writes
// vectors i, i + T, i + 2T, i + 3T (T invocations in all), so each invocation
// does more work per launch while neighbours still write neighbouring vectors.
@compute @workgroup_size(WORKGROUP_SIZE)
fn fill_vec4x4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid.x;
    let t = nwg.x * nwg.y * WORKGROUP_SIZE;
    let n4 = min(bp.n / 4u, arrayLength(&bench_out4));
    for (var k = 0u; k < 4u; k++) {
        let v = i + k * t;
        if (v < n4) {
            let o = 4u * v;
            bench_out4[v] = vec4<u32>(bp.value ^ o, bp.value ^ (o + 1u), bp.value ^ (o + 2u),
                                      bp.value ^ (o + 3u));
        }
    }
}
