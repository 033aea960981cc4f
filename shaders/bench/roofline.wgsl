// import bench/common.wgsl

// Roofline kernels for `deepinit bench`: the same device's memory and
// arithmetic ceilings. Each comes in several variants (store pattern, vector
// width, workgroup size, independent chains); the benchmark times them all
// and keeps the fastest, so a ratio is taken against the best the device does.

override WORKGROUP_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> bp: BenchParams;
@group(0) @binding(1) var<storage, read_write> bench_out: array<u32>;

fn bench_index(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid.x;
}

// Memory roofline, the generation kernels' store pattern: one invocation
// writes 4 consecutive words, and computes nothing.
@compute @workgroup_size(WORKGROUP_SIZE)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = bench_index(wid, lid, nwg);
    let n = min(bp.n, arrayLength(&bench_out));
    for (var j = 0u; j < 4u; j++) {
        let o = 4u * i + j;
        if (o < n) { bench_out[o] = bp.value ^ o; }
    }
}

// Memory roofline, coalesced: neighbouring invocations write neighbouring
// words; invocation i writes i, i + T, i + 2T, i + 3T (T invocations in all).
@compute @workgroup_size(WORKGROUP_SIZE)
fn fill_coalesced(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = bench_index(wid, lid, nwg);
    let t = nwg.x * nwg.y * WORKGROUP_SIZE;
    let n = min(bp.n, arrayLength(&bench_out));
    for (var j = 0u; j < 4u; j++) {
        let o = i + j * t;
        if (o < n) { bench_out[o] = bp.value ^ o; }
    }
}

// Arithmetic roofline: 8 independent FMA chains on vec4 per invocation
// (32 scalar FMAs, 64 flops, per iteration), reading and writing memory once.
// The result is stored, so nothing can be optimized away.
@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = bench_index(wid, lid, nwg);
    let s = f32(bp.value ^ i) * 1e-9;
    var a0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
    var a1 = a0 + 0.5; var a2 = a0 + 0.25; var a3 = a0 + 0.125;
    var a4 = a0 - 0.5; var a5 = a0 - 0.25; var a6 = a0 - 0.125; var a7 = a0 * 0.5;
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    for (var k = 0u; k < bp.n; k++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    let r = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    if (i < arrayLength(&bench_out)) {
        bench_out[i] = bitcast<u32>(r.x + r.y + r.z + r.w);
    }
}

// Arithmetic roofline with 4 chains (32 flops per iteration, per invocation):
// fewer registers, for devices where 8 chains spill or limit occupancy.
@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_peak4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = bench_index(wid, lid, nwg);
    let s = f32(bp.value ^ i) * 1e-9;
    var a0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
    var a1 = a0 + 0.5; var a2 = a0 + 0.25; var a3 = a0 - 0.5;
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    for (var k = 0u; k < bp.n; k++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    }
    let r = a0 + a1 + a2 + a3;
    if (i < arrayLength(&bench_out)) {
        bench_out[i] = bitcast<u32>(r.x + r.y + r.z + r.w);
    }
}
