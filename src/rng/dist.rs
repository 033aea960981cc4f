//! The distributions deepinit draws from, and the exact mapping from Philox
//! words to floats (the CPU reference; `shaders/init.wgsl` is the GPU twin).
//!
//! All three distributions are computed *without rejection*, one Philox word
//! (or one pair of words) per element, so every element is a pure function of
//! its index. The mapping, for element `e` with block words `x = [x0, x1, x2, x3]`
//! (see [`crate::rng::philox::block_words`]) and lane `j = e % 4`:
//!
//! * `k(w) = w >> 8`, the top 24 bits of a word.
//! * `unit_open_closed(w) = (k(w) + 1) * 2^-24`, in (0, 1]: never 0, so `ln` is finite.
//! * `signed_unit(w) = (k(w) - 8388607.5) * 2^-23`, in (-1, 1), symmetric about 0.
//!   Both are exact in f32 (24-bit integers times powers of two).
//! * normal (Box-Muller): the pair `p = j / 2` uses `(x[2p], x[2p+1])`;
//!   `r = sqrt(max(-2 ln(unit_open_closed(x[2p])), 0))`, `theta = pi * signed_unit(x[2p+1])`
//!   (inside [-pi, pi], where WGSL's `sin`/`cos` have a stated accuracy);
//!   even lanes take `r cos(theta)`, odd lanes `r sin(theta)`; times `std`.
//!   The largest |z| is `sqrt(48 ln 2) = 5.77` (P(|Z| > 5.77) = 8e-9).
//! * uniform: `sqrt(3) std * signed_unit(x[j])`, i.e. U(-a, a) with variance `std^2`.
//! * truncated normal at +-2 sigma: `y = erf(sqrt 2) * signed_unit(x[j])`,
//!   `value = (std / 0.87962566103423978) * sqrt(2) * erfinv(y)`. This is the inverse
//!   CDF of the normal restricted to [-2, 2], rescaled so the variance is `std^2`
//!   (the correction JAX and Keras use).

use crate::rng::philox::block_words;
use serde::Serialize;

/// 2^-24
pub const TWO_POW_M24: f32 = 5.960_464_5e-8;
/// 2^-23
pub const TWO_POW_M23: f32 = 1.192_092_9e-7;
/// Standard deviation of the standard normal truncated to [-2, 2].
pub const TRUNC_STD: f64 = 0.879_625_661_034_239_8;
/// Truncation bound in units of the *untruncated* sigma.
pub const TRUNC_BOUND: f64 = 2.0;
/// erf(sqrt 2) = P(|Z| < 2).
pub const ERF_SQRT2: f64 = 0.954_499_736_103_641_6;

/// Which distribution the weights are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    /// Gaussian (Box-Muller).
    Normal,
    /// Gaussian truncated at +-2 sigma, rescaled to the target variance.
    Truncated,
    /// Uniform on +-sqrt(3) sigma.
    Uniform,
}

impl Dist {
    /// All distributions, in a fixed order.
    pub const ALL: [Dist; 3] = [Dist::Normal, Dist::Truncated, Dist::Uniform];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Normal => "normal",
            Dist::Truncated => "truncated",
            Dist::Uniform => "uniform",
        }
    }

    /// Parses `normal`, `truncated` (or `truncated_normal`) and `uniform`.
    pub fn parse(s: &str) -> Option<Dist> {
        match s.to_ascii_lowercase().as_str() {
            "normal" | "gaussian" => Some(Dist::Normal),
            "truncated" | "truncated_normal" | "truncnorm" => Some(Dist::Truncated),
            "uniform" => Some(Dist::Uniform),
            _ => None,
        }
    }

    /// The factor the GPU kernel multiplies its unit-scale value by, for a target
    /// standard deviation `std`, rounded once to f32 (the CPU reference uses the
    /// same f32 so that uniform values match bit for bit).
    pub fn kernel_scale(self, std: f64) -> f32 {
        (std * self.unit_to_value()) as f32
    }

    /// value = unit_value * this * std, where unit_value is r cos(theta),
    /// signed_unit or erfinv(y) respectively.
    fn unit_to_value(self) -> f64 {
        match self {
            Dist::Normal => 1.0,
            Dist::Uniform => 3f64.sqrt(),
            Dist::Truncated => core::f64::consts::SQRT_2 / TRUNC_STD,
        }
    }

    /// The CDF of this distribution with standard deviation `std`, at `x`.
    pub fn cdf(self, std: f64, x: f64) -> f64 {
        match self {
            Dist::Normal => normal_cdf(x / std),
            Dist::Uniform => {
                let a = 3f64.sqrt() * std;
                ((x + a) / (2.0 * a)).clamp(0.0, 1.0)
            }
            Dist::Truncated => {
                let s = std / TRUNC_STD; // sigma of the untruncated normal
                let lo = normal_cdf(-TRUNC_BOUND);
                let z = (x / s).clamp(-TRUNC_BOUND, TRUNC_BOUND);
                ((normal_cdf(z) - lo) / (1.0 - 2.0 * lo)).clamp(0.0, 1.0)
            }
        }
    }

    /// Excess kurtosis of the distribution (independent of the scale).
    pub fn excess_kurtosis(self) -> f64 {
        match self {
            Dist::Normal => 0.0,
            Dist::Uniform => -1.2,
            Dist::Truncated => {
                // For Z ~ N(0,1) restricted to [-b, b], with mass m = erf(b / sqrt 2):
                //   E[Z^2] = 1 - 2 b phi(b) / m,  E[Z^4] = 3 - 2 phi(b) (b^3 + 3 b) / m.
                let b = TRUNC_BOUND;
                let phi = (-0.5 * b * b).exp() / (2.0 * core::f64::consts::PI).sqrt();
                let m = ERF_SQRT2;
                let m2 = 1.0 - 2.0 * b * phi / m;
                let m4 = 3.0 - 2.0 * phi * (b * b * b + 3.0 * b) / m;
                m4 / (m2 * m2) - 3.0
            }
        }
    }

    /// Largest |value| the mapping can produce, in units of `std`.
    pub fn max_abs_in_std(self) -> f64 {
        match self {
            Dist::Normal => (48.0 * core::f64::consts::LN_2).sqrt(),
            Dist::Uniform => 3f64.sqrt(),
            Dist::Truncated => TRUNC_BOUND / TRUNC_STD,
        }
    }
}

/// Standard normal CDF, accurate to f64 rounding in both tails (via erfc).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / core::f64::consts::SQRT_2)
}

/// The top 24 bits of a word.
#[inline(always)]
fn top24(w: u32) -> u32 {
    w >> 8
}

/// `(k + 1) * 2^-24` in (0, 1]; exact.
#[inline(always)]
pub fn unit_open_closed(w: u32) -> f32 {
    (top24(w) + 1) as f32 * TWO_POW_M24
}

/// `(k - 8388607.5) * 2^-23` in (-1, 1); exact and symmetric (k and 2^24-1-k map to +-x).
#[inline(always)]
pub fn signed_unit(w: u32) -> f32 {
    (top24(w) as f32 - 8_388_607.5) * TWO_POW_M23
}

/// Box-Muller on a pair of words, in f64: `(r cos theta, r sin theta)` and `r`.
#[inline]
pub fn box_muller_f64(wa: u32, wb: u32) -> (f64, f64, f64) {
    let u1 = f64::from(unit_open_closed(wa));
    let t = f64::from(signed_unit(wb));
    let r = (-2.0 * u1.ln()).max(0.0).sqrt();
    // theta = pi * t. The GPU forms pi_f32 * t in f32; the difference is
    // covered by the tolerance (it is below 2^-23 |theta|).
    let (s, c) = (core::f64::consts::PI * t).sin_cos();
    (r * c, r * s, r)
}

/// erfinv for |y| <= erf(sqrt 2) ~ 0.9545: M. Giles, "Approximating the erfinv
/// function" (GPU Computing Gems, 2011), single-precision central branch
/// (w = -ln(1 - y^2) < 5, which holds for |y| < 0.9966). The GPU evaluates exactly
/// this in f32; here it is evaluated in f64 as the starting point of
/// [`erfinv_f64`].
pub fn erfinv_giles(y: f64) -> f64 {
    let w = -((1.0 - y) * (1.0 + y)).ln() - 2.5;
    let mut p = 2.810_226_36e-08;
    p = 3.432_739_39e-07 + p * w;
    p = -3.523_387_7e-06 + p * w;
    p = -4.391_506_54e-06 + p * w;
    p = 0.000_218_580_87 + p * w;
    p = -0.001_253_725_03 + p * w;
    p = -0.004_177_681_64 + p * w;
    p = 0.246_640_727 + p * w;
    p = 1.501_409_41 + p * w;
    p * y
}

/// erfinv to f64 accuracy on |y| <= 0.96: Giles' approximation (relative error
/// about 1e-7) refined by two Newton steps on erf(x) - y, each of which squares
/// the relative error.
pub fn erfinv_f64(y: f64) -> f64 {
    let mut x = erfinv_giles(y);
    for _ in 0..2 {
        let err = libm::erf(x) - y;
        x -= err / (core::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp());
    }
    x
}

/// One element's value under the CPU reference, given its block words and lane,
/// computed in f64 and rounded once to f32. For uniform the computation is the
/// same single f32 multiply the GPU does, so the result is bit-identical.
#[inline]
pub fn element_value(dist: Dist, scale: f32, x: [u32; 4], lane: usize) -> f32 {
    match dist {
        Dist::Normal => {
            let p = lane & !1;
            let (c, s, _) = box_muller_f64(x[p], x[p + 1]);
            let z = if lane & 1 == 0 { c } else { s };
            (z * f64::from(scale)) as f32
        }
        Dist::Uniform => signed_unit(x[lane]) * scale,
        Dist::Truncated => {
            let y = ERF_SQRT2 * f64::from(signed_unit(x[lane]));
            (erfinv_f64(y) * f64::from(scale)) as f32
        }
    }
}

/// The four values of one Philox block: [`element_value`] for lanes 0..4, with
/// each Box-Muller pair computed once.
#[inline]
pub fn block_values(dist: Dist, scale: f32, x: [u32; 4]) -> [f32; 4] {
    match dist {
        Dist::Normal => {
            let s = f64::from(scale);
            let (c0, s0, _) = box_muller_f64(x[0], x[1]);
            let (c1, s1, _) = box_muller_f64(x[2], x[3]);
            [
                (c0 * s) as f32,
                (s0 * s) as f32,
                (c1 * s) as f32,
                (s1 * s) as f32,
            ]
        }
        _ => [0, 1, 2, 3].map(|lane| element_value(dist, scale, x, lane)),
    }
}

/// Per-element bound on |GPU - CPU reference| for one element, derived from the
/// accuracy WGSL guarantees for f32 builtins (WGSL spec, "Floating Point
/// Accuracy"). `unit` is the CPU reference's unit-scale magnitude for the element
/// (r for normal, the value / scale otherwise) and `scale` the kernel scale.
///
/// * uniform: one correctly rounded f32 multiply on exact inputs: the bound is 0.
/// * normal: `ln` has absolute error <= 2^-21 on [0.5, 2] and 3 ULP elsewhere, so
///   L = -2 ln u1 is off by dL <= 2^-20 + 2^-21 L (the 2 and the f32 roundings
///   included); `sqrt` turns that into dr <= min(sqrt(dL), dL / (2 r)) plus
///   2.5 ULP; `sin`/`cos` have absolute error <= 2^-11 on [-pi, pi], worth
///   r 2^-11; theta itself is rounded once (<= 2^-23 pi, times r); the final
///   products add a few ULP. Sum, with the few-ULP terms bounded by 2^-20 (1 + r).
/// * truncated: `w = -ln((1-y)(1+y))` carries dw <= 2^-20 (abs. 2^-21 or 3 ULP
///   of w <= 2.42, plus the product's rounding); the polynomial's slope in w is
///   below 0.3 and |y| < 1; nine f32 Horner steps add <= 9 ULP of p <= 1.5, and
///   Giles' approximation itself is within 2^-21 relative (checked by a test).
///   Sum: 2^-21 + 9 * 1.5 * 2^-24 + 2^-21 + 2^-20 <= 2^-18, doubled for margin.
pub fn gpu_tolerance(dist: Dist, scale: f32, unit: f64) -> f64 {
    let scale = f64::from(scale).abs();
    let p20 = 2f64.powi(-20);
    match dist {
        Dist::Uniform => 0.0,
        Dist::Normal => {
            let r = unit;
            let l = r * r;
            let dl = p20 + 0.5 * p20 * l;
            let dr = if r > 0.0 {
                dl.sqrt().min(dl / (2.0 * r))
            } else {
                dl.sqrt()
            };
            let dr = dr + 2.5 * 2f64.powi(-23) * r;
            let trig = r * 2f64.powi(-11) + r * core::f64::consts::PI * 2f64.powi(-23);
            scale * (dr + trig + p20 * (1.0 + r))
        }
        Dist::Truncated => scale * 2f64.powi(-17),
    }
}

/// Fills `out` with elements `start .. start + out.len()` of the tensor, using
/// the CPU reference (single-threaded; see [`crate::rng::cpu`] for the parallel driver).
pub fn fill_reference(
    dist: Dist,
    scale: f32,
    seed: u64,
    tensor_id: u32,
    start: u64,
    out: &mut [f32],
) {
    let mut e = start;
    let mut i = 0;
    while i < out.len() {
        let x = block_words(seed, tensor_id, e >> 2);
        let values = block_values(dist, scale, x);
        let lane0 = (e & 3) as usize;
        let take = (4 - lane0).min(out.len() - i);
        out[i..i + take].copy_from_slice(&values[lane0..lane0 + take]);
        i += take;
        e += take as u64;
    }
}

/// Fills `out` with the raw element words `start ..` (the "uniform bits").
pub fn fill_words(seed: u64, tensor_id: u32, start: u64, out: &mut [u32]) {
    for (e, o) in (start..).zip(out.iter_mut()) {
        *o = block_words(seed, tensor_id, e >> 2)[(e & 3) as usize];
    }
}

/// The unit-scale magnitude [`gpu_tolerance`] needs for one element: `r` for the
/// normal, |value / scale| otherwise.
pub fn tolerance_unit(dist: Dist, x: [u32; 4], lane: usize) -> f64 {
    match dist {
        Dist::Normal => box_muller_f64(x[lane & !1], x[(lane & !1) + 1]).2,
        Dist::Uniform => f64::from(signed_unit(x[lane]).abs()),
        Dist::Truncated => erfinv_f64(ERF_SQRT2 * f64::from(signed_unit(x[lane]))).abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_and_in_range() {
        assert_eq!(unit_open_closed(0), TWO_POW_M24);
        assert_eq!(unit_open_closed(u32::MAX), 1.0);
        assert_eq!(signed_unit(0), -(1.0 - TWO_POW_M24));
        assert_eq!(signed_unit(u32::MAX), 1.0 - TWO_POW_M24);
        // Symmetry: k and 2^24 - 1 - k map to opposite values.
        for k in [0u32, 1, 12345, 8_388_607, 8_388_608] {
            let a = signed_unit(k << 8);
            let b = signed_unit((0xFF_FFFF - k) << 8);
            assert_eq!(a, -b);
            // Exactness: the f32 result equals the exact rational value.
            assert_eq!(f64::from(a), (f64::from(k) - 8_388_607.5) / 8_388_608.0);
        }
        // The Box-Muller angle stays strictly inside [-pi, pi] in f32 too.
        let th = core::f32::consts::PI * signed_unit(u32::MAX);
        assert!(f64::from(th) < core::f64::consts::PI);
    }

    #[test]
    fn giles_erfinv_is_within_2_pow_minus_21_relative() {
        // Over the whole range the truncated normal uses.
        let mut worst: f64 = 0.0;
        for i in 1..20_000 {
            let y = ERF_SQRT2 * (f64::from(i) / 20_000.0);
            let x = erfinv_f64(y);
            assert!(
                (libm::erf(x) - y).abs() < 1e-15,
                "Newton refinement failed at {y}"
            );
            worst = worst.max(((erfinv_giles(y) - x) / x).abs());
        }
        assert!(
            worst < 2f64.powi(-21),
            "Giles erfinv relative error {worst}"
        );
        assert_eq!(erfinv_f64(0.0), 0.0);
        assert!((erfinv_f64(ERF_SQRT2) - core::f64::consts::SQRT_2).abs() < 1e-14);
    }

    #[test]
    fn truncated_moments_match_constants() {
        // Variance of N(0,1) restricted to [-2, 2] is TRUNC_STD^2.
        let phi2 = (-2.0f64).exp() / (2.0 * core::f64::consts::PI).sqrt();
        let var = 1.0 - 2.0 * 2.0 * phi2 / ERF_SQRT2;
        assert!((var.sqrt() - TRUNC_STD).abs() < 1e-15);
        assert!((libm::erf(core::f64::consts::SQRT_2) - ERF_SQRT2).abs() < 1e-16);
        // scipy.stats.truncnorm(-2, 2).stats(moments='k') = -0.6344632828703505.
        assert!((Dist::Truncated.excess_kurtosis() - (-0.634_463_282_870_350_5)).abs() < 1e-12);
    }

    #[test]
    fn cdfs_are_monotone_and_span_zero_to_one() {
        for d in Dist::ALL {
            let m = d.max_abs_in_std() * 0.7;
            assert!(d.cdf(0.7, -m - 1e-9) < 1e-6, "{d:?}");
            assert!(d.cdf(0.7, m + 1e-9) > 1.0 - 1e-6, "{d:?}");
            assert!((d.cdf(0.7, 0.0) - 0.5).abs() < 1e-15, "{d:?}");
            let mut prev = 0.0;
            for i in -100..=100 {
                let c = d.cdf(0.7, f64::from(i) * 0.03);
                assert!(c >= prev);
                prev = c;
            }
        }
    }

    #[test]
    fn block_values_equal_element_values() {
        for d in Dist::ALL {
            for b in 0..50u64 {
                let x = block_words(3, 1, b);
                let v = block_values(d, 0.3, x);
                for (lane, value) in v.iter().enumerate() {
                    assert_eq!(value.to_bits(), element_value(d, 0.3, x, lane).to_bits());
                }
            }
        }
    }

    #[test]
    fn reference_fill_is_offset_invariant() {
        // Filling from an odd start must give the slice of the full fill.
        for d in Dist::ALL {
            let mut full = vec![0f32; 41];
            fill_reference(d, 0.5, 7, 2, 0, &mut full);
            let mut part = vec![0f32; 29];
            fill_reference(d, 0.5, 7, 2, 5, &mut part);
            assert_eq!(&full[5..34], &part[..]);
        }
    }
}
