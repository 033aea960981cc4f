// 32x32 -> 64-bit multiply for Philox through native 64-bit integers
// (wgpu feature SHADER_INT64). Returns vec2(hi, lo); bit-identical to
// rng/mulhilo_u32.wgsl, which the tests check on every adapter that has int64.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let p = u64(a) * u64(b);
    return vec2<u32>(u32(p >> 32u), u32(p & 0xfffffffflu));
}
