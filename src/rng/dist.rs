//! The distributions deepinit draws from, and the exact mapping from Philox
//! words to floats (the CPU reference; `shaders/rng/init.wgsl` is the GPU twin).
//!
//! All three distributions are computed *without rejection*, one Philox word
//! (or one pair of words) per element, so every element is a pure function of
//! its index. The mapping, for element `e` with block words `x = [x0, x1, x2, x3]`
//! (see [`crate::rng::philox::block_words`]) and lane `j = e % 4`, with
//! `k(w) = w >> 8` the top 24 bits of a word:
//!
//! * uniform: `signed_unit(x[j]) * scale`, `signed_unit(w) = (k(w) - 8388607.5) 2^-23`
//!   in (-1, 1) (exact in f32), `scale = f32(sqrt(3) std)`: U(-a, a) with variance `std^2`.
//! * normal (Box-Muller): the pair `p = j / 2` uses `(x[2p], x[2p+1])`:
//!   `r = sqrt(-2 ln u)` with `u = (k(x[2p]) + 1) 2^-24` in (0, 1], and
//!   `theta = pi (2 k(x[2p+1]) - (2^24 - 1)) 2^-24` in (-pi, pi); even lanes take
//!   `r cos theta`, odd lanes `r sin theta`, times `scale = f32(std)`.
//!   The largest |z| is `sqrt(48 ln 2) = 5.77` (P(|Z| > 5.77) = 8e-9).
//! * truncated normal at +-2 sigma: `sqrt(2) erfinv(erf(sqrt 2) s)` with
//!   `s = signed_unit(x[j])`, times `scale = f32(std / 0.87962566103423978)`: the
//!   inverse CDF of the normal restricted to [-2, 2], rescaled so the variance
//!   is `std^2` (the correction JAX and Keras use).
//!
//! The unit values of the normal and the truncated normal are computed by the
//! integer program of [`crate::rng::fixed`] (no float operation; within 0.6
//! ULP of the exact values above), so they are the same bits on every device;
//! the one float operation of every distribution is the final multiply by
//! `scale`, correctly rounded on every device (unless the product falls below
//! 2^-126 on a device that flushes subnormals: a std below about 1e-28).

use crate::rng::fixed;
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
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

    /// The factor every backend multiplies the unit value by, for a target
    /// standard deviation `std`: `std`, `std * sqrt(3)` or `std /
    /// 0.87962566103423978`, computed in f64 and rounded once to f32.
    pub fn kernel_scale(self, std: f64) -> f32 {
        match self {
            Dist::Normal => std as f32,
            Dist::Uniform => (std * 3f64.sqrt()) as f32,
            Dist::Truncated => (std / TRUNC_STD) as f32,
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

/// Box-Muller on a pair of words in f64 with libm, `(r cos theta, r sin theta)`
/// and `r`: the exact values the integer program approximates, for accuracy
/// tests.
#[inline]
pub fn box_muller_f64(wa: u32, wb: u32) -> (f64, f64, f64) {
    let u1 = f64::from(unit_open_closed(wa));
    let t = f64::from(signed_unit(wb));
    let r = (-2.0 * u1.ln()).max(0.0).sqrt();
    let (s, c) = (core::f64::consts::PI * t).sin_cos();
    (r * c, r * s, r)
}

/// erfinv for |y| <= erf(sqrt 2) ~ 0.9545: M. Giles, "Approximating the erfinv
/// function" (GPU Computing Gems, 2011), single-precision central branch
/// (w = -ln(1 - y^2) < 5, which holds for |y| < 0.9966), in f64: the starting
/// point of [`erfinv_f64`].
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
/// the relative error. The exact value the truncated mapping approximates,
/// for accuracy tests and the statistics.
pub fn erfinv_f64(y: f64) -> f64 {
    let mut x = erfinv_giles(y);
    for _ in 0..2 {
        let err = libm::erf(x) - y;
        x -= err / (core::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp());
    }
    x
}

/// One element's value, given its block words and lane: the unit value of
/// [`crate::rng::fixed`] (or the exact uniform), times `scale` in f32. The same
/// bits on every device.
#[inline]
pub fn element_value(dist: Dist, scale: f32, x: [u32; 4], lane: usize) -> f32 {
    let bits = match dist {
        Dist::Normal => {
            let p = lane & !1;
            let (c, s) = fixed::normal_pair_bits(x[p], x[p + 1]);
            if lane & 1 == 0 {
                c
            } else {
                s
            }
        }
        Dist::Uniform => return signed_unit(x[lane]) * scale,
        Dist::Truncated => fixed::truncated_bits(x[lane]),
    };
    f32::from_bits(bits) * scale
}

/// The four values of one Philox block: [`element_value`] for lanes 0..4, with
/// each Box-Muller pair computed once.
#[inline]
pub fn block_values(dist: Dist, scale: f32, x: [u32; 4]) -> [f32; 4] {
    match dist {
        Dist::Normal => {
            let (c0, s0) = fixed::normal_pair_bits(x[0], x[1]);
            let (c1, s1) = fixed::normal_pair_bits(x[2], x[3]);
            [c0, s0, c1, s1].map(|b| f32::from_bits(b) * scale)
        }
        _ => [0, 1, 2, 3].map(|lane| element_value(dist, scale, x, lane)),
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
