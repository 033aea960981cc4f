//! The order-to-chaos transition of the mean-field theory: the fixed point
//! q* of the variance map, the gradient gain chi_1 there, and the critical
//! multiplier where chi_1(q*) = 1 (with the interval a finite network's
//! measurement may fall in).

use crate::act::Activation;
use crate::net::theory::Quadrature;

/// The fixed point q* of the variance map q -> s2 E[phi(sqrt(q) Z)^2] + b2 for
/// sigma_w^2 `s2` and bias variance `b2`, and chi_1 = s2 E[phi'^2] there.
/// q* is the largest root of `g(q) = s2 E[phi^2](q) + b2 - q`, found by bisection
/// in log q: 0 when g <= 0 already at q = 1e-12 (the signal dies, as for tanh
/// with s2 <= 1 and no bias; chi_1 is then its limit q -> 0+), infinite when g stays positive up to 1e30 (the
/// signal explodes; chi_1 is then taken at q = 1e6, exact for ReLU-like
/// activations whose chi_1 does not depend on q).
pub fn fixed_point(act: Activation, s2: f64, b2: f64) -> (f64, f64) {
    let quad = Quadrature::new();
    let g = |q: f64| s2 * quad.expect(q, |z| act.f(z).powi(2)) + b2 - q;
    let chi = |q: f64| s2 * quad.expect(q, |z| act.df(z).powi(2));
    let lo = 1e-12;
    if g(lo) <= 0.0 {
        // chi_1 in the limit q -> 0+ (at q = 0 exactly, ReLU's kink would give 0).
        return (0.0, chi(1e-24));
    }
    let mut hi = 1.0f64;
    while g(hi) > 0.0 {
        hi *= 2.0;
        if hi > 1e30 {
            return (f64::INFINITY, chi(1e6));
        }
    }
    let (mut a, mut b) = (lo.ln(), hi.ln());
    for _ in 0..200 {
        let mid = 0.5 * (a + b);
        if g(mid.exp()) > 0.0 {
            a = mid;
        } else {
            b = mid;
        }
    }
    let q = (0.5 * (a + b)).exp();
    (q, chi(q))
}

/// Solves chi_1(q*(m)) = 1 for m in [lo, hi] by bisection on log chi_1, if it
/// changes sign there. `s_of_m` maps a multiplier to sigma_w^2.
pub fn critical_theory(
    act: Activation,
    b2: f64,
    lo: f64,
    hi: f64,
    s_of_m: impl Fn(f64) -> f64,
) -> Option<f64> {
    let f = |m: f64| fixed_point(act, s_of_m(m), b2).1.ln();
    let (mut a, mut b) = (lo, hi);
    let (fa, fb) = (f(a), f(b));
    if !(fa.is_finite() && fb.is_finite()) || fa.signum() == fb.signum() {
        return None;
    }
    for _ in 0..60 {
        let mid = 0.5 * (a + b);
        if f(mid).signum() == fa.signum() {
            a = mid;
        } else {
            b = mid;
        }
    }
    Some(0.5 * (a + b))
}

/// The noise of ln `deep_grad_rate`: the increments' finite-width spread, at
/// most 5 / n per layer (ReLU's (K - 1) / n, the largest here), summed over
/// the h = L/2 layers of the deep half and divided by h.
pub fn rate_noise(depth: usize, width: u64) -> f64 {
    let h = (depth - depth / 2).max(1) as f64;
    (5.0 * h / width as f64).sqrt() / h
}

/// The interval the measured critical multiplier may fall in: the
/// multipliers m where the theory's |ln chi_1(q*(m))| <= 4 sigma (sigma =
/// [`rate_noise`]), i.e. where a finite network cannot tell its gradient gain
/// from 1 at 4 standard deviations, widened by a quarter of the grid step for
/// the interpolation. For ReLU (chi_1 = m s_base / 2) it is symmetric in ln m;
/// for tanh it is wide on the chaotic side, where chi_1(q*) rises slowly.
pub fn critical_interval(
    act: Activation,
    b2: f64,
    sigma: f64,
    step: f64,
    lo: f64,
    hi: f64,
    s_of_m: impl Fn(f64) -> f64,
) -> (f64, f64) {
    let f = |m: f64| fixed_point(act, s_of_m(m), b2).1.ln();
    let edge = |target: f64| -> f64 {
        // First m in [lo, hi] where f crosses target (f is increasing in m).
        let (mut a, mut b) = (lo, hi);
        if f(a) >= target {
            return lo;
        }
        if f(b) < target {
            return hi;
        }
        for _ in 0..60 {
            let mid = 0.5 * (a + b);
            if f(mid) < target {
                a = mid;
            } else {
                b = mid;
            }
        }
        0.5 * (a + b)
    };
    (
        edge(-4.0 * sigma) - step / 4.0,
        edge(4.0 * sigma) + step / 4.0,
    )
}
