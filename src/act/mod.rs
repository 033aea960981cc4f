//! Activation functions: the f32 forms the CPU reference uses (the same
//! formulas as `shaders/net/activation.wgsl`) and f64 forms for the theory.

pub mod arith;

use crate::error::{Error, Result};
use serde::Serialize;

const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;
const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)

/// A pointwise nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity.
    Linear,
    /// max(x, 0).
    Relu,
    /// x for x > 0, slope * x otherwise.
    LeakyRelu(f64),
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// Scaled ELU (Klambauer et al. 2017).
    Selu,
    /// GELU, tanh approximation (PyTorch's `approximate='tanh'`).
    Gelu,
    /// GELU, x Phi(x) with the normal CDF through erf (PyTorch's default
    /// `nn.GELU()`, transformers' `gelu`).
    GeluErf,
}

impl Activation {
    /// Parses `linear`, `relu`, `leaky_relu[:a]`, `tanh`, `sigmoid`, `selu`,
    /// `gelu` (the tanh form), `gelu_erf`.
    pub fn parse(s: &str) -> Result<Activation> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "linear" | "identity" => Activation::Linear,
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu(0.01),
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "selu" => Activation::Selu,
            "gelu" => Activation::Gelu,
            "gelu_erf" => Activation::GeluErf,
            other => match other.strip_prefix("leaky_relu:") {
                Some(a) => {
                    let a: f64 = a.parse().map_err(|_| {
                        Error::bad("activation", s, format!("slope '{a}' is not a number"))
                    })?;
                    if !a.is_finite() {
                        return Err(Error::bad("activation", s, "the slope must be finite"));
                    }
                    Activation::LeakyRelu(a)
                }
                None => {
                    return Err(Error::choice(
                        "activation",
                        s,
                        &[
                            "relu",
                            "leaky_relu[:a]",
                            "tanh",
                            "sigmoid",
                            "selu",
                            "gelu",
                            "gelu_erf",
                            "linear",
                        ],
                    ))
                }
            },
        })
    }

    /// The name used on the command line and in JSON.
    pub fn name(&self) -> String {
        match self {
            Activation::Linear => "linear".into(),
            Activation::Relu => "relu".into(),
            Activation::LeakyRelu(a) => format!("leaky_relu:{a}"),
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Selu => "selu".into(),
            Activation::Gelu => "gelu".into(),
            Activation::GeluErf => "gelu_erf".into(),
        }
    }

    /// The leaky slope (the `SLOPE` constant; 0.01 when unused).
    pub(crate) fn slope(&self) -> f64 {
        match self {
            Activation::LeakyRelu(a) => *a,
            _ => 0.01,
        }
    }

    /// Values counted as saturated: below `.0` or above `.1` (|tanh| > 0.99,
    /// sigmoid within 0.01 of 0 or 1); `None` for non-saturating activations.
    pub(crate) fn saturation(&self) -> Option<(f32, f32)> {
        match self {
            Activation::Tanh => Some((-0.99, 0.99)),
            Activation::Sigmoid => Some((0.01, 0.99)),
            _ => None,
        }
    }

    /// phi(x) in f64.
    pub(crate) fn f(&self, x: f64) -> f64 {
        match *self {
            Activation::Linear => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Selu => SELU_LAMBDA * if x > 0.0 { x } else { SELU_ALPHA * x.exp_m1() },
            Activation::Gelu => 0.5 * x * (1.0 + (GELU_C * (x + 0.044715 * x * x * x)).tanh()),
            Activation::GeluErf => 0.5 * x * erfc(-x * std::f64::consts::FRAC_1_SQRT_2),
        }
    }

    /// phi'(x) in f64.
    pub(crate) fn df(&self, x: f64) -> f64 {
        match *self {
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
                    a
                }
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
            Activation::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            Activation::Selu => SELU_LAMBDA * if x > 0.0 { 1.0 } else { SELU_ALPHA * x.exp() },
            Activation::Gelu => {
                let t = (GELU_C * (x + 0.044715 * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
            }
            Activation::GeluErf => {
                0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2) + x * normal_density(x)
            }
        }
    }

    /// phi''(x) in f64 away from a kink (the smooth part of the second
    /// derivative; the jump of phi' at a kink is [`Activation::kink`]).
    pub(crate) fn d2f(&self, x: f64) -> f64 {
        match *self {
            Activation::Linear | Activation::Relu | Activation::LeakyRelu(_) => 0.0,
            Activation::Tanh => {
                let t = x.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            Activation::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
            Activation::Selu => {
                if x > 0.0 {
                    0.0
                } else {
                    SELU_LAMBDA * SELU_ALPHA * x.exp()
                }
            }
            Activation::Gelu => {
                let u = GELU_C * (x + 0.044715 * x * x * x);
                let du = GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
                let d2u = GELU_C * 6.0 * 0.044715 * x;
                let t = u.tanh();
                let s2 = 1.0 - t * t; // sech^2(u)
                                      // phi = x (1 + t) / 2: phi'' = t' + x t'' / 2, t' = s2 u', t'' = s2 (u'' - 2 t u'^2).
                s2 * du + 0.5 * x * s2 * (d2u - 2.0 * t * du * du)
            }
            // (Phi + x phi)' = 2 phi + x phi' = phi (2 - x^2).
            Activation::GeluErf => normal_density(x) * (2.0 - x * x),
        }
    }

    /// The kink of phi' at 0, if any: `(|phi'(0+) - phi'(0-)|, |phi'(0+)^2 - phi'(0-)^2|)`.
    /// An f32 rounding difference that moves a pre-activation across 0 changes
    /// its phi' by the first and its squared gradient by the second.
    pub(crate) fn kink(&self) -> Option<(f64, f64)> {
        let (plus, minus) = match *self {
            Activation::Relu => (1.0, 0.0),
            Activation::LeakyRelu(a) => (1.0, a),
            Activation::Selu => (SELU_LAMBDA, SELU_LAMBDA * SELU_ALPHA),
            _ => return None,
        };
        let jump: f64 = plus - minus;
        (jump != 0.0).then(|| (jump.abs(), (plus * plus - minus * minus).abs()))
    }

    /// phi(x) in f32, as the CPU backend applies it: the device sequence of
    /// [`crate::act::arith`] with two-rounding `fma`.
    pub(crate) fn f32(&self, x: f32) -> f32 {
        crate::act::arith::act::<crate::act::arith::Unfused>(*self, x)
    }

    /// phi'(x) in f32, likewise.
    pub(crate) fn df32(&self, x: f32) -> f32 {
        crate::act::arith::dact::<crate::act::arith::Unfused>(*self, x)
    }
}

/// The standard normal density in f64.
fn normal_density(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// erf in f64 (relative error near 1e-14): the Maclaurin series below 2.5,
/// `1 - erfc` beyond.
pub(crate) fn erf(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 2.5 {
        // 2/sqrt(pi) sum_n (-1)^n a^(2n+1) / (n! (2n+1)); the largest term
        // (near n = 6 at a = 2.5) is about 10, so the cancellation costs a
        // digit.
        let (x2, mut term, mut sum) = (a * a, a, a);
        for n in 1..100 {
            term *= -x2 / f64::from(n);
            let t = term / f64::from(2 * n + 1);
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        1.0 - erfc(a)
    };
    if x.is_nan() {
        x
    } else {
        v.copysign(x)
    }
}

/// erfc in f64, without cancellation for large positive x: Laplace's
/// continued fraction e^(-x^2) / sqrt(pi) / (x + (1/2) / (x + (2/2) / (x +
/// ...))) with 80 terms from 2.5 on (relative error under 1e-14), and
/// `1 - erf` below.
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < 2.5 {
        return 1.0 - erf(x);
    }
    let mut f = x;
    for k in (1..=80).rev() {
        f = x + f64::from(k) * 0.5 / f;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// Every activation (leaky ReLU with slope 0.2), for the tests here and in
/// [`arith`].
#[cfg(test)]
pub(crate) const EVERY: [Activation; 8] = [
    Activation::Linear,
    Activation::Relu,
    Activation::LeakyRelu(0.2),
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Selu,
    Activation::Gelu,
    Activation::GeluErf,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_erfc_give_known_values() {
        // Python's math.erf / math.erfc (the C library's), printed to 17
        // digits.
        for (x, want) in [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(x) - want).abs() < 1e-15, "erf({x}) = {}", erf(x));
        }
        for (x, want) in [
            (3.0, 2.209_049_699_858_543_8e-5),
            (5.0, 1.537_459_794_428_035_1e-12),
        ] {
            assert!(
                (erfc(x) / want - 1.0).abs() < 1e-13,
                "erfc({x}) = {}",
                erfc(x)
            );
        }
        // Continuous where the methods meet, and odd.
        assert!((erf(2.5 - 1e-12) - erf(2.5)).abs() < 1e-13);
        assert_eq!(erf(-0.3), -erf(0.3));
        assert!((erfc(-1.0) - (2.0 - erfc(1.0))).abs() < 1e-15);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for a in EVERY {
            for i in -40..=40 {
                let x = f64::from(i) * 0.1 + 0.05; // avoid the kinks at 0
                let h = 1e-6;
                let fd = (a.f(x + h) - a.f(x - h)) / (2.0 * h);
                assert!(
                    (fd - a.df(x)).abs() < 1e-6,
                    "{a:?} at {x}: {fd} vs {}",
                    a.df(x)
                );
                assert!((f64::from(a.f32(x as f32)) - a.f(x)).abs() < 1e-5 * (1.0 + a.f(x).abs()));
                let fd2 = (a.df(x + h) - a.df(x - h)) / (2.0 * h);
                assert!(
                    (fd2 - a.d2f(x)).abs() < 1e-5,
                    "{a:?}'' at {x}: {fd2} vs {}",
                    a.d2f(x)
                );
            }
            assert_eq!(Activation::parse(&a.name()).unwrap(), a);
        }
        assert!(Activation::parse("swish").is_err());
        let e = Activation::parse("rellu").unwrap_err().to_string();
        assert!(e.contains("did you mean 'relu'?"), "{e}");
        assert!(!Activation::parse("softmax")
            .unwrap_err()
            .to_string()
            .contains("did you mean"));
        assert!(Activation::parse("leaky_relu:x").is_err());
    }
}
