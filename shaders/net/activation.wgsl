// import @act_constants

// Activation functions and their derivatives, selected by the pipeline
// constant ACT, one of the ACT_* ids of the prelude (src/gpu/layout.rs). GELU
// is the tanh approximation, as PyTorch's approximate='tanh'; GELU_ERF is
// x Phi(x) through erf, as PyTorch's default.
//
// Statement for statement the CPU mirror in src/act/arith.rs, whose constants
// the prelude carries: only +, -, *, explicit fma, comparisons, selects,
// floor and bit operations -- no exp, tanh, division or sqrt builtin, whose
// results are device-specific -- every product that feeds an addition is an
// explicit fma, so a driver has nothing to contract, and a chain of products
// holds at most one constant, so a compiler has no constants to fold together. The CPU then computes
// the same bits for a device whose fma rounds once or twice.

override ACT: u32 = 1u;
override SLOPE: f32 = 0.01;

// A constant by its bits, XORed with the uniform `ep.zero` (always 0): no
// compiler can fold or reassociate a value it does not know. (Mesa rewrites
// expressions over literal constants for SPIR-V without NoContraction, e.g.
// n c1 + (n c2 + x) into n (c1 + c2) + x, which changes the rounding.)
fn k(bits: u32) -> f32 {
    return bitcast<f32>(bits ^ ep.zero);
}

// NaN by its bits, so no compiler can fold the test away.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn abs_bits(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu);
}

// v, or a zero of its sign below 2^-125 (TINY_BITS): a compiler may move a
// power-of-two constant across a product, which rounds differently only
// when the product is subnormal.
fn flush_tiny(v: f32) -> f32 {
    let b = bitcast<u32>(v);
    return select(v, bitcast<f32>(b & 0x80000000u), (b & 0x7fffffffu) < TINY_BITS);
}

// e^x for k(EXP_MIN_BITS) <= x <= 0 (0 below k(EXP_MIN_BITS) and for NaN, 1 above 0):
// x = n ln 2 + r, a degree-7 polynomial of e^r, and n added to its exponent
// field (an integer add: Mesa turns a float multiply by 2^n built from bits
// into its approximate exp2).
fn exp_neg(x_in: f32) -> f32 {
    var x = select(k(EXP_MIN_BITS), x_in, x_in > k(EXP_MIN_BITS));
    x = select(0.0, x, x < 0.0);
    let n = floor(fma(x, k(LOG2E_BITS), 0.5));
    var r = fma(n, -k(LN2_HI_BITS), x);
    // n + k(0u) is n, but not to the compiler: it cannot factor
    // fma(n, c2, fma(n, c1, x)) into fma(n, c1 + c2, x).
    r = fma(n + k(0u), -k(LN2_LO_BITS), r);
    var p = k(EXP_C0_BITS);
    p = fma(p, r, k(EXP_C1_BITS));
    p = fma(p, r, k(EXP_C2_BITS));
    p = fma(p, r, k(EXP_C3_BITS));
    p = fma(p, r, k(EXP_C4_BITS));
    p = fma(p, r, k(EXP_C5_BITS));
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    let v = bitcast<f32>(bitcast<u32>(p) + bitcast<u32>(i32(n) << 23u));
    return select(0.0, v, x_in >= k(EXP_MIN_BITS));
}

// 1 / d for d in [1, 2]: a linear seed and three Newton steps.
fn recip12(d: f32) -> f32 {
    var y = fma(d, k(RECIP_B_BITS), k(RECIP_A_BITS));
    for (var i = 0u; i < 3u; i++) {
        let e = fma(-d, y, 1.0);
        y = fma(y, e, y + k(0u));
    }
    return y;
}

// (tanh x, 1 - |tanh x|), the second without cancellation; NaN stays NaN.
fn tanh2(x: f32) -> vec2<f32> {
    let ax = abs_bits(x);
    let x2 = x * x;
    var p = k(TANH_C0_BITS);
    p = fma(x2, p, k(TANH_C1_BITS));
    p = fma(x2, p, k(TANH_C2_BITS));
    p = fma(x2, p, k(TANH_C3_BITS));
    let small = x * fma(x2, p, 1.0);
    let t = exp_neg(-2.0 * ax);
    let y = recip12(1.0 + t);
    let big = bitcast<f32>(bitcast<u32>((1.0 - t) * y) | (bitcast<u32>(x) & 0x80000000u));
    let series = ax < k(TANH_SERIES_BITS);
    let th = select(big, small, series);
    let m = select(2.0 * t * y, 1.0 - abs_bits(small), series);
    return select(vec2<f32>(th, m), vec2<f32>(x, x), is_nan(x));
}

// (sigmoid x, sigmoid' x) = (y or t y, t y^2), t = e^-|x|, y = 1 / (1 + t).
fn sigmoid2(x: f32) -> vec2<f32> {
    let t = exp_neg(-abs_bits(x));
    let y = recip12(1.0 + t);
    let s = select(t * y, y, x >= 0.0);
    return select(vec2<f32>(s, t * y * y), vec2<f32>(x, x), is_nan(x));
}

// e^x - 1 for x <= 0.
fn expm1_neg(x: f32) -> f32 {
    var p = k(EXPM1_C0_BITS);
    p = fma(x, p, k(EXPM1_C1_BITS));
    p = fma(x, p, k(EXPM1_C2_BITS));
    p = fma(x, p, k(EXPM1_C3_BITS));
    let series = x * fma(x, p, 1.0);
    return select(exp_neg(x) - 1.0, series, abs_bits(x) < k(EXPM1_SERIES_BITS));
}

// GELU's (1 + tanh u, 1 - tanh^2 u), u = sqrt(2/pi) (x + 0.044715 x^3).
fn gelu_parts(x: f32) -> vec2<f32> {
    let u = k(GELU_C_BITS) * fma(k(GELU_K_BITS) * x * x, x, x + k(0u));
    let tm = tanh2(u);
    let one_plus = select(tm.y, 1.0 + tm.x, u >= 0.0);
    return vec2<f32>(one_plus, tm.y * (2.0 - tm.y));
}

// The erf GELU's (1 + erf(x / sqrt 2), e^(-x^2 / 2)): with z = |x| / sqrt 2
// (clamped at ERFC_MAX), 1 +- z P(z^2) below ERF_SMALL, and from there e^Q(z)
// (erfc z, so no cancellation for x < 0) or 2 - e^Q(z).
fn gelu_erf_parts(x: f32) -> vec2<f32> {
    // + k(0u): the product may then be contracted only with that 0 (the same
    // value), never with the subtraction of u below.
    var z = abs_bits(x) * k(RSQRT2_BITS) + k(0u);
    z = select(k(ERFC_MAX_BITS), z, z < k(ERFC_MAX_BITS));
    let s = z * z;
    var p = k(ERF_S0_BITS);
    p = fma(p, s, k(ERF_S1_BITS));
    p = fma(p, s, k(ERF_S2_BITS));
    p = fma(p, s, k(ERF_S3_BITS));
    p = fma(p, s, k(ERF_S4_BITS));
    p = fma(p, s, k(ERF_S5_BITS));
    let series = fma(select(z, -z, x < 0.0), p, 1.0);
    let near = z < k(ERFC_MID_BITS);
    let u = z - select(k(ERFC_B_AT_BITS), k(ERFC_A_AT_BITS), near);
    var q = select(k(ERFC_B0_BITS), k(ERFC_A0_BITS), near);
    q = fma(q, u, select(k(ERFC_B1_BITS), k(ERFC_A1_BITS), near));
    q = fma(q, u, select(k(ERFC_B2_BITS), k(ERFC_A2_BITS), near));
    q = fma(q, u, select(k(ERFC_B3_BITS), k(ERFC_A3_BITS), near));
    q = fma(q, u, select(k(ERFC_B4_BITS), k(ERFC_A4_BITS), near));
    q = fma(q, u, select(k(ERFC_B5_BITS), k(ERFC_A5_BITS), near));
    q = fma(q, u, select(k(ERFC_B6_BITS), k(ERFC_A6_BITS), near));
    q = fma(q, u, select(k(ERFC_B7_BITS), k(ERFC_A7_BITS), near));
    q = fma(q, u, select(k(ERFC_B8_BITS), k(ERFC_A8_BITS), near));
    let ec = exp_neg(q);
    let tail = select(2.0 - ec, ec, x < 0.0);
    return vec2<f32>(select(tail, series, z < k(ERF_SMALL_BITS)), exp_neg(-(x * x * 0.5)));
}

fn act(x: f32) -> f32 {
    switch ACT {
        case ACT_RELU: { return select(0.0, x, x > 0.0); }
        case ACT_LEAKY_RELU: { return select(SLOPE * x, x, x > 0.0); }
        case ACT_TANH: { return flush_tiny(tanh2(x).x); }
        case ACT_SIGMOID: { return flush_tiny(sigmoid2(x).x); }
        case ACT_SELU: {
            let neg = k(SELU_ALPHA_BITS) * expm1_neg(x);
            return select(flush_tiny(k(SELU_LAMBDA_BITS) * select(neg, x, x > 0.0)), x, is_nan(x));
        }
        case ACT_GELU: { return flush_tiny(0.5 * x * gelu_parts(x).x); }
        case ACT_GELU_ERF: { return flush_tiny(0.5 * x * gelu_erf_parts(x).x); }
        default: { return x; }
    }
}

fn dact(x: f32) -> f32 {
    switch ACT {
        case ACT_RELU: { return select(0.0, 1.0, x > 0.0); }
        case ACT_LEAKY_RELU: { return select(SLOPE, 1.0, x > 0.0); }
        case ACT_TANH: { let m = tanh2(x).y; return flush_tiny(m * (2.0 - m)); }
        case ACT_SIGMOID: { return flush_tiny(sigmoid2(x).y); }
        case ACT_SELU: {
            let neg = k(SELU_ALPHA_BITS) * exp_neg(x);
            return select(flush_tiny(k(SELU_LAMBDA_BITS) * select(neg, 1.0, x > 0.0)), x, is_nan(x));
        }
        case ACT_GELU: {
            let parts = gelu_parts(x);
            let right = x * parts.y * fma(k(GELU_K3_BITS) * x, x, 1.0) * k(GELU_C_HALF_BITS);
            return flush_tiny(fma(0.5, parts.x, right));
        }
        case ACT_GELU_ERF: {
            let parts = gelu_erf_parts(x);
            return flush_tiny(fma(0.5, parts.x, x * parts.y * k(INV_SQRT_2PI_BITS)));
        }
        default: { return 1.0; }
    }
}
