//! Sample statistics with error you can bound: per-chunk two-pass central
//! moments in f64, merged exactly (Chan et al. / Pébay), confidence intervals
//! and Kolmogorov-Smirnov tests.

use serde::Serialize;

/// Running central moments up to the fourth, plus extremes and non-finite count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Finite values seen.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Sum of squared deviations.
    pub m2: f64,
    /// Sum of cubed deviations.
    pub m3: f64,
    /// Sum of fourth-power deviations.
    pub m4: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// NaN and infinite values (excluded from the moments).
    pub nonfinite: u64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            m3: 0.0,
            m4: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            nonfinite: 0,
        }
    }
}

impl Moments {
    /// Moments of a slice: two passes (mean, then centered powers) in f64.
    /// The summation error of each pass is below n * 2^-53 relative, far below
    /// the sampling noise of any statistic computed from it.
    pub fn of(xs: &[f32]) -> Moments {
        let mut m = Moments::default();
        let mut sum = 0.0f64;
        for &x in xs {
            if x.is_finite() {
                let x = f64::from(x);
                sum += x;
                m.n += 1;
                m.min = m.min.min(x);
                m.max = m.max.max(x);
            } else {
                m.nonfinite += 1;
            }
        }
        if m.n == 0 {
            return m;
        }
        m.mean = sum / m.n as f64;
        for &x in xs {
            if x.is_finite() {
                let d = f64::from(x) - m.mean;
                let d2 = d * d;
                m.m2 += d2;
                m.m3 += d2 * d;
                m.m4 += d2 * d2;
            }
        }
        m
    }

    /// Moments of the union of two disjoint samples (exact in real arithmetic).
    pub fn merge(self, b: Moments) -> Moments {
        let a = self;
        if a.n == 0 {
            return Moments {
                nonfinite: a.nonfinite + b.nonfinite,
                ..b
            };
        }
        if b.n == 0 {
            return Moments {
                nonfinite: a.nonfinite + b.nonfinite,
                ..a
            };
        }
        let (na, nb) = (a.n as f64, b.n as f64);
        let n = na + nb;
        let d = b.mean - a.mean;
        let d2 = d * d;
        Moments {
            n: a.n + b.n,
            mean: a.mean + d * nb / n,
            m2: a.m2 + b.m2 + d2 * na * nb / n,
            m3: a.m3
                + b.m3
                + d2 * d * na * nb * (na - nb) / (n * n)
                + 3.0 * d * (na * b.m2 - nb * a.m2) / n,
            m4: a.m4
                + b.m4
                + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n)
                + 6.0 * d2 * (na * na * b.m2 + nb * nb * a.m2) / (n * n)
                + 4.0 * d * (na * b.m3 - nb * a.m3) / n,
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            nonfinite: a.nonfinite + b.nonfinite,
        }
    }

    /// Unbiased sample variance.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return f64::NAN;
        }
        self.m2 / (self.n - 1) as f64
    }

    /// Excess kurtosis `n m4 / m2^2 - 3` (0 for a normal).
    pub fn excess_kurtosis(&self) -> f64 {
        self.n as f64 * self.m4 / (self.m2 * self.m2) - 3.0
    }
}

/// Standard normal quantile: Acklam's rational approximation (relative error
/// 1.15e-9) polished by one Halley step on the erfc-based CDF, which brings it
/// to near f64 precision.
#[allow(clippy::excessive_precision)] // Acklam's published coefficients, verbatim
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p == 0.0 {
            f64::NEG_INFINITY
        } else if p == 1.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383577518672690e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let pl = 0.02425;
    let x = if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // Halley refinement.
    let e = crate::rng::dist::normal_cdf(x) - p;
    let u = e * (2.0 * core::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Chi-square quantile with `k` degrees of freedom (Wilson-Hilferty). Its
/// relative error is below 1e-4 for k >= 100 and shrinks like k^-3/2; every
/// interval here uses k >= 1000.
pub fn chi2_quantile(p: f64, k: f64) -> f64 {
    let z = normal_quantile(p);
    let c = 2.0 / (9.0 * k);
    k * (1.0 - c + z * c.sqrt()).powi(3)
}

/// A two-sided confidence interval for the population variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VarianceInterval {
    /// Confidence level (e.g. 0.999).
    pub level: f64,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// `chi_square` (normal data) or `kurtosis_adjusted` (others).
    pub method: &'static str,
}

impl VarianceInterval {
    /// Whether `v` lies inside.
    pub fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// Confidence interval for the variance from `n` values with sample variance
/// `s2`. Normal data (`excess_kurtosis == 0`): the exact chi-square interval
/// `[(n-1)s2 / chi2_{1-a/2}, (n-1)s2 / chi2_{a/2}]`. Otherwise the asymptotic
/// interval that accounts for the distribution's kurtosis:
/// `Var(s2) / sigma^4 ~ 2/(n-1) + kappa/n` (kappa = excess kurtosis); the
/// chi-square interval would be wrong (too wide for uniform data, for example).
pub fn variance_interval(n: u64, s2: f64, excess_kurtosis: f64, level: f64) -> VarianceInterval {
    let alpha = 1.0 - level;
    let k = (n.max(2) - 1) as f64;
    if excess_kurtosis == 0.0 {
        VarianceInterval {
            level,
            lo: k * s2 / chi2_quantile(1.0 - alpha / 2.0, k),
            hi: k * s2 / chi2_quantile(alpha / 2.0, k),
            method: "chi_square",
        }
    } else {
        let z = normal_quantile(1.0 - alpha / 2.0);
        let sd = (2.0 / k + excess_kurtosis / n as f64).sqrt();
        VarianceInterval {
            level,
            lo: s2 / (1.0 + z * sd),
            hi: if z * sd < 1.0 {
                s2 / (1.0 - z * sd)
            } else {
                f64::MAX
            },
            method: "kurtosis_adjusted",
        }
    }
}

/// Kolmogorov's asymptotic critical value `c(alpha) = sqrt(-ln(alpha / 2) / 2)`
/// (1.9495 at alpha = 0.001).
pub fn ks_c(alpha: f64) -> f64 {
    (-(alpha / 2.0).ln() / 2.0).sqrt()
}

/// Result of a Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsTest {
    /// Sample size(s) (for two-sample: the smaller one).
    pub n: u64,
    /// The statistic D.
    pub d: f64,
    /// The critical value at `alpha`.
    pub critical: f64,
    /// The false-alarm rate.
    pub alpha: f64,
    /// `d <= critical`.
    pub pass: bool,
}

/// One-sample KS statistic of `sample` (sorted in place) against `cdf`, with
/// Stephens' small-sample correction of the critical value,
/// `c(alpha) / (sqrt n + 0.12 + 0.11 / sqrt n)`.
pub fn ks_one_sample(sample: &mut [f32], cdf: impl Fn(f64) -> f64, alpha: f64) -> KsTest {
    sample.sort_unstable_by(f32::total_cmp);
    let n = sample.len() as f64;
    let mut d: f64 = 0.0;
    for (i, &x) in sample.iter().enumerate() {
        let f = cdf(f64::from(x));
        d = d.max(f - i as f64 / n).max((i + 1) as f64 / n - f);
    }
    let sn = n.sqrt();
    let critical = ks_c(alpha) / (sn + 0.12 + 0.11 / sn);
    KsTest {
        n: sample.len() as u64,
        d,
        critical,
        alpha,
        pass: d <= critical,
    }
}

/// Two-sample KS test; both samples are sorted in place. Critical value
/// `c(alpha) sqrt((n + m) / (n m))`.
pub fn ks_two_sample(a: &mut [f32], b: &mut [f32], alpha: f64) -> KsTest {
    a.sort_unstable_by(f32::total_cmp);
    b.sort_unstable_by(f32::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let critical = ks_c(alpha) * ((n + m) / (n * m)).sqrt();
    KsTest {
        n: a.len().min(b.len()) as u64,
        d,
        critical,
        alpha,
        pass: d <= critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_direct_computation() {
        let xs: Vec<f32> = (0..1001)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.01 - 3.0)
            .collect();
        let whole = Moments::of(&xs);
        let merged = [&xs[..1], &xs[1..300], &xs[300..301], &xs[301..]]
            .iter()
            .map(|s| Moments::of(s))
            .fold(Moments::default(), Moments::merge);
        for (a, b) in [
            (whole.mean, merged.mean),
            (whole.m2, merged.m2),
            (whole.m3, merged.m3),
            (whole.m4, merged.m4),
        ] {
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert_eq!(
            (whole.min, whole.max, whole.n),
            (merged.min, merged.max, merged.n)
        );
        let m = Moments::of(&[1.0, f32::NAN, 3.0, f32::INFINITY]);
        assert_eq!((m.n, m.nonfinite, m.mean, m.variance()), (2, 2, 2.0, 2.0));
    }

    #[test]
    fn quantiles_match_tables() {
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert!((normal_quantile(0.9995) - 3.290_526_731_491_926).abs() < 1e-11);
        assert!((normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-9);
        // scipy.stats.chi2.ppf(p, 1000): Wilson-Hilferty is within 1e-4 relative.
        for (p, want) in [
            (0.975, 1_089.530_912_774_913_5),
            (0.0005, 859.361_505_580_630_3),
            (0.9995, 1_153.737_850_064_835),
        ] {
            let got = chi2_quantile(p, 1000.0);
            assert!(((got - want) / want).abs() < 1e-4, "{p}: {got} vs {want}");
        }
        assert!((ks_c(0.001) - 1.949_5).abs() < 1e-4);
    }

    #[test]
    fn ks_detects_a_wrong_distribution() {
        let mut u: Vec<f32> = (0..10_000).map(|i| (i as f32 + 0.5) / 10_000.0).collect();
        let ok = ks_one_sample(&mut u.clone(), |x| x.clamp(0.0, 1.0), 0.001);
        assert!(ok.pass && ok.d < 1e-4);
        let bad = ks_one_sample(&mut u, |x| (x * 1.1).clamp(0.0, 1.0), 0.001);
        assert!(!bad.pass);
        let mut a: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        let mut b: Vec<f32> = (0..5000).map(|i| i as f32 + 300.0).collect();
        let t = ks_two_sample(&mut a, &mut b, 0.001);
        assert!((t.d - 0.06).abs() < 1e-9 && !t.pass);
    }
}
