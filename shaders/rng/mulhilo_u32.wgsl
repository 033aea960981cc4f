// 32x32 -> 64-bit multiply for Philox, from 16-bit halves (WGSL has no mul-hi).
// Returns vec2(hi, lo). Every partial product of two 16-bit halves fits in 32
// bits, and `mid` sums three values below 2^16, so nothing overflows; the low
// word is the ordinary wrapping product. Bit-identical to rng/mulhilo_u64.wgsl.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}
