//! The device's f32 arithmetic, mirrored on the CPU: the operation sequences
//! of the activations (`shaders/net/activation.wgsl`), written from `+`, `-`,
//! `*`, explicit `fma`, comparisons, selects, `floor` and bit operations
//! only -- no transcendental builtin, division or `sqrt`, whose results are
//! device-specific -- every product that feeds an addition written as an
//! `fma`, so a driver has nothing to contract, and at most one constant per
//! chain of products, so a compiler has no two constants to fold together
//! (Mesa folds `(x * c1) * c2` into `x * (c1 c2)` for SPIR-V without
//! NoContraction, which changes the rounding). Given how the device rounds
//! `fma` (one rounding or two: [`crate::gpu::probe`]), the CPU computes the
//! same bits: [`Fused`] and [`Unfused`] are the two classes.
//!
//! `exp` is a Cody-Waite reduction `x = n ln 2 + r` (the high part of ln 2 has
//! 15 significant bits, so `n * LN2_HI` is exact for |n| <= 511 and both
//! classes round that step once), a degree-7 Taylor polynomial of `e^r` on
//! |r| <= 0.35 (truncation below 5e-9 relative), and the scaling by `2^n` as an
//! integer add to the exponent field; below `EXP_MIN` = -85 it is 0, so no
//! intermediate of an activation is subnormal. `1 / d` on [1, 2] is a
//! linear seed and three Newton steps (error 2^-32 before rounding). The
//! constants are generated into the WGSL prelude from `wgsl_constants`.

use crate::act::Activation;

/// How `fma(a, b, c)` rounds.
pub trait Arith: Copy {
    /// `a * b + c`, with the class's rounding.
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// One rounding (IEEE fusedMultiplyAdd).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused;

/// Two roundings: the product, then the sum (lavapipe).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unfused;

impl Arith for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Arith for Unfused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        // Rust never contracts this into a fused operation.
        a * b + c
    }
}

/// Zero, which the shader reads from a uniform (`k(0u)`): adding it to a
/// value gives a number a compiler cannot prove equal to the value, so it
/// cannot factor or fold expressions that share it.
pub(crate) const OPAQUE_ZERO: f32 = 0.0;
/// log2(e) in f32.
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2, high part: 15 significant bits (0x3F317200).
pub(crate) const LN2_HI: f32 = f32::from_bits(0x3F31_7200);
/// ln 2 - LN2_HI, rounded to f32.
pub(crate) const LN2_LO: f32 = (std::f64::consts::LN_2 - 0.693_145_751_953_125) as f32;
/// 1/k! for k = 7 down to 2: the Taylor polynomial of e^r.
pub(crate) const EXP_C: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
/// Below this, [`exp_neg`] is 0: e^-85 = 1.2e-37 keeps every intermediate of
/// the activations in f32's normal range (a subnormal intermediate rounds
/// differently when a compiler reorders a product).
pub(crate) const EXP_MIN: f32 = -85.0;
/// The linear seed of 1/d on [1, 2]: 24/17 - (8/17) d (error <= 1/17).
pub(crate) const RECIP_A: f32 = 24.0 / 17.0;
/// See [`RECIP_A`].
pub(crate) const RECIP_B: f32 = -8.0 / 17.0;
/// tanh(x) / x to x^9 for |x| < 1/4: 1, -1/3, 2/15, -17/315, 62/2835.
pub(crate) const TANH_C: [f32; 4] = [62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0];
/// Below this |x|, tanh uses its series.
pub(crate) const TANH_SERIES: f32 = 0.25;
/// (e^x - 1) / x to x^4 for |x| < 2^-5: 1/120, 1/24, 1/6, 1/2, then 1.
pub(crate) const EXPM1_C: [f32; 4] = [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5];
/// Below this |x|, expm1 uses its series.
pub(crate) const EXPM1_SERIES: f32 = 0.031_25;
/// SELU's lambda.
pub(crate) const SELU_LAMBDA: f32 = 1.050_700_987_355_480_5_f64 as f32;
/// SELU's alpha.
pub(crate) const SELU_ALPHA: f32 = 1.673_263_242_354_377_2_f64 as f32;
/// sqrt(2 / pi).
pub(crate) const GELU_C: f32 = 0.797_884_560_802_865_4_f64 as f32;
/// GELU's cubic coefficient.
pub(crate) const GELU_K: f32 = 0.044_715;
/// 3 GELU_K, rounded to f32.
pub(crate) const GELU_K3: f32 = 0.134_145;
/// GELU_C / 2 (exact: a power-of-two scaling).
pub(crate) const GELU_C_HALF: f32 = GELU_C * 0.5;
/// 1 / sqrt(2), rounded.
pub(crate) const RSQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi), rounded.
pub(crate) const INV_SQRT_2PI: f32 = 0.398_942_280_401_432_7_f64 as f32;
/// erf(z) / z as a polynomial of z^2 for z < [`ERF_SMALL`] (degree 5, a
/// weighted least-squares fit in f64 at Chebyshev nodes, rounded to f32;
/// relative error 1.7e-7 evaluated in f32).
pub(crate) const ERF_S: [f32; 6] = [
    f32::from_bits(0xba14_609e),
    f32::from_bits(0x3ba1_601e),
    f32::from_bits(0xbcda_df17),
    f32::from_bits(0x3de7_05d8),
    f32::from_bits(0xbec0_9344),
    f32::from_bits(0x3f90_6eba),
];
/// ln erfc(z) as a polynomial of z - [`ERFC_A_AT`] on [1, 3] (degree 8,
/// fitted likewise; absolute error 7.4e-7 in f32, about one unit of the
/// last place of values down to -9.2).
pub(crate) const ERFC_A: [f32; 9] = [
    f32::from_bits(0x35bc_b5ff),
    f32::from_bits(0xb7a8_1feb),
    f32::from_bits(0x390e_7723),
    f32::from_bits(0xba40_234e),
    f32::from_bits(0x3b69_ff7b),
    f32::from_bits(0xbc86_e186),
    f32::from_bits(0xbf6c_7aef),
    f32::from_bits(0xc08d_6193),
    f32::from_bits(0xc0ab_ad99),
];
/// ln erfc(z) as a polynomial of z - [`ERFC_B_AT`] on [3, 9.5] (degree 8;
/// absolute error 7.2e-6 in f32, about two units of the last place of values
/// down to -93).
pub(crate) const ERFC_B: [f32; 9] = [
    f32::from_bits(0x3315_a8bc),
    f32::from_bits(0xb4bc_5504),
    f32::from_bits(0x3610_1370),
    f32::from_bits(0xb78d_d067),
    f32::from_bits(0x391c_b0a7),
    f32::from_bits(0xbaad_c48c),
    f32::from_bits(0xbf7c_b5e2),
    f32::from_bits(0xc142_98e5),
    f32::from_bits(0xc219_829f),
];
/// The centre of [`ERFC_A`].
pub(crate) const ERFC_A_AT: f32 = 2.0;
/// The centre of [`ERFC_B`].
pub(crate) const ERFC_B_AT: f32 = 6.0;
/// Below this z, erf uses [`ERF_S`]; from it, erfc uses `e^(ERFC_A or B)`.
pub(crate) const ERF_SMALL: f32 = 1.0;
/// Below this z, [`ERFC_A`]; from it, [`ERFC_B`].
pub(crate) const ERFC_MID: f32 = 3.0;
/// z is clamped here: ln erfc(9.5) = -93 is below [`EXP_MIN`], so erfc is 0
/// from there on.
pub(crate) const ERFC_MAX: f32 = 9.5;

/// Whether `x` is NaN, by its bits (so no compiler can fold the test away).
#[inline(always)]
pub(crate) fn is_nan(x: f32) -> bool {
    x.to_bits() & 0x7FFF_FFFF > 0x7F80_0000
}

/// Below 2^-125 in magnitude, a result becomes a zero of its sign. A compiler
/// may move a power-of-two constant across a product (`(0.5 x) m` into
/// `0.5 (x m)`), which rounds differently only when the product is
/// subnormal: the transcendental activations' outputs below this bound are
/// therefore defined as zero.
pub(crate) const TINY_BITS: u32 = 0x0100_0000;

/// `v`, or a zero of its sign when |v| < 2^-125 (see [`TINY_BITS`]).
#[inline(always)]
pub(crate) fn flush_tiny(v: f32) -> f32 {
    let b = v.to_bits();
    if b & 0x7FFF_FFFF < TINY_BITS {
        f32::from_bits(b & 0x8000_0000)
    } else {
        v
    }
}

/// e^x for EXP_MIN <= x <= 0; 0 below EXP_MIN (and for NaN), 1 above 0.
#[inline(always)]
pub(crate) fn exp_neg<A: Arith>(x_in: f32) -> f32 {
    let x = if x_in > EXP_MIN { x_in } else { EXP_MIN };
    let x = if x < 0.0 { x } else { 0.0 };
    let n = A::fma(x, LOG2E, 0.5).floor();
    let r = A::fma(n, -LN2_HI, x);
    // `n + 0` is n (never -0 here), but to a compiler a different value, so
    // it cannot factor `fma(n, c2, fma(n, c1, x))` into `fma(n, c1 + c2, x)`
    // (Mesa does, for SPIR-V without NoContraction).
    let r = A::fma(n + OPAQUE_ZERO, -LN2_LO, r);
    let mut p = EXP_C[0];
    for &c in &EXP_C[1..] {
        p = A::fma(p, r, c);
    }
    p = A::fma(p, r, 1.0);
    p = A::fma(p, r, 1.0);
    // p 2^n by adding n to p's exponent field: p is in [0.7, 1.5] and n in
    // [-123, 0], so the result is normal. (A float multiply by 2^n built from
    // bits is exact too, but Mesa rewrites that pattern into its approximate
    // exp2, so the integer form is the one every compiler leaves alone.)
    let ni = n as i32;
    let v = f32::from_bits(p.to_bits().wrapping_add((ni << 23) as u32));
    if x_in >= EXP_MIN {
        v
    } else {
        0.0
    }
}

/// 1 / d for d in [1, 2].
#[inline(always)]
pub(crate) fn recip12<A: Arith>(d: f32) -> f32 {
    let mut y = A::fma(d, RECIP_B, RECIP_A);
    for _ in 0..3 {
        let e = A::fma(-d, y, 1.0);
        y = A::fma(y, e, y + OPAQUE_ZERO);
    }
    y
}

/// `(tanh x, 1 - |tanh x|)`, the second without cancellation (it is
/// `2t / (1 + t)` with `t = e^(-2|x|)` beyond the series); NaN stays NaN.
#[inline(always)]
pub(crate) fn tanh2<A: Arith>(x: f32) -> (f32, f32) {
    let ax = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
    let x2 = x * x;
    let mut p = TANH_C[0];
    for &c in &TANH_C[1..] {
        p = A::fma(x2, p, c);
    }
    let small = x * A::fma(x2, p, 1.0);
    let t = exp_neg::<A>(-2.0 * ax);
    let y = recip12::<A>(1.0 + t);
    let big = (1.0 - t) * y;
    let big = f32::from_bits(big.to_bits() | (x.to_bits() & 0x8000_0000));
    let series = ax < TANH_SERIES;
    let th = if series { small } else { big };
    let m = if series {
        1.0 - f32::from_bits(small.to_bits() & 0x7FFF_FFFF)
    } else {
        2.0 * t * y
    };
    if is_nan(x) {
        (x, x)
    } else {
        (th, m)
    }
}

/// `(sigmoid x, sigmoid' x)`: with `t = e^-|x|` and `y = 1 / (1 + t)`, the
/// sigmoid is `y` or `t y`, and its slope `t y^2`; NaN stays NaN.
#[inline(always)]
pub(crate) fn sigmoid2<A: Arith>(x: f32) -> (f32, f32) {
    let ax = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
    let t = exp_neg::<A>(-ax);
    let y = recip12::<A>(1.0 + t);
    let s = if x >= 0.0 { y } else { t * y };
    if is_nan(x) {
        (x, x)
    } else {
        (s, t * y * y)
    }
}

/// e^x - 1 for x <= 0 (the SELU's negative side).
#[inline(always)]
fn expm1_neg<A: Arith>(x: f32) -> f32 {
    let mut p = EXPM1_C[0];
    for &c in &EXPM1_C[1..] {
        p = A::fma(x, p, c);
    }
    let series = x * A::fma(x, p, 1.0);
    let ax = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
    if ax < EXPM1_SERIES {
        series
    } else {
        exp_neg::<A>(x) - 1.0
    }
}

/// phi(x) with the class's arithmetic (`SLOPE` is the leaky slope in f32).
#[inline(always)]
pub fn act<A: Arith>(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Linear => x,
        Activation::Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a as f32 * x
            }
        }
        Activation::Tanh => flush_tiny(tanh2::<A>(x).0),
        Activation::Sigmoid => flush_tiny(sigmoid2::<A>(x).0),
        Activation::Selu => {
            let neg = SELU_ALPHA * expm1_neg::<A>(x);
            let v = SELU_LAMBDA * if x > 0.0 { x } else { neg };
            if is_nan(x) {
                x
            } else {
                flush_tiny(v)
            }
        }
        Activation::Gelu => flush_tiny(0.5 * x * gelu_parts::<A>(x).0),
        Activation::GeluErf => flush_tiny(0.5 * x * gelu_erf_parts::<A>(x).0),
    }
}

/// The erf GELU's `(1 + erf(x / sqrt 2), e^(-x^2 / 2))`: with z = |x| / sqrt 2
/// (clamped at [`ERFC_MAX`]), `1 +- z P(z^2)` below [`ERF_SMALL`], and from
/// there `e^Q(z)` (erfc z, so no cancellation for x < 0) or `2 - e^Q(z)`.
#[inline(always)]
fn gelu_erf_parts<A: Arith>(x: f32) -> (f32, f32) {
    let ax = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
    // `+ 0`: the product may then be contracted only with that 0 (the same
    // value), never with the subtraction of u below.
    let z = ax * RSQRT2 + OPAQUE_ZERO;
    let z = if z < ERFC_MAX { z } else { ERFC_MAX };
    let s = z * z;
    let mut p = ERF_S[0];
    for &c in &ERF_S[1..] {
        p = A::fma(p, s, c);
    }
    let zs = if x < 0.0 { -z } else { z };
    let series = A::fma(zs, p, 1.0);
    let near = z < ERFC_MID;
    let u = z - if near { ERFC_A_AT } else { ERFC_B_AT };
    let mut q = if near { ERFC_A[0] } else { ERFC_B[0] };
    for i in 1..ERFC_A.len() {
        q = A::fma(q, u, if near { ERFC_A[i] } else { ERFC_B[i] });
    }
    let ec = exp_neg::<A>(q);
    let tail = if x < 0.0 { ec } else { 2.0 - ec };
    let one_plus = if z < ERF_SMALL { series } else { tail };
    (one_plus, exp_neg::<A>(-(x * x * 0.5)))
}

/// GELU's `(1 + tanh u, 1 - tanh^2 u)` at `u = sqrt(2/pi) (x + 0.044715 x^3)`,
/// without cancellation for large |u| (`1 + tanh u = 1 - |tanh u|` for u < 0).
#[inline(always)]
fn gelu_parts<A: Arith>(x: f32) -> (f32, f32) {
    let u = GELU_C * A::fma(GELU_K * x * x, x, x + OPAQUE_ZERO);
    let (th, m) = tanh2::<A>(u);
    let one_plus = if u >= 0.0 { 1.0 + th } else { m };
    (one_plus, m * (2.0 - m))
}

/// phi'(x) with the class's arithmetic.
#[inline(always)]
pub fn dact<A: Arith>(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Linear => 1.0,
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(a) => {
            if x > 0.0 {
                1.0
            } else {
                a as f32
            }
        }
        Activation::Tanh => {
            let m = tanh2::<A>(x).1;
            flush_tiny(m * (2.0 - m))
        }
        Activation::Sigmoid => flush_tiny(sigmoid2::<A>(x).1),
        Activation::Selu => {
            let neg = SELU_ALPHA * exp_neg::<A>(x);
            let v = SELU_LAMBDA * if x > 0.0 { 1.0 } else { neg };
            if is_nan(x) {
                x
            } else {
                flush_tiny(v)
            }
        }
        Activation::Gelu => {
            let (one_plus, sech2) = gelu_parts::<A>(x);
            // One constant per product chain: a compiler may fold two
            // constants of a chain together, which would change the rounding.
            let right = x * sech2 * A::fma(GELU_K3 * x, x, 1.0) * GELU_C_HALF;
            flush_tiny(A::fma(0.5, one_plus, right))
        }
        Activation::GeluErf => {
            // Phi(x) + x phi(x).
            let (one_plus, d) = gelu_erf_parts::<A>(x);
            flush_tiny(A::fma(0.5, one_plus, x * d * INV_SQRT_2PI))
        }
    }
}

/// The constants above as WGSL: each one's bit pattern, `<NAME>_BITS`. The
/// shader reads them through `k(bits)`, which XORs in a uniform that is
/// always 0: a compiler cannot fold or reassociate a value it does not know
/// (Mesa rewrites expressions over literal constants for SPIR-V without
/// NoContraction, e.g. `n c1 + (n c2 + x)` into `n (c1 + c2) + x`).
pub(crate) fn wgsl_constants() -> String {
    let mut s = String::from("// Generated from src/act/arith.rs: the activations' constants.\n");
    s += &format!("const TINY_BITS: u32 = {TINY_BITS:#x}u;\n");
    let mut put = |name: &str, v: f32| {
        s += &format!("const {name}_BITS: u32 = {:#010x}u;\n", v.to_bits());
    };
    for (name, v) in [
        ("LOG2E", LOG2E),
        ("LN2_HI", LN2_HI),
        ("LN2_LO", LN2_LO),
        ("EXP_MIN", EXP_MIN),
        ("RECIP_A", RECIP_A),
        ("RECIP_B", RECIP_B),
        ("TANH_SERIES", TANH_SERIES),
        ("EXPM1_SERIES", EXPM1_SERIES),
        ("SELU_LAMBDA", SELU_LAMBDA),
        ("SELU_ALPHA", SELU_ALPHA),
        ("GELU_C", GELU_C),
        ("GELU_K", GELU_K),
        ("GELU_K3", GELU_K3),
        ("GELU_C_HALF", GELU_C_HALF),
        ("RSQRT2", RSQRT2),
        ("INV_SQRT_2PI", INV_SQRT_2PI),
        ("ERFC_A_AT", ERFC_A_AT),
        ("ERFC_B_AT", ERFC_B_AT),
        ("ERF_SMALL", ERF_SMALL),
        ("ERFC_MID", ERFC_MID),
        ("ERFC_MAX", ERFC_MAX),
    ] {
        put(name, v);
    }
    for (name, cs) in [
        ("EXP_C", &EXP_C[..]),
        ("TANH_C", &TANH_C[..]),
        ("EXPM1_C", &EXPM1_C[..]),
        ("ERF_S", &ERF_S[..]),
        ("ERFC_A", &ERFC_A[..]),
        ("ERFC_B", &ERFC_B[..]),
    ] {
        for (i, &c) in cs.iter().enumerate() {
            put(&format!("{name}{i}"), c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(got: f32, want: f64) -> f64 {
        let scale = (want.abs().max(f64::from(f32::MIN_POSITIVE)))
            .log2()
            .floor();
        (f64::from(got) - want).abs() / 2f64.powi(scale as i32 - 23)
    }

    #[test]
    fn wgsl_constants_carry_the_exact_bits() {
        let w = wgsl_constants();
        assert!(w.contains(&format!(
            "const LN2_LO_BITS: u32 = {:#010x}u;",
            LN2_LO.to_bits()
        )));
        assert!(w.contains(&format!(
            "const EXP_C0_BITS: u32 = {:#010x}u;",
            EXP_C[0].to_bits()
        )));
        assert_eq!(
            w.matches("_BITS: u32").count(),
            14 + 7 + 6 + 4 + 4 + 6 + 9 + 9 + 1
        );
    }

    #[test]
    fn constants_are_their_values() {
        assert_eq!(LN2_HI.to_bits(), 0x3F31_7200);
        assert!((f64::from(LN2_HI) + f64::from(LN2_LO) - std::f64::consts::LN_2).abs() < 1e-13);
        // n * LN2_HI is exact for |n| <= 511 (|n| <= 123 here): 15
        // significant bits plus 9 fit in 24.
        assert_eq!(LN2_HI.to_bits() & 0x1FF, 0);
    }

    #[test]
    fn exp_recip_and_the_activations_are_accurate() {
        let mut worst = [0f64; 4];
        for i in 0..=200_000 {
            let x = -86.0 * f64::from(i) / 200_000.0;
            let (u, f) = (exp_neg::<Unfused>(x as f32), exp_neg::<Fused>(x as f32));
            let want = f64::from(x as f32).exp();
            if x >= f64::from(EXP_MIN) {
                worst[0] = worst[0].max(ulps(u, want)).max(ulps(f, want));
            }
            let d = 1.0 + f64::from(i) / 200_000.0;
            let r = recip12::<Unfused>(d as f32);
            worst[1] = worst[1].max(ulps(r, 1.0 / f64::from(d as f32)));
        }
        for i in -100_000..=100_000 {
            let x = f64::from(i) * 1e-4;
            let xf = x as f32;
            for (k, a) in [(2, Activation::Tanh), (3, Activation::Sigmoid)] {
                let got = act::<Unfused>(a, xf);
                let want = a.f(f64::from(xf));
                // Absolute error in units of 2^-24 (near a zero of the function
                // the relative error is not the meaningful one).
                worst[k] = worst[k].max((f64::from(got) - want).abs() / 2f64.powi(-24));
            }
        }
        assert!(worst[0] < 3.0, "exp: {} ULP", worst[0]);
        assert!(worst[1] < 2.0, "recip: {} ULP", worst[1]);
        assert!(worst[2] < 4.0 && worst[3] < 4.0, "tanh/sigmoid: {worst:?}");
    }

    #[test]
    fn the_erf_gelu_keeps_its_relative_accuracy_in_both_tails() {
        // Phi(x) = gelu(x) / x against f64 (`Activation::f`, whose erfc has
        // no cancellation beyond 2.5 and loses under 1e-11 below), as
        // relative errors, so the negative tail, where
        // Phi falls to 1e-37, is judged as closely as the middle. The bounds
        // are the fits' errors plus the f32 roundings around them. z < 1:
        // erf's series (1.7e-7 relative), for x < 0 amplified by erf/erfc (at
        // most 5.4, at z = 1), plus the 1 - e rounding (3.2e-7 of erfc(1)):
        // 1.5e-6. z in [1, 3): the fit's 7.4e-7 absolute in ln erfc, the
        // rounding of the Horner chain's values (up to 9.2: 4.8e-7 each, a
        // few of them), exp's 3 units: 3e-6. z in [3, 9): 7.2e-6 and values
        // up to 85 (3.8e-6 a rounding): 3e-5.
        let a = Activation::GeluErf;
        let mut worst = [0f64; 3];
        for i in 1..=125_000 {
            let x = -12.5 + f64::from(i) * 2e-4;
            let xf = x as f32;
            let x = f64::from(xf);
            if xf == 0.0 {
                continue;
            }
            let want = a.f(x) / x;
            let z = x.abs() * std::f64::consts::FRAC_1_SQRT_2;
            let k = usize::from(z >= 1.0) + usize::from(z >= 3.0);
            for got in [act::<Unfused>(a, xf), act::<Fused>(a, xf)] {
                worst[k] = worst[k].max((f64::from(got) / x - want).abs() / want);
            }
        }
        eprintln!("erf gelu relative errors: {worst:?}");
        assert!(
            worst[0] < 1.5e-6 && worst[1] < 3e-6 && worst[2] < 3e-5,
            "{worst:?}"
        );
        // Beyond, erfc's e^Q is below e^-85 and the output a zero of its
        // sign; the positive side is x itself.
        for x in [-13.0f32, -20.0, -1e10, f32::MIN] {
            assert_eq!(act::<Unfused>(a, x).to_bits(), 0x8000_0000, "{x}");
        }
        for x in [13.0f32, 20.0, 1e10] {
            assert_eq!(act::<Fused>(a, x), x);
        }
        assert!(act::<Unfused>(a, f32::NAN).is_nan());
    }

    #[test]
    fn every_activation_follows_its_f64_form() {
        for a in crate::act::EVERY {
            for i in -4000..=4000 {
                let x = (f64::from(i) * 0.0025) as f32;
                for (got, want) in [
                    (act::<Unfused>(a, x), a.f(f64::from(x))),
                    (act::<Fused>(a, x), a.f(f64::from(x))),
                    (dact::<Unfused>(a, x), a.df(f64::from(x))),
                    (dact::<Fused>(a, x), a.df(f64::from(x))),
                ] {
                    let err = (f64::from(got) - want).abs();
                    assert!(
                        err <= 1e-6 * (1.0 + want.abs()),
                        "{a:?} at {x}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn nan_and_infinities_are_handled() {
        for a in [Activation::Tanh, Activation::Sigmoid, Activation::Selu] {
            assert!(act::<Unfused>(a, f32::NAN).is_nan(), "{a:?}");
        }
        assert_eq!(act::<Unfused>(Activation::Tanh, f32::INFINITY), 1.0);
        assert_eq!(act::<Unfused>(Activation::Tanh, f32::NEG_INFINITY), -1.0);
        assert_eq!(act::<Unfused>(Activation::Sigmoid, f32::INFINITY), 1.0);
        assert_eq!(act::<Unfused>(Activation::Sigmoid, f32::NEG_INFINITY), 0.0);
        assert_eq!(
            act::<Unfused>(Activation::Selu, f32::NEG_INFINITY),
            -SELU_LAMBDA * SELU_ALPHA
        );
        assert_eq!(exp_neg::<Unfused>(-200.0), 0.0);
        assert_eq!(exp_neg::<Unfused>(-85.5), 0.0);
        assert!(exp_neg::<Unfused>(-85.0) > 1e-37);
        // Outputs below 2^-125 are zeros of their sign.
        assert_eq!(act::<Unfused>(Activation::Sigmoid, -95.0).to_bits(), 0);
        assert_eq!(
            act::<Unfused>(Activation::Gelu, -12.0).to_bits(),
            0x8000_0000
        );
        assert!(act::<Unfused>(Activation::Sigmoid, -84.0) > 0.0);
    }

    #[test]
    fn the_classes_differ_only_where_fma_rounding_does() {
        // The two classes are different functions (otherwise one mirror would
        // do), and each is deterministic.
        let differ = (0..100_000)
            .map(|i| -10.0 + i as f32 * 2e-4)
            .filter(|&x| tanh2::<Fused>(x).0.to_bits() != tanh2::<Unfused>(x).0.to_bits())
            .count();
        assert!(differ > 0, "fused and unfused tanh never differ");
    }
}
