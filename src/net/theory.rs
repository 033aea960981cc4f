//! Mean-field theory of signal propagation (Poole et al. 2016, Schoenholz et
//! al. 2017): the variance recursion, the gradient recursion, chi_1, and the
//! finite-width tolerance used to judge measurements against them.
//!
//! For z ~ N(0, q), the pre-activation variance of layer l is
//!   q_1 = s_1 m_in + sigma_b^2,   q_l = s_l E[phi(sqrt(q_{l-1}) Z)^2] + sigma_b^2,
//! where s_l = Var(W_l) * fan_in_l (= sigma_w^2; 2 for He) and m_in is the
//! inputs' mean square. For ReLU with Var(W) = k / n this is q_l = (k/2)^l q_0.
//! Gaussian expectations use composite Gauss-Legendre quadrature (see
//! `Quadrature` for why not plain Gauss-Hermite).

use crate::act::Activation;

/// Gaussian expectations E[f(Z)], Z ~ N(0, q), by composite Gauss-Legendre
/// quadrature on panels that resolve both the Gaussian and the activation.
///
/// Plain Gauss-Hermite quadrature (nodes scaled by sqrt(2q)) is exact for
/// polynomials but fails here: at the q ~ 250 of a tanh network with
/// sigma_w^2 = 256 its nodes near 0 are ~7 apart, while tanh'(z)^2 has width
/// ~1, so E[tanh'^2] came out 200x too small. So the panels here are
/// width 0.25 sigma over |z| <= 12 sigma (Gaussian scale), refined to width 0.25
/// over |z| <= 16 (the activations' scale), with a breakpoint at 0 (the kink of
/// ReLU-like functions). Each panel uses 8-point Gauss-Legendre, exact for
/// polynomials of degree 15, so smooth integrands are resolved to ~1e-14
/// relative; the mass beyond 12 sigma (1e-33) is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quadrature;

#[allow(clippy::excessive_precision)] // tabulated nodes and weights, verbatim
const GL8: [(f64, f64); 4] = [
    (0.183_434_642_495_649_8, 0.362_683_783_378_362_0),
    (0.525_532_409_916_329_0, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_5),
    (0.960_289_856_497_536_3, 0.101_228_536_290_376_3),
];

impl Quadrature {
    /// The rule (stateless; kept as a type so callers share one definition).
    pub(crate) fn new() -> Quadrature {
        Quadrature
    }

    /// E[f(Z)] for Z ~ N(0, q).
    pub(crate) fn expect(&self, q: f64, f: impl Fn(f64) -> f64) -> f64 {
        if q.is_nan() || q <= 0.0 || q.is_infinite() {
            return f(0.0);
        }
        let sigma = q.sqrt();
        let reach = 12.0 * sigma;
        let mut cuts: Vec<f64> = (-48..=48).map(|i| f64::from(i) * 0.25 * sigma).collect();
        let fine = reach.min(16.0);
        if fine > 0.25 * sigma {
            let n = (fine / 0.25).ceil() as i64;
            cuts.extend((-n..=n).map(|i| (i as f64 * 0.25).clamp(-fine, fine)));
        }
        cuts.sort_by(f64::total_cmp);
        cuts.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * sigma);
        let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        let g = |z: f64| f(z) * (-0.5 * z * z / q).exp() * norm;
        let mut sum = 0.0;
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (c, h) = ((a + b) / 2.0, (b - a) / 2.0);
            for &(x, wt) in &GL8 {
                sum += wt * h * (g(c - h * x) + g(c + h * x));
            }
        }
        sum
    }
}

/// Theory for one layer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerTheory {
    /// Predicted Var(z_l).
    pub pre_var: f64,
    /// Predicted E[phi(z_l)^2].
    pub post_mean_sq: f64,
    /// Predicted E[phi(z_l)].
    pub post_mean: f64,
    /// Predicted Var(delta_l) (the backpropagated error, loss <r, a_L>, r ~ N(0,1)).
    pub grad_var: f64,
    /// chi_1 = s_{l+1} E[phi'(z_l)^2]: the per-layer gain of small perturbations
    /// and of gradient variance (equal widths); 1 is the edge of chaos.
    pub chi1: f64,
    /// Standard deviation of log(measured / predicted pre_var) at finite width
    /// (see [`predict`]).
    pub log_sd: f64,
    /// d log q_{l+1} / d log q_l: how the variance map carries a relative
    /// error of this layer's variance into the next (1 for ReLU and linear;
    /// above 1 near an unstable fixed point, as GELU's at He).
    pub map_slope: f64,
    /// E[phi'(z_l)^2].
    pub mean_dphi_sq: f64,
    /// q_l E[phi''(z_l)^2] / E[phi'(z_l)^2]: how strongly a relative error of
    /// z_l moves phi'(z_l) away from kinks (0 for piecewise-linear activations).
    pub curvature: f64,
}

/// Predicts every layer of a network: `s[l]` = Var(W_{l+1}) * fan_in for layer
/// l + 1, `widths` = n_0 .. n_L, `m_in` the inputs' mean square, `sigma_b2` the
/// bias variance.
///
/// Finite-width spread. Layer l + 1's variance given layer l is
/// `s E[phi^2] + sigma_b^2` evaluated on the layer's *realised* outputs: their
/// mean square `m_l = (1/n_l) sum_j phi(z_j)^2` fluctuates around E[phi^2] with
/// relative variance `(K_l - 1) / n_l`, `K_l = E[phi^4] / E[phi^2]^2` (K = 3
/// for Gaussian inputs, 6 for ReLU: Hanin and Nica's 5 / n per layer). A
/// relative error of layer l's variance reaches layer l + 1 multiplied by the
/// variance map's own slope `D_l = d log q_{l+1} / d log q_l` (1 for ReLU;
/// for GELU at He it exceeds 1 where the per-layer ratio moves between 1/2
/// and 1, so errors grow there). So with `V_1 = (k_in - 1) / n_0`,
///
/// `V_{l+1} = D_l^2 V_l + w_l^2 (K_l - 1) / n_l`,  `w_l = s m_l / (s m_l + sigma_b^2)`,
///
/// and `Var log(q_hat_l / q_l) = V_l + 2 / n_l`, the last term from averaging
/// z^2 over the layer's n_l units. Averaging over the batch only shrinks the
/// fluctuations, so this is a conservative spread. `k_in` is K of the inputs
/// (3 for Gaussian inputs).
pub fn predict(
    act: Activation,
    s: &[f64],
    widths: &[u64],
    m_in: f64,
    k_in: f64,
    sigma_b2: f64,
) -> Vec<LayerTheory> {
    let quad = Quadrature::new();
    let depth = s.len();
    let mut out = Vec::with_capacity(depth);
    let mut prev_m2 = m_in;
    let mut var_log = (k_in - 1.0) / widths[0] as f64;
    for l in 0..depth {
        let q = s[l] * prev_m2 + sigma_b2;
        let m2 = quad.expect(q, |z| act.f(z).powi(2));
        let m4 = quad.expect(q, |z| act.f(z).powi(4));
        let mean = quad.expect(q, |z| act.f(z));
        let log_sd = (var_log + 2.0 / widths[l + 1] as f64).sqrt();
        let k = if m2 > 0.0 { m4 / (m2 * m2) } else { 3.0 };
        // The next layer's variance is s_{l+1} m2(q) + sigma_b^2.
        let s_next = s.get(l + 1).copied().unwrap_or(s[l]);
        let slope = map_slope(&quad, act, q, s_next, sigma_b2);
        let weight = if m2 > 0.0 {
            s_next * m2 / (s_next * m2 + sigma_b2)
        } else {
            1.0
        };
        var_log = slope * slope * var_log + weight * weight * (k - 1.0) / widths[l + 1] as f64;
        out.push(LayerTheory {
            pre_var: q,
            post_mean_sq: m2,
            post_mean: mean,
            grad_var: 0.0,
            chi1: 0.0,
            log_sd,
            map_slope: slope,
            mean_dphi_sq: 0.0,
            curvature: 0.0,
        });
        prev_m2 = m2;
    }
    // Backward: Var(delta_L) = E[phi'(z_L)^2] (r has unit variance);
    // Var(delta_l) = Var(delta_{l+1}) * s_{l+1} * (n_{l+1} / n_l) * E[phi'(z_l)^2].
    let mut g = 0.0;
    for l in (0..depth).rev() {
        let d2 = quad.expect(out[l].pre_var, |z| act.df(z).powi(2));
        g = if l + 1 == depth {
            d2
        } else {
            g * s[l + 1] * (widths[l + 2] as f64 / widths[l + 1] as f64) * d2
        };
        out[l].grad_var = g;
        let s_next = if l + 1 < depth { s[l + 1] } else { s[l] };
        out[l].chi1 = s_next * d2;
        out[l].mean_dphi_sq = d2;
        let q = out[l].pre_var;
        let dd2 = quad.expect(q, |z| act.d2f(z).powi(2));
        out[l].curvature = if d2 > 0.0 && q.is_finite() {
            q * dd2 / d2
        } else {
            0.0
        };
    }
    out
}

/// `D = d log(s m2(q) + sigma_b^2) / d log q` by a central difference of the
/// quadrature (step 1e-4 relative: the rule is smooth in q, so the error is
/// ~1e-8, far below the finite-width terms it scales). 1 where q is 0 or not
/// finite (the layer is outside f32's range and not checked).
pub(crate) fn map_slope(quad: &Quadrature, act: Activation, q: f64, s: f64, sigma_b2: f64) -> f64 {
    log_slope(quad, q, |z| s * act.f(z).powi(2) + sigma_b2).unwrap_or(1.0)
}

/// `|d log E[g(Z)] / d log q|` for Z ~ N(0, q), by a central difference of
/// the quadrature in log q (step 1e-4; the rule is smooth in q, so the error
/// is ~1e-8). `None` where q is 0 or not finite, or `E[g]` is not positive
/// there.
pub(crate) fn log_slope(quad: &Quadrature, q: f64, g: impl Fn(f64) -> f64) -> Option<f64> {
    if !(q.is_finite() && q > 0.0) {
        return None;
    }
    let h = 1e-4;
    let (hi, lo) = (
        quad.expect(q * (1.0 + h), &g),
        quad.expect(q * (1.0 - h), &g),
    );
    if !(hi > 0.0 && lo > 0.0) {
        return None;
    }
    let d = (hi.ln() - lo.ln()) / ((1.0 + h).ln() - (1.0 - h).ln());
    d.is_finite().then_some(d.abs())
}

/// The one-step weight test: does every layer's variance follow from the
/// layer below *through the stated weight variance*?
///
/// Write z_l = a W^T + b for a layer's batch of inputs a (B x n_{l-1}) and
/// centre both over the batch with `P = I - 1 1^T / B` (which removes the
/// bias, constant over the batch). Given a, the weights of layer l are fresh
/// and independent, so for every unit j, `E[|P z_j|^2 | a] = (s_l / n_{l-1})
/// tr(P G_a)`, `G_a = a a^T`, exactly, whatever the activation and width.
/// The ratio
///
/// `r_l = mean_{b,j} (z_bj - zbar_j)^2 / (s_l tr(P G_a) / (B n_{l-1}))`
///
/// therefore has mean 1, and the `r_l - 1` of successive layers are
/// martingale differences (uncorrelated). For weights with non-positive excess
/// kurtosis (normal, uniform, truncated normal), `Var(r_l | a) <= 2 kappa /
/// n_l` with `kappa = ||P G_a P||_F^2 / tr(P G_a)^2` measured from the layer's
/// input Gram matrix (about 1/B for diverse inputs, 1 for one dominant
/// direction). With inverse-variance weights `w_l = n_l / (2 kappa_l)` (known
/// before layer l's weights are drawn, so the sum stays a martingale), the
/// weighted mean `d = sum w_l (r_l - 1) / sum w_l` has standard error `1 /
/// sqrt(sum w_l)` and `T = d sqrt(sum w_l)` is approximately standard normal
/// for a correct network; a weight variance off by a factor (1 + d) in every
/// layer shifts T by `d sqrt(sum w_l)`. Centring is what gives the test its power: deep ReLU
/// activations share one dominant direction (their mean), which alone would
/// give kappa ~ 1. Layers whose values left f32's normal range, and batches
/// of one, are skipped.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WeightTest {
    /// Layers used.
    pub layers: usize,
    /// Weighted mean of r_l - 1: the estimated relative error of the weight
    /// variance.
    pub mean_excess: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The test statistic T.
    pub z: f64,
    /// Two-sided critical |T| at the false-alarm rate.
    pub critical: f64,
    /// |T| <= critical.
    pub pass: bool,
}

/// Runs [`WeightTest`] on measured layers (`s[l]` = sigma_w^2 of layer l + 1,
/// `widths` n_0..n_L, `input_mean_sq` of a_0), at false-alarm rate `alpha`.
pub fn weight_test(
    s: &[f64],
    widths: &[u64],
    batch: u64,
    input_mean_sq: f64,
    layers: &[crate::net::LayerStats],
    alpha: f64,
) -> Option<WeightTest> {
    // f32's unit roundoff, 2^-24.
    const U: f64 = 5.960_464_477_539_063e-8;
    let ok = |x: f64| x.is_finite() && (1e-30..1e30).contains(&x);
    let (mut sum, mut var, mut used) = (0.0f64, 0.0f64, 0usize);
    let mut prev_finite = true;
    let mut prev_mean_sq = input_mean_sq;
    for (i, l) in layers.iter().enumerate() {
        let n = widths[i + 1] as f64;
        let expect = s[i] * l.input_centred_mean_sq;
        let measured = l.pre.mean_sq - l.pre_unit_mean_sq;
        let kappa = l.input_concentration.clamp(0.0, 1.0);
        // Both sides are differences of f32-accumulated sums: where the batch
        // has collapsed onto its mean (ordered phases), rounding would
        // dominate. Keep a layer only if the rounding bound stays below 2% of
        // the layer's own noise sd: the reductions' (48 u) and the column
        // sums' (4 u sqrt(B)) relative errors, scaled by the cancellation in
        // the measured side; the Gram entries' (u sqrt(n) each, random, so
        // about u sqrt(n) / B in the sum; bounded by 8 u sqrt(n)), scaled by
        // the cancellation in the expected side.
        let cancel_z = l.pre.mean_sq / measured;
        let cancel_a = prev_mean_sq / l.input_centred_mean_sq;
        let b = batch as f64;
        let rounding =
            (48.0 + 4.0 * b.sqrt()) * U * cancel_z + 8.0 * U * (widths[i] as f64).sqrt() * cancel_a;
        let noise = (2.0 * kappa / n).sqrt();
        if prev_finite
            && l.pre.nonfinite == 0
            && ok(expect)
            && ok(l.pre.mean_sq)
            && measured > 0.0
            && rounding <= 0.02 * noise
        {
            // Inverse-variance weights: known before layer l's weights are
            // drawn, so the weighted sum is still a martingale.
            let w = 1.0 / (noise * noise);
            sum += w * (measured / expect - 1.0);
            var += w;
            used += 1;
        }
        prev_finite = l.post.nonfinite == 0 && l.pre.nonfinite == 0;
        prev_mean_sq = l.post.mean_sq;
    }
    if used == 0 || var <= 0.0 {
        return None;
    }
    // Weighted mean of r_l - 1 and its standard error 1 / sqrt(sum w).
    let mean_excess = sum / var;
    let std_error = 1.0 / var.sqrt();
    let z = mean_excess / std_error;
    let critical = crate::stats::normal_quantile(1.0 - alpha / 2.0);
    Some(WeightTest {
        layers: used,
        mean_excess,
        std_error,
        z,
        critical,
        pass: z.abs() <= critical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrature_integrates_moments_and_closed_forms() {
        let q = Quadrature::new();
        assert!((q.expect(2.5, |_| 1.0) - 1.0).abs() < 1e-13);
        assert!((q.expect(2.5, |z| z * z) - 2.5).abs() < 1e-12);
        assert!((q.expect(2.5, |z| z.powi(4)) - 3.0 * 6.25).abs() < 1e-11);
        // ReLU: E[relu^2] = q / 2 and E[relu'^2] = 1/2; linear: q.
        for var in [0.01, 1.0, 37.0] {
            assert!(
                (q.expect(var, |z| Activation::Relu.f(z).powi(2)) - var / 2.0).abs()
                    < 1e-12 * var.max(1.0)
            );
            assert!((q.expect(var, |z| Activation::Relu.df(z).powi(2)) - 0.5).abs() < 1e-13);
            assert!(
                (q.expect(var, |z| Activation::Linear.f(z).powi(2)) - var).abs()
                    < 1e-12 * var.max(1.0)
            );
        }
        // E[relu] = sqrt(q / (2 pi)): the breakpoint at 0 makes the kink exact.
        for var in [1e-6, 1.0, 400.0] {
            let m = q.expect(var, |z| z.max(0.0));
            assert!((m / (var / (2.0 * std::f64::consts::PI)).sqrt() - 1.0).abs() < 1e-12);
        }
        // A narrow feature at large q (what Gauss-Hermite got 200x wrong):
        // E[sech^4(Z)] for Z ~ N(0, 254) = (4/3) / sqrt(2 pi 254) to O(1/q).
        let e = q.expect(254.0, |z| (1.0 / z.cosh()).powi(4));
        let approx = (4.0 / 3.0) / (2.0 * std::f64::consts::PI * 254.0).sqrt();
        assert!((e / approx - 1.0).abs() < 0.01, "{e} vs {approx}");
    }

    #[test]
    fn relu_variance_follows_k_over_two_to_the_l() {
        let widths = vec![100u64; 11];
        for k in [1.0, 2.0, 3.0] {
            let t = predict(Activation::Relu, &[k; 10], &widths, 1.0, 3.0, 0.0);
            for (l, lt) in t.iter().enumerate() {
                let want = k * (k / 2.0f64).powi(l as i32);
                assert!(
                    (lt.pre_var / want - 1.0).abs() < 1e-12,
                    "k {k} layer {l}: {} vs {want}",
                    lt.pre_var
                );
                assert!((lt.chi1 - k / 2.0).abs() < 1e-12);
            }
        }
        // He keeps gradients too: Var(delta) = 1/2 at every layer.
        let t = predict(Activation::Relu, &[2.0; 10], &widths, 1.0, 3.0, 0.0);
        assert!(t.iter().all(|lt| (lt.grad_var - 0.5).abs() < 1e-12));
        // Finite-width spread grows like sqrt(5 l / n) for ReLU.
        assert!(
            (t[9].log_sd.powi(2) - (2.0 / 100.0 + 9.0 * 5.0 / 100.0 + 2.0 / 100.0)).abs() < 1e-9
        );
    }

    #[test]
    fn tanh_with_tiny_weights_vanishes_and_critical_tanh_decays_slowly() {
        let widths = vec![256u64; 21];
        let small = predict(Activation::Tanh, &[0.5; 20], &widths, 1.0, 3.0, 0.0);
        assert!(small[19].pre_var < 1e-5 * small[0].pre_var);
        // At sigma_w^2 = 1 (chi_1 = 1 at q = 0) the decay is only algebraic (~1/l).
        let crit = predict(Activation::Tanh, &[1.0; 20], &widths, 1.0, 3.0, 0.0);
        assert!(crit[19].pre_var > 0.02 && crit[19].pre_var < 0.05);
    }
}
