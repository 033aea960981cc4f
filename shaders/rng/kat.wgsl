// import rng/philox.wgsl
// import rng/fixed.wgsl

// Known-answer test kernels: runs the Philox block function on arbitrary
// (counter, key) pairs, so the Random123 vectors (whose counters use all four
// words) can be checked on the device, and the integer program of rng/fixed.wgsl
// on every 24-bit input.
// Input record i: words [6i, 6i+6) = ctr0..ctr3, key0, key1. Output: 4 words.

@group(0) @binding(0) var<storage, read> kat_in: array<u32>;
@group(0) @binding(1) var<storage, read_write> kat_out: array<u32>;

@compute @workgroup_size(64)
fn philox_kat(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&kat_in) / 6u || 4u * i + 3u >= arrayLength(&kat_out)) { return; }
    let b = 6u * i;
    let ctr = vec4<u32>(kat_in[b], kat_in[b + 1u], kat_in[b + 2u], kat_in[b + 3u]);
    let key = vec2<u32>(kat_in[b + 4u], kat_in[b + 5u]);
    let x = philox4x32_10(ctr, key);
    for (var j = 0u; j < 4u; j++) {
        kat_out[4u * i + j] = x[j];
    }
}

// Unit values of the integer program for 24-bit inputs: invocation i takes
// k = kat_in[0] + i and writes (r cos, r sin, truncated) to kat_out[3i ..
// 3i + 3], the radius of k << 8, the angle of PERMUTE(k) << 8 (an odd
// multiplier is a bijection mod 2^24, so the 2^24 invocations cover every
// radius input and every angle input once) and the truncated value of k << 8.
const PERMUTE: u32 = 0x9E3779B1u;
@compute @workgroup_size(256)
fn unit_kat(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (3u * i + 2u >= arrayLength(&kat_out)) { return; }
    let k = kat_in[0] + i;
    let w = k << 8u;
    let n = normal_pair_bits(w, (k * PERMUTE) << 8u);
    kat_out[3u * i] = n.x;
    kat_out[3u * i + 1u] = n.y;
    kat_out[3u * i + 2u] = truncated_bits(w);
}
