// import @mulhilo

// Philox4x32-10 (Salmon et al., SC 2011), the same function as src/rng/philox.rs.
// `mulhilo(a, b) -> vec2(hi, lo)` is rng/mulhilo_u32.wgsl or rng/mulhilo_u64.wgsl;
// PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1 and PHILOX_ROUNDS from the
// generated prelude (src/gpu/layout.rs, from the Rust constants of src/rng/philox.rs).

fn philox_round(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    let p0 = mulhilo(PHILOX_M0, ctr.x);
    let p1 = mulhilo(PHILOX_M1, ctr.z);
    return vec4<u32>(p1.x ^ ctr.y ^ key.x, p1.y, p0.x ^ ctr.w ^ key.y, p0.y);
}

// PHILOX_ROUNDS (10) rounds; the key is bumped by the Weyl constants between rounds.
fn philox4x32_10(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var ctr = philox_round(ctr_in, key_in);
    var key = key_in;
    for (var i = 1u; i < PHILOX_ROUNDS; i++) {
        key = key + vec2<u32>(PHILOX_W0, PHILOX_W1);
        ctr = philox_round(ctr, key);
    }
    return ctr;
}

// Counter of Philox block `block` (64-bit, as vec2(lo, hi)) of tensor `tensor_id`:
// [block lo, block hi, tensor_id, 0]. Element e uses word e % 4 of block e / 4.
fn block_counter(block: vec2<u32>, tensor_id: u32) -> vec4<u32> {
    return vec4<u32>(block.x, block.y, tensor_id, 0u);
}

// 64-bit `base + i` on vec2(lo, hi) words.
fn add_u64(base: vec2<u32>, i: u32) -> vec2<u32> {
    let lo = base.x + i;
    return vec2<u32>(lo, base.y + select(0u, 1u, lo < i));
}
