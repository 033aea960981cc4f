// import @mulhilo
// import @fixed_constants

// The integer program that defines every normal and truncated-normal value:
// the GPU twin of src/rng/fixed.rs, statement for statement, with 32-bit
// integer operations only (64-bit values are vec2(lo, hi) words). The
// generated constants and polynomials are `fixed::wgsl_constants` (which
// also defines `poly_*`).

// The 24-bit angle's quarter turn, in units of pi 2^-24.
const QUARTER: u32 = 0x800000u;

fn mulhi_u(a: u32, b: u32) -> u32 {
    return mulhilo(a, b).x;
}

// floor(a b / 2^32) for signed words, from the unsigned product: a negative
// word w stands for w - 2^32, so subtract the other factor once for each.
fn mulhi_s(a: i32, b: i32) -> i32 {
    let ua = bitcast<u32>(a);
    let ub = bitcast<u32>(b);
    return bitcast<i32>(mulhi_u(ua, ub) - select(0u, ub, a < 0i) - select(0u, ua, b < 0i));
}

// A positive value m / 2^31 * 2^e, m's top bit set; m == 0 is zero.
struct Pf {
    m: u32,
    e: i32,
}

fn pf_from_fixed(v: u32, frac: i32) -> Pf {
    let lz = countLeadingZeros(v);
    return Pf(v << (lz & 31u), 31i - i32(lz) - frac);
}

fn pf_mul(a: Pf, b: Pf) -> Pf {
    let p = mulhi_u(a.m, b.m);
    let top = p >> 31u;
    return Pf(p << (1u - top), a.e + b.e + i32(top));
}

// The f32 bit pattern of +-x: the top 24 bits of m, rounded half up.
fn pf_bits(x: Pf, negative: bool) -> u32 {
    let r0 = (x.m >> 8u) + ((x.m >> 7u) & 1u);
    let carry = r0 >> 24u;
    let r = r0 >> carry;
    let e = x.e + i32(carry);
    let bits = (bitcast<u32>(e + 127i) << 23u) | (r & 0x7FFFFFu) | select(0u, 0x80000000u, negative);
    return select(bits, 0u, x.m == 0u);
}

// -ln(F 2^-e0) in Q5.59 as vec2(lo, hi), F = mn / 2^32 in [1/2, 1).
fn neg_ln_q59(mn: u32, e0: i32) -> vec2<u32> {
    let small = mn < SQRT_HALF_Q32;
    let j = bitcast<u32>(e0 + select(0i, 1i, small));
    let y = select(0u - mn, (mn - 0x80000000u) << 1u, small);
    let yi = select(-bitcast<i32>(y), bitcast<i32>(y), small);
    let p = bitcast<u32>(poly_ln1p_ratio(yi));
    let yp = mulhilo(y, p);
    let t = vec2<u32>((yp.y >> 3u) | (yp.x << 29u), yp.x >> 3u);
    let jl = mulhilo(j, LN2_Q59_LO);
    let base = vec2<u32>(jl.y, jl.x + j * LN2_Q59_HI);
    let sum_lo = base.x + t.x;
    let sum = vec2<u32>(sum_lo, base.y + t.y + select(0u, 1u, sum_lo < t.x));
    let dif = vec2<u32>(base.x - t.x, base.y - t.y - select(0u, 1u, base.x < t.x));
    return select(sum, dif, small);
}

// 1 / sqrt(x) in Q2.30 for x = X / 2^32 in [1/4, 1): seed and two Newton steps.
fn rsqrt_q30(x: u32) -> u32 {
    var g = bitcast<u32>(poly_rsqrt_seed(bitcast<i32>(x >> 1u))) << RSQRT_SHIFT;
    for (var i = 0u; i < 2u; i++) {
        let gg = mulhi_u(g, g);
        let d = bitcast<i32>((1u << 28u) - mulhi_u(x, gg));
        g = g + bitcast<u32>(mulhi_s(bitcast<i32>(g), d << 3u));
    }
    return g;
}

// The Box-Muller radius sqrt(-2 ln u), u = (k + 1) 2^-24.
fn radius(word: u32) -> Pf {
    let m = (word >> 8u) + 1u;
    let lz = countLeadingZeros(m);
    let h = neg_ln_q59(m << lz, i32(lz) - 8i);
    let lzh = select(countLeadingZeros(h.y), 32u + countLeadingZeros(h.x), h.y == 0u);
    let s = lzh & 62u;
    // The top word of h << s (shift amounts outside 0..31 are never selected).
    let below = select((h.y << s) | (h.x >> (32u - s)), h.y, s == 0u);
    let x = max(select(below, h.x << (s - 32u), s >= 32u), 0x40000000u);
    let root = mulhi_u(x, rsqrt_q30(x));
    var r = pf_from_fixed(root, 30i);
    r.e += 3i - i32(s / 2u);
    r.m = select(r.m, 0u, h.x == 0u && h.y == 0u);
    return r;
}

struct SinCos {
    sin_negative: bool,
    sin: Pf,
    cos_negative: bool,
    cos: Pf,
}

// sin and cos of the angle pi a 2^-24, a = 2k - (2^24 - 1).
fn sincos(word: u32) -> SinCos {
    let a = bitcast<i32>((word >> 8u) << 1u) - 0xFFFFFFi;
    let u = bitcast<u32>(abs(a));
    let flip = u > QUARTER;
    let v = select(u, (QUARTER << 1u) - u, flip);
    let swap = v > (QUARTER >> 1u);
    let w = select(v, QUARTER - v, swap);
    let ww = mulhilo(w, w);
    let t = bitcast<i32>((ww.y >> 13u) | (ww.x << 19u));
    let sin_g = pf_mul(pf_from_fixed(w, 22i), pf_from_fixed(bitcast<u32>(poly_sin_ratio(t)), SIN_FRAC));
    let cos_g = pf_from_fixed(bitcast<u32>(poly_cos_q(t)), COS_FRAC);
    let s = Pf(select(sin_g.m, cos_g.m, swap), select(sin_g.e, cos_g.e, swap));
    let c = Pf(select(cos_g.m, sin_g.m, swap), select(cos_g.e, sin_g.e, swap));
    return SinCos(a < 0i, s, flip, c);
}

// The two unit normals of a Box-Muller pair as f32 bits: (r cos, r sin).
fn normal_pair_bits(wa: u32, wb: u32) -> vec2<u32> {
    let r = radius(wa);
    let t = sincos(wb);
    return vec2<u32>(pf_bits(pf_mul(r, t.cos), t.cos_negative), pf_bits(pf_mul(r, t.sin), t.sin_negative));
}

// The truncated normal's unit value sqrt(2) erfinv(erf(sqrt 2) s) as f32 bits.
fn truncated_bits(word: u32) -> u32 {
    let a = bitcast<i32>((word >> 8u) << 1u) - 0xFFFFFFi;
    let abs_a = bitcast<u32>(abs(a));
    let y = mulhi_u(ERF_SQRT2_Q32, abs_a << 8u);
    let q = mulhi_u(y, y);
    let v = 0u - q;
    let lz = countLeadingZeros(v);
    let h = select(neg_ln_q59(v << (lz & 31u), i32(lz)), vec2<u32>(0u, 0u), q == 0u);
    let g = bitcast<u32>(poly_trunc_ratio(bitcast<i32>((h.x >> 30u) | (h.y << 2u))));
    return pf_bits(pf_mul(pf_from_fixed(abs_a, 24i), pf_from_fixed(g, TRUNC_FRAC)), a < 0i);
}
