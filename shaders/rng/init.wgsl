// import rng/philox.wgsl
// import rng/fixed.wgsl
// import @store

// Weight generation kernels: one invocation computes one Philox block (four
// consecutive elements) and stores the lanes that fall inside this chunk.
// The store is rng/init_store_scalar.wgsl or rng/init_store_vec4.wgsl. The mapping from words to floats is
// the one documented in src/rng/dist.rs; normal and truncated values are the
// integer program of src/rng/fixed.rs, so the only float operation is the
// final multiply by the scale, and the CPU reference
// (`deepinit::rng::dist::element_value`) gives the same bits.

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
// block i that fall inside this chunk, come from rng/init_store_scalar.wgsl or
// rng/init_store_vec4.wgsl. Every kernel stores 32-bit patterns: raw words or
// bitcast f32 values.

override WORKGROUP_SIZE: u32 = 256u;

const TWO_POW_M23: f32 = 1.1920928955078125e-7;

// (k - 8388607.5) * 2^-23 in (-1, 1): exact and symmetric.
fn signed_unit(w: u32) -> f32 {
    return (f32(w >> 8u) - 8388607.5) * TWO_POW_M23;
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
    let unit = vec4<u32>(normal_pair_bits(x.x, x.y), normal_pair_bits(x.z, x.w));
    store_block(i, bitcast<vec4<u32>>(bitcast<vec4<f32>>(unit) * params.scale));
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
    let unit = vec4<u32>(truncated_bits(x.x), truncated_bits(x.y), truncated_bits(x.z), truncated_bits(x.w));
    store_block(i, bitcast<vec4<u32>>(bitcast<vec4<f32>>(unit) * params.scale));
}
