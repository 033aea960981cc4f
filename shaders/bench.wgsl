// Roofline kernels for `deepinit bench`: the same device's memory and
// arithmetic ceilings, measured with the same dispatch shapes as the real
// kernels.

struct BenchParams {
    // fill: elements to write; fma: iterations per invocation.
    n: u32,
    // fill: the value written; fma: seed of the accumulators.
    value: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> bp: BenchParams;
@group(0) @binding(1) var<storage, read_write> bench_out: array<u32>;

// The memory roofline: one invocation writes 4 consecutive words, exactly the
// store pattern of the generation kernels, and computes nothing.
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    let n = min(bp.n, arrayLength(&bench_out));
    for (var j = 0u; j < 4u; j++) {
        let o = 4u * i + j;
        if (o < n) { bench_out[o] = bp.value ^ o; }
    }
}

// The arithmetic roofline: 8 independent FMA chains on vec4 per invocation
// (32 scalar FMAs, 64 flops, per iteration), reading and writing memory once.
// The result is stored, so nothing can be optimized away.
@compute @workgroup_size(256)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
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
