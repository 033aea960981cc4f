//! How far two correct f32 evaluations of the same network can drift apart:
//! the tolerances of the GPU-vs-CPU-reference comparison, derived per layer
//! and per statistic from f32 rounding and the device's measured accuracy.
//!
//! # The model
//!
//! The GPU and the CPU reference compute the same network from the same RNG
//! elements. They differ by rounding: the device's transcendentals in the
//! weights and inputs (measured per run: [`Calibration`]), in the activation
//! (measured on a grid), and the f32 summation order of every GEMM (a random
//! walk: `u sqrt(K)` relative per entry for a length-K dot product, `u =
//! 2^-24`, per side). Write `e_l` for the rms relative difference of an entry
//! of z_l between the two runs. A relative perturbation of z_{l-1} reaches
//! z_l multiplied (in square) by `chi_1 q_{l-1} / q_l`, the mean-field gain
//! of small perturbations (1 for ReLU at any scale; above 1 in the chaotic
//! phase), so
//!
//! `e_l^2 = (chi_1 q_{l-1} / q_l) e_{l-1}^2 + w_rms^2 + 2 u^2 n_{l-1} + act_rel^2`.
//!
//! **Forward statistics** (means of z^2 and phi(z)^2 over B n_l entries) move
//! in two ways. A *coherent* relative bias (the device's weights or
//! activation systematically larger) shifts them by twice that bias per
//! layer, carried on by the variance map's slope `D = d log q_{l+1} / d log
//! q_l`; these add linearly. The *random* part of the entry differences
//! averages out: `4 e_l^2 / n_l` in variance (n_l, not B n_l, because one
//! unit's entries share its weights), also carried on by D. With
//! `z` the normal quantile of the false-alarm rate (below), the tolerance is
//! `coherent + z sqrt(random)`, plus the GPU reduction's own rounding (`24 u`
//! of the sum, `shaders/reduce.wgsl`, doubled), scaled by `(E x^2 + 2 |E x|
//! sqrt(E x^2)) / Var x` for centred variances (cancellation).
//!
//! **Kinks.** Where phi' jumps (ReLU, leaky ReLU, SELU at 0), a rounding
//! difference that moves z across 0 flips phi' for that entry: delta changes
//! there by a whole value, not a rounding error. With z ~ N(0, q), an entry
//! flips with probability `P(|z| < |dz|) = (2/pi) e_l`, so layer l expects
//! `F_l = (2/pi) e_l B n_l` flips. One flip changes delta_l by `Delta` with
//! `E Delta^2 = J^2 Var(delta) / E[phi'^2]` (J the jump of phi') and this
//! change travels down to every lower layer, where it moves ||delta_k||^2 by
//! the square of the change (relative size `sqrt 3 J2 / E[phi'^2]`, J2 the
//! jump of phi'^2) plus a cross term with delta (relative size `2 J /
//! sqrt(E[phi'^2])`), each divided by the B n_k entries, with random signs.
//! So the relative rms change of ||delta_k||^2 is `sqrt(S_k) / (B n_k)` with
//! `S_k = sum_{l >= k} F_l (3 J2^2 / E[phi'^2]^2 + 4 J^2 / E[phi'^2])`.
//! ||dW_k||^2 = tr(G_a G_delta) adds the same changes *coherently* across the
//! batch when the inputs are correlated (as they become in deep ReLU nets):
//! one changed entry moves it by up to `sqrt(W) / (B n_k)` times the above,
//! with `W` the measured coherence of [`crate::net::LayerStats`] (1 for
//! orthogonal inputs, B for identical ones). This is why one flipped mask can
//! move ||dW|| of a width-512 ReLU network by several 1e-4.
//!
//! When few flips are expected the sum is dominated by single large ones, so
//! one flip at its 1 - ALPHA size (a squared Gaussian at its chi-square
//! quantile, the cross term at the normal quantile) is added to the Gaussian
//! term.
//!
//! **Smooth activations** move delta through phi''(z) dz: the entry error of
//! delta grows by `curvature * e_l^2` per layer (see
//! [`crate::net::theory::LayerTheory::curvature`]), plus the device's phi' error
//! (measured on a grid like phi; a coherent bias adds `2 dact_rel` per layer
//! to the statistics), the backward GEMM's rounding and the weight error, and
//! the random part averages out like the forward part.
//!
//! **Underflow.** ||dW|| comes from batch x batch Gram matrices whose entries
//! (n times a mean square) can reach f32's subnormal range long before the
//! values do; their 2^-149 representation error is added, and within 2^10 of
//! the normal range (where devices may flush to zero) ||dW|| is not compared.
//!
//! **Counts** (dead units, saturated entries) change when an entry crosses a
//! threshold: at most `(2/pi) e_l B n_l` crossings are expected (the Gaussian
//! density is largest at 0), plus the coherent shift of the distribution.
//!
//! **False alarms.** Each compared statistic is checked at `z =
//! Phi^-1(1 - alpha / (2 m))`, with `m` the number of comparisons in the run
//! (Bonferroni), so a correct run fails with probability at most `alpha` =
//! [`ALPHA`] as far as the model's rms is an upper bound; its constants are
//! chosen as upper bounds (sequential summation, worst-case densities), and
//! `tests/verdicts.rs` measures the false-alarm rate over a seed grid.
//!
//! **Where the model stops.** Once `e_l` exceeds [`DIVERGENCE_LIMIT`], the two
//! runs are different trajectories of a chaotic map, not perturbations of one
//! another; and a tolerance above [`CHAOS_LIMIT`] would check nothing. Such
//! layers (or their backward statistics alone) are reported as not compared,
//! never as matching.

use crate::net::theory::{LayerTheory, Quadrature};
use crate::net::{NetConfig, NetStats, TensorStats};
use serde::Serialize;

/// The chi-square(1) quantile at 1 - 1e-3: a squared Gaussian value (the
/// delta a flip adds or removes) at the tail of [`ALPHA`].
const CHI2_1_TAIL: f64 = 10.83;
/// The two-sided normal quantile at 1e-3 (the cross term's random sign).
const Z_TAIL: f64 = 3.29;
/// The smallest positive f32 (subnormal), 2^-149.
const TINY: f64 = 1.401_298_464_324_817e-45;
/// 2^10 above the smallest normal f32 (2^-126): Gram entries below this are
/// too close to the subnormal range for ||dW|| to be compared.
const GRAM_NORMAL_MARGIN: f64 = 1.203_706_215_242_022_4e-35;
/// f32 unit roundoff, 2^-24.
pub const U: f64 = 5.960_464_477_539_063e-8;
/// Designed false-alarm rate of the GPU-vs-CPU comparison of one run.
pub const ALPHA: f64 = 1e-3;
/// Beyond this rms relative divergence of entries, two runs are no longer
/// perturbations of each other (the linear model above stops holding).
pub const DIVERGENCE_LIMIT: f64 = 1e-2;
/// A statistic whose tolerance exceeds this is not compared: the check
/// would be too loose to mean anything.
pub const CHAOS_LIMIT: f64 = 0.05;
/// The GPU reduction's relative rounding (`(ITEMS + 8) u` of the sum in
/// `shaders/reduce.wgsl`), doubled for margin.
pub const REDUCTION: f64 = 48.0 * U;

/// How far this device's builtins are from the CPU reference's, measured at
/// the start of a verified GPU run on samples of the run's own tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Calibration {
    /// rms of (GPU - CPU) / rms(CPU) over a sample of layer 1's weights.
    pub weight_rms: f64,
    /// Upper bound (mean + 3 standard errors) on the relative bias of the
    /// weights' mean square.
    pub weight_bias: f64,
    /// The same for the RNG inputs (0 when the inputs come from a file: both
    /// sides then read the same values).
    pub input_rms: f64,
    /// Relative bias bound of the inputs' mean square.
    pub input_bias: f64,
    /// Largest |GPU - CPU| of the activation on a grid spanning 1e-4 .. 3e1,
    /// relative to max(|phi(z)|, |phi(-z)|).
    pub act_rel: f64,
    /// The same for phi' (the backward pass's gradient product).
    pub dact_rel: f64,
}

impl Calibration {
    /// Summarises paired samples `(gpu, cpu)` into (rms, bias bound).
    pub fn summarise(gpu: &[f32], cpu: &[f32]) -> (f64, f64) {
        let n = gpu.len().min(cpu.len());
        if n == 0 {
            return (0.0, 0.0);
        }
        let ms = cpu.iter().map(|&c| f64::from(c).powi(2)).sum::<f64>() / n as f64;
        if ms <= 0.0 || !ms.is_finite() {
            return (0.0, 0.0);
        }
        let (mut sq, mut sum, mut sum2) = (0.0, 0.0, 0.0);
        for (&g, &c) in gpu.iter().zip(cpu) {
            let (g, c) = (f64::from(g), f64::from(c));
            sq += (g - c).powi(2);
            let d = (g * g - c * c) / ms;
            sum += d;
            sum2 += d * d;
        }
        let nf = n as f64;
        let mean = sum / nf;
        let sd = ((sum2 / nf - mean * mean).max(0.0) / nf).sqrt();
        ((sq / nf / ms).sqrt(), mean.abs() + 3.0 * sd)
    }
}

/// Tolerances of one layer's statistics, relative (fractions: absolute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LayerTolerance {
    /// e_l: predicted rms relative difference of an entry of z_l.
    pub divergence: f64,
    /// Expected kink crossings (flipped masks) in layer l.
    pub flips: f64,
    /// Var(z_l).
    pub pre_var: f64,
    /// Var(a_l).
    pub post_var: f64,
    /// E[a_l^2].
    pub post_mean_sq: f64,
    /// Var(delta_l).
    pub grad_var: f64,
    /// ||dW_l||_F.
    pub grad_w_norm: f64,
    /// Absolute tolerance on the saturated fraction.
    pub saturated_frac: f64,
    /// Absolute tolerance on the dead-unit fraction.
    pub dead_frac: f64,
    /// The forward statistics can be compared.
    pub forward: bool,
    /// The backward statistics can be compared.
    pub backward: bool,
}

/// Amplification of a mean-square error in a centred variance.
fn centred(t: &TensorStats) -> f64 {
    if t.var > 0.0 && t.mean_sq.is_finite() {
        ((t.mean_sq + 2.0 * t.mean.abs() * t.mean_sq.sqrt()) / t.var).max(1.0)
    } else {
        1.0
    }
}

fn finite_or(x: f64, v: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        v
    }
}

/// `|d log E[g(z)] / d log q|` for z ~ N(0, q); 0 where it cannot be computed.
fn log_slope(quad: &Quadrature, q: f64, g: impl Fn(f64) -> f64) -> f64 {
    crate::net::theory::log_slope(quad, q, g).unwrap_or(0.0)
}

/// The tolerances of every layer of `cfg` (theory `th`, CPU reference `cpu`,
/// device calibration `cal`), at the normal quantile `z`.
pub fn network(
    cfg: &NetConfig,
    th: &[LayerTheory],
    cpu: &NetStats,
    cal: &Calibration,
    z: f64,
) -> Vec<LayerTolerance> {
    let (act_rel, dact_rel) = if cfg.act.transcendental() {
        (cal.act_rel.max(2.0 * U), cal.dact_rel.max(2.0 * U))
    } else {
        (0.0, 0.0)
    };
    let m = Model {
        cfg,
        th,
        cpu,
        cal,
        z,
        act_rel,
        dact_rel,
        quad: Quadrature::new(),
    };
    let mut fwd = m.forward();
    m.backward(&mut fwd);
    fwd.out
}

/// One network's inputs to the model.
struct Model<'a> {
    cfg: &'a NetConfig,
    th: &'a [LayerTheory],
    cpu: &'a NetStats,
    cal: &'a Calibration,
    z: f64,
    act_rel: f64,
    dact_rel: f64,
    quad: Quadrature,
}

/// The forward half's results, which the backward half builds on.
struct Forward {
    out: Vec<LayerTolerance>,
    /// Relative tolerance of the z statistics per layer (before the reduction floor).
    fwd_rel: Vec<f64>,
    /// Relative tolerance of the a statistics per layer.
    post_rel: Vec<f64>,
}

impl Model<'_> {
    /// The forward statistics, layer 1 up.
    fn forward(&self) -> Forward {
        let Model {
            cfg,
            th,
            cpu,
            cal,
            z,
            act_rel,
            ..
        } = *self;
        let depth = cfg.depth();
        let act = cfg.act;
        let b = cfg.batch as f64;
        let mut out = vec![LayerTolerance::default(); depth];
        // Forward pass of the model.
        let (mut e2, mut coherent, mut random) = (0.0f64, 0.0f64, 0.0f64);
        let mut post_rel = vec![0.0f64; depth];
        let mut fwd_rel = vec![0.0f64; depth];
        for i in 0..depth {
            let (k, n) = (cfg.widths[i] as f64, cfg.widths[i + 1] as f64);
            let fresh_act = if i > 0 { act_rel } else { 0.0 };
            let fresh = cal.weight_rms.powi(2) + 2.0 * U * U * k + fresh_act.powi(2);
            let (gain, slope) = if i == 0 {
                e2 = cal.input_rms.powi(2);
                coherent = 2.0 * cal.input_bias;
                (1.0, 1.0)
            } else {
                let g = th[i - 1].chi1 * th[i - 1].pre_var / th[i].pre_var;
                (finite_or(g, 1.0).max(0.0), th[i - 1].map_slope)
            };
            e2 = gain * e2 + fresh;
            coherent = slope * coherent + 2.0 * (cal.weight_bias + fresh_act);
            random = slope * slope * random + 4.0 * e2 / n;
            let e = e2.sqrt();
            let f = coherent + z * random.sqrt();
            let q = th[i].pre_var;
            let act_slope = log_slope(&self.quad, q, |x| act.f(x).powi(2));
            let post = act_slope * f + 2.0 * act_rel;
            fwd_rel[i] = f;
            post_rel[i] = post;
            let c = &cpu.layers[i];
            let crossings = (2.0 / std::f64::consts::PI) * e * b * n;
            let count = crossings + z * crossings.sqrt() + 1.0;
            let t = &mut out[i];
            t.divergence = e;
            t.flips = if act.kink().is_some() { crossings } else { 0.0 };
            t.pre_var = (f + REDUCTION) * centred(&c.pre);
            t.post_var = (post + REDUCTION) * centred(&c.post);
            t.post_mean_sq = post + REDUCTION;
            t.saturated_frac = count / (b * n) + 0.5 * f;
            t.dead_frac = count / n;
            t.forward = e <= DIVERGENCE_LIMIT
                && [t.pre_var, t.post_var, t.post_mean_sq]
                    .iter()
                    .all(|&x| x.is_finite() && x <= CHAOS_LIMIT);
        }
        Forward {
            out,
            fwd_rel,
            post_rel,
        }
    }

    /// The backward statistics, layer L down (kink flips, smooth errors).
    /// The typical entries (n x mean square) of layer `i + 1`'s Gram matrices
    /// of inputs and deltas. They must be normal f32 numbers: a subnormal
    /// entry keeps only 2^-149 absolute precision, and devices may flush it to
    /// zero. Within 2^10 of the normal range ||dW|| is not compared; above,
    /// the representation error is added.
    fn gram_scales(&self, i: usize) -> (f64, f64) {
        let (cfg, cpu) = (self.cfg, self.cpu);
        let input_ms = if i > 0 {
            cpu.layers[i - 1].post.mean_sq
        } else {
            cpu.input.mean_sq
        };
        (
            cfg.widths[i] as f64 * input_ms,
            cfg.widths[i + 1] as f64 * cpu.layers[i].grad.mean_sq,
        )
    }

    fn backward(&self, f: &mut Forward) {
        let Model {
            cfg,
            th,
            cpu,
            cal,
            z,
            dact_rel,
            ..
        } = *self;
        let depth = cfg.depth();
        let act = cfg.act;
        let b = cfg.batch as f64;
        let (out, fwd_rel, post_rel) = (&mut f.out, &f.fwd_rel, &f.post_rel);
        // Backward pass of the model, from layer L down.
        let (mut flip_energy, mut flip_count, mut flip_max) = (0.0f64, 0.0f64, 0.0f64);
        let (mut eb2, mut cb, mut vb) = (0.0f64, 0.0f64, 0.0f64);
        for i in (0..depth).rev() {
            let n = cfg.widths[i + 1] as f64;
            let big_n = b * n;
            let t = out[i];
            let (energy, size) = flip_effect(act.kink(), th[i].mean_dphi_sq);
            flip_energy += t.flips * energy;
            flip_count += t.flips;
            if t.flips > 0.0 {
                flip_max = flip_max.max(size);
            }
            // Few expected flips: the sum is dominated by single large ones, which
            // the Gaussian term does not cover; add one flip at its tail size
            // unless a flip is itself unlikely (P < ALPHA / 10).
            let outlier = if flip_count > ALPHA / 10.0 {
                flip_max
            } else {
                0.0
            };
            let k_back = cfg.widths.get(i + 2).copied().unwrap_or(0) as f64;
            eb2 += th[i].curvature * t.divergence.powi(2)
                + dact_rel.powi(2)
                + if k_back > 0.0 {
                    cal.weight_rms.powi(2) + 2.0 * U * U * k_back
                } else {
                    0.0
                };
            let dphi_slope = log_slope(&self.quad, th[i].pre_var, |x| act.df(x).powi(2));
            cb += 2.0 * if k_back > 0.0 { cal.weight_bias } else { 0.0 }
                + 2.0 * dact_rel
                + dphi_slope * fwd_rel[i];
            vb += 4.0 * eb2 / n;
            let flips_delta = flip_energy.sqrt() / big_n;
            let coherence = cpu.layers[i].grad_w_coherence.max(1.0);
            let flips_w2 = (flip_energy * coherence).sqrt() / big_n;
            let c = &cpu.layers[i];
            let grad_var = cb + z * (vb + flips_delta.powi(2)).sqrt() + outlier / big_n;
            // ||dW||^2 = tr(G_a G_delta): errors of both Grams add; the norm halves them.
            let input_rel = if i > 0 {
                post_rel[i - 1]
            } else {
                2.0 * cal.input_bias
            };
            let gram_round = 4.0 * U * (cfg.widths[i] as f64 + n).sqrt();
            let (gram_a, gram_d) = self.gram_scales(i);
            let subnormal = TINY / gram_a + TINY / gram_d;
            let dw = 0.5
                * (input_rel
                    + cb
                    + z * (vb + flips_w2.powi(2)).sqrt()
                    + outlier * coherence.sqrt() / big_n)
                + gram_round
                + subnormal;
            let o = &mut out[i];
            o.grad_var = (grad_var + REDUCTION) * centred(&c.grad);
            o.grad_w_norm = dw + REDUCTION;
            o.backward = o.forward
                && gram_a.min(gram_d) > GRAM_NORMAL_MARGIN
                && eb2.sqrt() <= DIVERGENCE_LIMIT
                && o.grad_var.is_finite()
                && o.grad_w_norm.is_finite()
                && o.grad_var <= CHAOS_LIMIT
                && o.grad_w_norm <= CHAOS_LIMIT;
        }
    }
}

/// Per flip of a kinked activation (`kink` = (jump of phi', jump of phi'^2)),
/// given E[phi'^2]: the mean square of its effect on ||delta||^2, and its size
/// at the 1 - ALPHA quantile.
fn flip_effect(kink: Option<(f64, f64)>, dphi2: f64) -> (f64, f64) {
    match kink {
        Some((jump, jump2)) if dphi2 > 0.0 => (
            3.0 * (jump2 / dphi2).powi(2) + 4.0 * jump * jump / dphi2,
            CHI2_1_TAIL * jump2 / dphi2 + 2.0 * (CHI2_1_TAIL * jump * jump / dphi2).sqrt() * Z_TAIL,
        ),
        _ => (0.0, 0.0),
    }
}

/// Normal quantile for `comparisons` two-sided tests sharing the false-alarm
/// rate `alpha` (Bonferroni).
pub fn quantile(alpha: f64, comparisons: usize) -> f64 {
    crate::stats::normal_quantile(1.0 - alpha / (2.0 * comparisons.max(1) as f64))
}

/// The activation's calibration grid: +-10^(-4 .. 1.5), 256 magnitudes.
pub fn activation_grid() -> Vec<f32> {
    let mut v = Vec::with_capacity(512);
    for i in 0..256 {
        let x = 10f64.powf(-4.0 + 5.5 * f64::from(i) / 255.0) as f32;
        v.push(x);
        v.push(-x);
    }
    v
}

/// Largest |got - f(x)| / max(|f(x)|, |f(-x)|) over the grid, with `f` the
/// CPU reference's f32 function (the activation or its derivative).
pub fn grid_error(grid: &[f32], got: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    grid.iter()
        .zip(got)
        .map(|(&x, &g)| {
            let want = f(x);
            let scale = f64::from(want.abs().max(f(-x).abs()));
            if scale > 0.0 {
                let d = (f64::from(g) - f64::from(want)).abs() / scale;
                if d.is_nan() {
                    f64::INFINITY
                } else {
                    d
                }
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::act::Activation;

    #[test]
    fn summarise_measures_rms_and_bias() {
        let cpu: Vec<f32> = (0..4096).map(|i| ((i % 17) as f32 - 8.0) / 4.0).collect();
        assert_eq!(Calibration::summarise(&cpu, &cpu), (0.0, 0.0));
        let scaled: Vec<f32> = cpu.iter().map(|&c| c * 1.01).collect();
        let (rms, bias) = Calibration::summarise(&scaled, &cpu);
        assert!((rms - 0.01).abs() < 1e-6, "{rms}");
        // The mean relative change of the squares is 1.01^2 - 1 = 0.0201; the
        // bound adds 3 standard errors of the per-element changes.
        assert!((0.0201..0.0201 * 1.05).contains(&bias), "{bias}");
    }

    #[test]
    fn activation_error_is_zero_for_the_reference_itself() {
        let g = activation_grid();
        for act in [Activation::Tanh, Activation::Gelu, Activation::Selu] {
            let same: Vec<f32> = g.iter().map(|&x| act.f32(x)).collect();
            assert_eq!(grid_error(&g, &same, |x| act.f32(x)), 0.0);
            let off: Vec<f32> = same.iter().map(|&v| v * (1.0 + 1e-3)).collect();
            let e = grid_error(&g, &off, |x| act.f32(x));
            assert!(e > 5e-4 && e <= 1.001e-3, "{act:?}: {e}");
        }
    }
}
