// Weight generation kernels: one invocation computes one Philox block (four
// consecutive elements) and stores the lanes that fall inside this chunk.
// Needs philox.wgsl, a mulhilo_*.wgsl and an init_store_*.wgsl. The mapping from words to floats is
// the one documented in src/dist.rs and the README; the CPU reference is
// `deepinit::dist::element_value`.

struct Params {
    // Philox key: the 64-bit seed as (lo, hi).
    key: vec2<u32>,
    // First Philox block of this chunk, 64-bit (lo, hi).
    block_start: vec2<u32>,
    // Tensor id, the counter's word 2.
    tensor_id: u32,
    // The chunk's first element is 4 * block_start + lane_offset (0..3).
    lane_offset: u32,
    // Elements in this chunk (the output array's used length).
    count: u32,
    // Multiplies the unit-scale value (f32, computed on the host).
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// The output binding `out` and `store_block(i, v)`, which stores the lanes of
// block i that fall inside this chunk, come from init_store_scalar.wgsl or
// init_store_vec4.wgsl. Every kernel stores 32-bit patterns: raw words or
// bitcast f32 values.

override WORKGROUP_SIZE: u32 = 256u;

const PI: f32 = 3.14159265358979;
const TWO_POW_M24: f32 = 5.9604644775390625e-8;
const TWO_POW_M23: f32 = 1.1920928955078125e-7;
// erf(sqrt(2)) = P(|Z| < 2).
const ERF_SQRT2: f32 = 0.9544997361036416;

// (k + 1) * 2^-24 in (0, 1] for the top 24 bits k: exact, never 0.
fn unit_open_closed(w: u32) -> f32 {
    return f32((w >> 8u) + 1u) * TWO_POW_M24;
}

// (k - 8388607.5) * 2^-23 in (-1, 1): exact and symmetric.
fn signed_unit(w: u32) -> f32 {
    return (f32(w >> 8u) - 8388607.5) * TWO_POW_M23;
}

// Box-Muller on a pair of words; the angle stays inside [-pi, pi].
fn box_muller(wa: u32, wb: u32) -> vec2<f32> {
    let r = sqrt(max(-2.0 * log(unit_open_closed(wa)), 0.0));
    let theta = PI * signed_unit(wb);
    return vec2<f32>(r * cos(theta), r * sin(theta));
}

// Giles' single-precision erfinv, central branch (valid for |y| < 0.9966;
// the truncated normal only uses |y| < erf(sqrt 2) = 0.9545).
fn erfinv_central(y: f32) -> f32 {
    let w = -log((1.0 - y) * (1.0 + y)) - 2.5;
    var p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
    return p * y;
}

// Index of this invocation across a 2-D dispatch (x is capped at 65535 groups).
fn invocation_index(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid.x;
}

// Number of blocks this chunk touches.
fn chunk_blocks() -> u32 {
    return (params.lane_offset + params.count + 3u) / 4u;
}

fn block_words(i: u32) -> vec4<u32> {
    let ctr = block_counter(add_u64(params.block_start, i), params.tensor_id);
    return philox4x32_10(ctr, params.key);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gen_bits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation_index(wid, lid, nwg);
    if (i >= chunk_blocks()) { return; }
    store_block(i, block_words(i));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gen_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation_index(wid, lid, nwg);
    if (i >= chunk_blocks()) { return; }
    let x = block_words(i);
    let a = box_muller(x.x, x.y) * params.scale;
    let b = box_muller(x.z, x.w) * params.scale;
    store_block(i, bitcast<vec4<u32>>(vec4<f32>(a, b)));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gen_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation_index(wid, lid, nwg);
    if (i >= chunk_blocks()) { return; }
    let x = block_words(i);
    let v = vec4<f32>(signed_unit(x.x), signed_unit(x.y), signed_unit(x.z), signed_unit(x.w));
    store_block(i, bitcast<vec4<u32>>(v * params.scale));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gen_truncated(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation_index(wid, lid, nwg);
    if (i >= chunk_blocks()) { return; }
    let x = block_words(i);
    let y = ERF_SQRT2 * vec4<f32>(signed_unit(x.x), signed_unit(x.y), signed_unit(x.z), signed_unit(x.w));
    let v = vec4<f32>(erfinv_central(y.x), erfinv_central(y.y), erfinv_central(y.z), erfinv_central(y.w));
    store_block(i, bitcast<vec4<u32>>(v * params.scale));
}
