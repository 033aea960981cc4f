//! The integer program that defines every normal and truncated-normal value.
//!
//! Box-Muller needs `ln`, `sqrt`, `sin` and `cos`; the truncated normal needs
//! `erfinv`. Floats would make their results depend on the device: whether
//! `fma` is fused, fast math, the accuracy of a vendor's `log` or `sin`. Here
//! they are evaluated in fixed point with 32-bit integer operations only: the
//! same wrapping adds, shifts, selects, `clz` and 32x32 -> 64-bit multiplies
//! the Philox rounds use. The result is assembled into an f32 bit pattern by
//! integer steps, so the unit-scale value is the same on every device; the
//! one float operation left is the final multiply by the scale (correctly
//! rounded everywhere, short of a subnormal product on a device that flushes
//! them, which needs a std below about 1e-28). `shaders/rng/fixed.wgsl` is the GPU
//! twin of this file; its constants and polynomials are generated from the
//! tables below (`wgsl_constants`), so there is one source for them.
//!
//! # Formats
//!
//! * Polynomials take a signed Q0.32 argument `v` (value `v / 2^32`, in
//!   [-1/2, 1/2)) and evaluate Horner's rule `p = c_k + mulhi_s(p, v)` on
//!   i32 partial sums in Q(32-F).F, highest degree first. `mulhi_s(a, b)` is
//!   `floor(a b / 2^32)`. The coefficient tables were fitted once by
//!   `tests/fixed_point_fit.py` (Chebyshev least squares on each interval,
//!   rounded to the format); the unit tests check that every partial sum stays
//!   in range and the accuracy over each function's whole input domain.
//! * Positive results are carried as `Pf` (`m / 2^31 * 2^e` with `m`'s
//!   top bit set), multiplied with one `mulhi`, and rounded to f32 once
//!   (round half up on the 8 dropped bits).
//!
//! # Accuracy
//!
//! Measured over every input of each function: each of the 2^24 radii `r = sqrt(-2 ln u)` is
//! within 2^-27.9 relative of the exact value, each of the 2^24 angle factors
//! (|sin|, |cos|) within 2^-28.8, each of the 2^24 truncated values within
//! 2^-27.4 before rounding. A normal is `r` times an angle factor (one more
//! truncation, 2^-31), so its relative error is below 2^-27.3 = 0.1 f32 ULP
//! before the final rounding: every unit value is within 0.6 ULP of the exact
//! one (derived for the 2^48 pairs; tested on 2^20 of them and the extremes). The contract is determinism: the same bits
//! everywhere; the accuracy is what makes them the right bits.

/// `sqrt(1/2)` in Q0.32, rounded up: a normalized mantissa `mn` (Q0.32)
/// with `mn < SQRT_HALF_Q32` lies below `sqrt(1/2)`.
pub const SQRT_HALF_Q32: u32 = 3_037_000_500;
/// `ln 2` in Q5.59 (exact to the integer).
pub const LN2_Q59: u64 = 399_572_145_162_582_989;
/// `erf(sqrt 2)` in Q0.32.
pub const ERF_SQRT2_Q32: u32 = 4_099_545_151;
/// `Q(1 << 23)`: the angle's quarter-turn in units of `pi 2^-24`.
const QUARTER: u32 = 1 << 23;

/// `ln(1 + y) / y` on `y` in [sqrt(1/2) - 1, sqrt(2) - 1], degree 11
/// (fit error 2^-33 relative).
pub const LN: Poly<12> = Poly {
    name: "ln1p_ratio",
    frac: 30,
    c: [
        -64_392_279,
        115_339_211,
        -116_817_099,
        118_319_378,
        -133_258_040,
        153_390_993,
        -178_997_950,
        214_749_529,
        -268_434_740,
        357_913_922,
        -536_870_916,
        1_073_741_824,
    ],
};
/// `sin(pi x / 4) / x` in `v = x^2 / 2` on [0, 1/2], degree 4 (2^-37).
pub const SIN: Poly<5> = Poly {
    name: "sin_ratio",
    frac: 31,
    c: [10_617, -628_309, 21_392_315, -346_799_333, 1_686_629_713],
};
/// `cos(pi x / 4)` in `v = x^2 / 2` on [0, 1/2], degree 4 (2^-33).
pub const COS: Poly<5> = Poly {
    name: "cos_q",
    frac: 30,
    c: [60_642, -2_799_791, 68_093_808, -662_337_934, 1_073_741_824],
};
/// `1 / sqrt(x)` in `v = x / 2` on [1/8, 1/2], degree 4 (2^-8.8): the seed
/// of two Newton steps.
pub const RSQRT: Poly<5> = Poly {
    name: "rsqrt_seed",
    frac: 24,
    c: [
        1_030_532_577,
        -1_618_910_716,
        989_020_446,
        -302_474_664,
        58_751_633,
    ],
};
/// `sqrt(2) erfinv(y) / s` with `y = erf(sqrt 2) s`, in `v = w / 8` where
/// `w = -ln(1 - y^2)` in [0, 2.42], degree 8 (2^-34).
pub const TRUNC: Poly<9> = Poly {
    name: "trunc_ratio",
    frac: 28,
    c: [
        717_460_911,
        -1_136_199_919,
        274_182_649,
        542_164_183,
        -189_103_220,
        -433_262_780,
        267_836_448,
        672_564_959,
        321_126_118,
    ],
};

/// A fixed-point polynomial: coefficients in Q(32-frac).frac, highest degree first.
#[derive(Debug, Clone, Copy)]
pub struct Poly<const N: usize> {
    /// The WGSL function's name suffix (`poly_<name>`).
    pub name: &'static str,
    /// Fractional bits of the coefficients and the result.
    pub frac: u32,
    /// Coefficients, highest degree first.
    pub c: [i32; N],
}

impl<const N: usize> Poly<N> {
    /// Horner's rule on a signed Q0.32 argument.
    #[inline(always)]
    pub fn eval(&self, v: i32) -> i32 {
        let mut p = self.c[0];
        for &c in &self.c[1..] {
            p = c.wrapping_add(mulhi_s(p, v));
        }
        p
    }

    /// The same evaluation, in WGSL.
    fn wgsl(&self) -> String {
        let mut s = format!(
            "fn poly_{}(v: i32) -> i32 {{\n    var p = {}i;\n",
            self.name, self.c[0]
        );
        for c in &self.c[1..] {
            s += &format!("    p = {c}i + mulhi_s(p, v);\n");
        }
        s + "    return p;\n}\n"
    }
}

/// `floor(a b / 2^32)` for unsigned words.
#[inline(always)]
pub fn mulhi(a: u32, b: u32) -> u32 {
    ((u64::from(a) * u64::from(b)) >> 32) as u32
}

/// `floor(a b / 2^32)` for signed words.
#[inline(always)]
pub fn mulhi_s(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b)) >> 32) as i32
}

/// A positive value `m / 2^31 * 2^e`, `m`'s top bit set; `m == 0` is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pf {
    /// Mantissa, top bit set (or 0).
    pub m: u32,
    /// Binary exponent.
    pub e: i32,
}

impl Pf {
    /// `v / 2^frac` as a [`Pf`] (zero for `v == 0`).
    #[inline(always)]
    pub fn from_fixed(v: u32, frac: i32) -> Pf {
        let lz = v.leading_zeros();
        Pf {
            m: v << (lz & 31),
            e: 31 - lz as i32 - frac,
        }
    }

    /// The product, with one `mulhi` (truncating) and a one-bit renormalization.
    #[inline(always)]
    pub fn times(self, o: Pf) -> Pf {
        let p = mulhi(self.m, o.m);
        let top = p >> 31;
        Pf {
            m: p << (1 - top),
            e: self.e + o.e + top as i32,
        }
    }

    /// The f32 bit pattern of `+-self`: the top 24 bits of `m`, rounded half up
    /// on the 8 dropped bits; zero is +0.0 whatever the sign. Every value the
    /// mapping forms lies in [2^-40, 8), inside f32's normal range.
    #[inline(always)]
    pub fn to_f32_bits(self, negative: bool) -> u32 {
        let r = (self.m >> 8) + ((self.m >> 7) & 1);
        let carry = r >> 24;
        let r = r >> carry;
        let e = self.e + carry as i32;
        let bits = (((e + 127) as u32) << 23) | (r & 0x7F_FFFF) | (u32::from(negative) << 31);
        if self.m == 0 {
            0
        } else {
            bits
        }
    }

    /// The value in f64 (exact), for tests and accuracy checks.
    #[cfg(test)]
    fn to_f64(self) -> f64 {
        f64::from(self.m) * 2f64.powi(self.e - 31)
    }
}

/// `-ln(F 2^-e0)` in Q5.59, for a mantissa `mn` (Q0.32, top bit set, F =
/// mn / 2^32 in [1/2, 1)) and an exponent `e0` with `-1 <= e0 <= 32`. `F` is
/// moved into [sqrt(1/2), sqrt(2)) (doubling it when below), so `-ln =
/// j ln 2 - ln(1 + y)` with `|y| <= 0.414` exact in Q0.32 and `ln(1 + y) =
/// y P(y)` by [`LN`]; `y P` is formed as a full 64-bit product, so a tiny
/// result keeps its relative precision.
#[inline(always)]
pub fn neg_ln_q59(mn: u32, e0: i32) -> u64 {
    let small = mn < SQRT_HALF_Q32;
    let j = (e0 + i32::from(small)) as u32;
    // |y| in Q0.32: y = 2F - 1 >= 0 when small, y = F - 1 < 0 otherwise.
    let y = if small {
        mn.wrapping_sub(1 << 31) << 1
    } else {
        mn.wrapping_neg()
    };
    let yi = if small {
        y as i32
    } else {
        (y as i32).wrapping_neg()
    };
    let p = LN.eval(yi) as u32;
    let t = (u64::from(y) * u64::from(p)) >> 3;
    let base = u64::from(j).wrapping_mul(LN2_Q59);
    if small {
        base.wrapping_sub(t)
    } else {
        base.wrapping_add(t)
    }
}

/// `1 / sqrt(x)` in Q2.30 for `x = X / 2^32` in [1/4, 1): the [`RSQRT`] seed
/// and two Newton steps `g += g (1 - x g^2) / 2` (each squares the error).
#[inline(always)]
pub fn rsqrt_q30(x: u32) -> u32 {
    let mut g = (RSQRT.eval((x >> 1) as i32) as u32) << (30 - RSQRT.frac);
    for _ in 0..2 {
        let gg = mulhi(g, g); // g^2, Q4.28
        let d = (1u32 << 28).wrapping_sub(mulhi(x, gg)) as i32; // 1 - x g^2, Q4.28
                                                                // g d / 2 in Q2.30 is floor(g d' / 2^32) with d' = d 2^3 (|d| < 2^-7).
        g = g.wrapping_add(mulhi_s(g as i32, d.wrapping_shl(3)) as u32);
    }
    g
}

/// The Box-Muller radius `sqrt(-2 ln u)` for `u = (k + 1) 2^-24`, `k` the
/// word's top 24 bits. `u = 1` gives zero.
#[inline(always)]
pub fn radius(word: u32) -> Pf {
    let m = (word >> 8) + 1;
    let lz = m.leading_zeros(); // 7 ..= 31
                                // u = (m << lz) 2^-32 * 2^-(lz - 8); h = -ln u in Q5.59.
    let h = neg_ln_q59(m << lz, lz as i32 - 8);
    // 2h = x 2^(6 - s) with x = X / 2^32 in [1/4, 1) and s even.
    let s = h.leading_zeros() & 62;
    let x = (((h << s) >> 32) as u32).max(1 << 30);
    let root = mulhi(x, rsqrt_q30(x)); // sqrt(x), Q2.30
    let mut r = Pf::from_fixed(root, 30);
    r.e += 3 - (s / 2) as i32;
    if h == 0 {
        Pf { m: 0, e: 0 }
    } else {
        r
    }
}

/// `sin(theta)` and `cos(theta)` of the Box-Muller angle `theta = pi a 2^-24`,
/// `a = 2k - (2^24 - 1)` (odd, |a| < 2^24), `k` the word's top 24 bits:
/// `(sin negative, |sin|, cos negative, |cos|)`. The angle is reduced by
/// integer symmetries to `gamma = (pi / 4) x`, `x = w / 2^22`, `w` odd in
/// [1, 2^22), where `sin gamma = x S(x^2 / 2)` ([`SIN`]) and `cos gamma =
/// C(x^2 / 2)` ([`COS`]).
#[inline(always)]
pub fn sincos(word: u32) -> (bool, Pf, bool, Pf) {
    let a = ((word >> 8) << 1) as i32 - 0xFF_FFFF;
    let u = a.unsigned_abs();
    let flip = u > QUARTER; // pi - theta: cos changes sign
    let v = if flip { (QUARTER << 1) - u } else { u };
    let swap = v > QUARTER >> 1; // pi/2 - theta: sin and cos swap
    let w = if swap { QUARTER - v } else { v };
    let t = ((u64::from(w) * u64::from(w)) >> 13) as i32; // x^2 / 2, Q0.32
    let sin_g = Pf::from_fixed(w, 22).times(Pf::from_fixed(SIN.eval(t) as u32, SIN.frac as i32));
    let cos_g = Pf::from_fixed(COS.eval(t) as u32, COS.frac as i32);
    let (s, c) = if swap { (cos_g, sin_g) } else { (sin_g, cos_g) };
    (a < 0, s, flip, c)
}

/// The two unit normals of one Box-Muller pair, as f32 bit patterns:
/// `(r cos theta, r sin theta)`.
#[inline(always)]
pub fn normal_pair_bits(wa: u32, wb: u32) -> (u32, u32) {
    let r = radius(wa);
    let (sn, s, cn, c) = sincos(wb);
    (r.times(c).to_f32_bits(cn), r.times(s).to_f32_bits(sn))
}

/// The truncated normal's unit value `sqrt(2) erfinv(erf(sqrt 2) s)` in
/// (-2, 2) for `s = a 2^-24`, `a = 2k - (2^24 - 1)`, as an f32 bit pattern.
#[inline(always)]
pub fn truncated_bits(word: u32) -> u32 {
    let (negative, x) = truncated(word);
    x.to_f32_bits(negative)
}

/// [`truncated_bits`] before rounding: `(negative, |x|)` with `|x| = |s|
/// G(w / 8)`, `w = -ln(1 - y^2)`, `y = erf(sqrt 2) |s|` ([`TRUNC`]).
#[inline(always)]
pub fn truncated(word: u32) -> (bool, Pf) {
    let a = ((word >> 8) << 1) as i32 - 0xFF_FFFF;
    let abs = a.unsigned_abs();
    let y = mulhi(ERF_SQRT2_Q32, abs << 8); // y, Q0.32
    let q = mulhi(y, y); // y^2, Q0.32
    let v = q.wrapping_neg(); // 1 - y^2, Q0.32 (q > 0)
    let lz = v.leading_zeros();
    let h = if q == 0 {
        0
    } else {
        neg_ln_q59(v << (lz & 31), lz as i32)
    };
    let g = TRUNC.eval((h >> 30) as i32) as u32; // w / 8 in Q0.32
    (
        a < 0,
        Pf::from_fixed(abs, 24).times(Pf::from_fixed(g, TRUNC.frac as i32)),
    )
}

/// The WGSL constants and polynomial functions `shaders/rng/fixed.wgsl` uses,
/// generated from the tables above.
pub fn wgsl_constants() -> String {
    let mut s = String::from(
        "// Generated from src/rng/fixed.rs: the fixed-point constants and polynomials.\n",
    );
    s += &format!("const SQRT_HALF_Q32: u32 = {SQRT_HALF_Q32}u;\n");
    s += &format!("const LN2_Q59_LO: u32 = {}u;\n", LN2_Q59 as u32);
    s += &format!("const LN2_Q59_HI: u32 = {}u;\n", (LN2_Q59 >> 32) as u32);
    s += &format!("const ERF_SQRT2_Q32: u32 = {ERF_SQRT2_Q32}u;\n");
    s += &format!("const RSQRT_SHIFT: u32 = {}u;\n", 30 - RSQRT.frac);
    s += &format!("const SIN_FRAC: i32 = {}i;\n", SIN.frac);
    s += &format!("const COS_FRAC: i32 = {}i;\n", COS.frac);
    s += &format!("const TRUNC_FRAC: i32 = {}i;\n", TRUNC.frac);
    s += &LN.wgsl();
    s += &SIN.wgsl();
    s += &COS.wgsl();
    s += &RSQRT.wgsl();
    s += &TRUNC.wgsl();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Horner with checked i64 partial sums: panics if any leaves the i32 range.
    fn checked_eval<const N: usize>(p: &Poly<N>, v: i32) -> i32 {
        let mut acc = i64::from(p.c[0]);
        for &c in &p.c[1..] {
            acc = i64::from(c) + ((acc * i64::from(v)) >> 32);
            assert!(i32::try_from(acc).is_ok(), "{} overflows at {v}", p.name);
        }
        acc as i32
    }

    fn rel(got: f64, want: f64) -> f64 {
        ((got - want) / want).abs()
    }

    #[test]
    fn mulhi_s_is_the_floor_of_the_product() {
        for (a, b) in [
            (-1i32, 1i32),
            (-1, -1),
            (i32::MIN, i32::MAX),
            (12345, -678910),
            (0, -5),
        ] {
            let want = ((i128::from(a) * i128::from(b)) as f64 / 2f64.powi(32)).floor();
            assert_eq!(f64::from(mulhi_s(a, b)), want, "{a} {b}");
        }
    }

    #[test]
    fn constants_are_their_values() {
        assert_eq!(SQRT_HALF_Q32, (0.5f64.sqrt() * 2f64.powi(32)).ceil() as u32);
        assert_eq!(
            ERF_SQRT2_Q32,
            (crate::rng::dist::ERF_SQRT2 * 2f64.powi(32)).round() as u32
        );
        // ln 2 to 60 digits (the f64 constant is too short for 59 bits).
        let ln2_q59 = core::f64::consts::LN_2 * 2f64.powi(59);
        assert!((LN2_Q59 as f64 - ln2_q59).abs() <= 64.0);
        assert_eq!(LN2_Q59 % 1000, 989);
    }

    #[test]
    fn every_polynomial_partial_sum_stays_in_range() {
        // The arguments each polynomial can receive, over their whole ranges.
        for v in (-1_258_000_000i32..=1_779_000_000).step_by(997) {
            checked_eval(&LN, v);
        }
        for v in (0i32..=i32::MAX).step_by(997) {
            checked_eval(&SIN, v);
            checked_eval(&COS, v);
        }
        for v in ((1i32 << 29)..i32::MAX).step_by(997) {
            checked_eval(&RSQRT, v);
        }
        for v in (0i32..1_300_000_000).step_by(997) {
            checked_eval(&TRUNC, v);
        }
    }

    #[test]
    fn every_radius_is_within_2_pow_minus_27_3() {
        let mut worst: f64 = 0.0;
        for k in 0u32..1 << 24 {
            let r = radius(k << 8).to_f64();
            let u = f64::from(k + 1) * 2f64.powi(-24);
            let want = (-2.0 * u.ln()).sqrt();
            if k == (1 << 24) - 1 {
                assert_eq!(r, 0.0);
            } else {
                worst = worst.max(rel(r, want));
            }
        }
        eprintln!("radius: worst relative error 2^{:.2}", worst.log2());
        assert!(
            worst < 2f64.powi(-27) / 1.3,
            "radius error 2^{:.1}",
            worst.log2()
        );
    }

    #[test]
    fn every_angle_factor_is_within_2_pow_minus_28_3() {
        let mut worst: f64 = 0.0;
        for k in 0u32..1 << 24 {
            let (sn, s, cn, c) = sincos(k << 8);
            let theta = core::f64::consts::PI * (f64::from(2 * k) - 16_777_215.0) * 2f64.powi(-24);
            let (ws, wc) = theta.sin_cos();
            assert_eq!(sn, ws < 0.0, "{k}");
            assert_eq!(cn, wc < 0.0, "{k}");
            worst = worst
                .max(rel(s.to_f64(), ws.abs()))
                .max(rel(c.to_f64(), wc.abs()));
        }
        eprintln!("angle: worst relative error 2^{:.2}", worst.log2());
        assert!(
            worst < 2f64.powi(-28) / 1.3,
            "angle error 2^{:.1}",
            worst.log2()
        );
    }

    #[test]
    fn every_truncated_value_is_within_2_pow_minus_27_and_0_6_ulp() {
        let (mut worst, mut worst_ulp): (f64, f64) = (0.0, 0.0);
        for k in 0u32..1 << 24 {
            let (negative, x) = truncated(k << 8);
            let got = f64::from(f32::from_bits(x.to_f32_bits(negative)));
            let s = (f64::from(2 * k) - 16_777_215.0) * 2f64.powi(-24);
            let want = core::f64::consts::SQRT_2
                * crate::rng::dist::erfinv_f64(crate::rng::dist::ERF_SQRT2 * s);
            assert!(got.abs() < 2.0 && negative == (s < 0.0), "{k}: {got}");
            worst = worst.max(rel(x.to_f64(), want.abs()));
            let ulp = 2f64.powi(want.abs().log2().floor() as i32 - 23);
            worst_ulp = worst_ulp.max((got - want).abs() / ulp);
        }
        eprintln!(
            "truncated: 2^{:.2} relative, {worst_ulp:.3} ULP",
            worst.log2()
        );
        assert!(
            worst < 2f64.powi(-27),
            "truncated error 2^{:.1}",
            worst.log2()
        );
        assert!(worst_ulp < 0.6, "truncated: {worst_ulp} ULP");
    }

    #[test]
    fn normal_pairs_are_within_0_6_ulp() {
        // Pairs from a fixed Philox stream, plus the extremes of both words.
        let mut words: Vec<(u32, u32)> = (0..1u64 << 20)
            .map(|b| {
                let x = crate::rng::philox::block_words(11, 3, b);
                (x[0], x[1])
            })
            .collect();
        words.extend([
            (0, 0),
            (0, u32::MAX),
            (u32::MAX - 255, 1 << 31),
            (255, 0x8000_0000),
        ]);
        let mut worst: f64 = 0.0;
        for (wa, wb) in words {
            let (c, s) = normal_pair_bits(wa, wb);
            let (wc, ws, _) = crate::rng::dist::box_muller_f64(wa, wb);
            for (got, want) in [(c, wc), (s, ws)] {
                let got = f64::from(f32::from_bits(got));
                if want == 0.0 {
                    assert_eq!(got, 0.0);
                    continue;
                }
                let ulp = 2f64.powi(want.abs().log2().floor() as i32 - 23);
                worst = worst.max((got - want).abs() / ulp);
            }
        }
        eprintln!("normal: {worst:.3} ULP");
        assert!(worst < 0.6, "normal: {worst} ULP");
    }

    #[test]
    fn wgsl_constants_name_every_polynomial() {
        let s = wgsl_constants();
        for name in [
            "ln1p_ratio",
            "sin_ratio",
            "cos_q",
            "rsqrt_seed",
            "trunc_ratio",
        ] {
            assert!(
                s.contains(&format!("fn poly_{name}(v: i32) -> i32")),
                "{name}"
            );
        }
        assert!(s.contains(&format!("{}i + mulhi_s(p, v)", LN.c[11])));
    }
}
