//! One network configuration run on the GPU (or the CPU backend), checked
//! against the CPU reference and against mean-field theory, with a verdict.
//!
//! # Tolerances
//!
//! **GPU vs CPU reference.** Both run the same f32 network from the same RNG
//! elements, so they differ only by rounding: GEMM summation order (f32 dot
//! products of length K; error ~ sqrt(K) 2^-24 relative for random signs, so
//! below 1e-5 for K <= 2^13), the device's transcendentals in the weights
//! (within [`crate::dist::gpu_tolerance`], ~1e-5 relative on the devices
//! measured) and in the activations, and the reduction order of the statistics
//! (<= 24 * 2^-24, see `shaders/reduce.wgsl`). These perturbations propagate
//! through the layers and are amplified by chi_1 where chi_1 > 1, so layer l's
//! statistics must agree within `tau_l = TAU0 * prod_{i<=l} max(1, chi_1,i)`
//! relative (backward: the product over the whole forward pass and the layers
//! from L down to l). `TAU0 = 1e-3` leaves a 50x margin over the largest
//! difference measured in an ordered network. Where `tau_l` exceeds
//! [`CHAOS_LIMIT`], the two runs are different trajectories of a chaotic map and
//! their statistics are no longer comparable: such layers are reported as
//! `chaotic`, not checked. Values below [`UNDERFLOW`] are compared as "both
//! vanished" (devices may flush f32 subnormals); non-finite values as "both
//! overflowed".
//!
//! **Measured vs theory.** `|ln(measured / predicted)|` of the pre-activation
//! variance must stay within `z * log_sd_l` with `z` the two-sided normal
//! quantile at alpha / L (Bonferroni over the layers, alpha = 0.001), and
//! `log_sd_l` the finite-width spread derived in [`crate::theory::predict`].

use crate::error::Result;
use crate::gpu::kernels::NetKernels;
use crate::gpu::Generator;
use crate::net::{LayerStats, NetConfig, NetStats};
use crate::theory::{self, LayerTheory};
use serde::Serialize;

/// Base relative tolerance GPU vs CPU (see the module docs).
pub const TAU0: f64 = 1e-3;
/// Beyond this relative tolerance a layer is "chaotic" and not compared.
pub const CHAOS_LIMIT: f64 = 0.05;
/// Variances below this are "vanished": the values (~1e-30) are within a few
/// factors of 2^-100 of f32's subnormal range, where devices may flush to zero.
pub const UNDERFLOW: f64 = 1e-60;
/// False-alarm rate of the theory check over a whole run.
pub const ALPHA: f64 = 1e-3;

/// Where to run.
pub enum Device<'g, 'c, 'k> {
    /// GPU, with kernels compiled for the configuration's activation.
    Gpu(&'g Generator<'c>, &'k NetKernels<'c>),
    /// The CPU reference only.
    Cpu,
}

/// One layer of the report (field names are part of the JSON format).
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// 1-based layer index.
    pub layer: usize,
    /// Mean of z_l.
    pub pre_mean: f64,
    /// Variance of z_l.
    pub pre_var: f64,
    /// Mean of a_l.
    pub post_mean: f64,
    /// Variance of a_l.
    pub post_var: f64,
    /// Mean square of a_l.
    pub post_mean_sq: f64,
    /// Variance of delta_l.
    pub grad_var: f64,
    /// ||dW_l||_F.
    pub grad_w_norm: f64,
    /// Mean-field prediction of Var(z_l).
    pub theory_pre_var: f64,
    /// Mean-field prediction of Var(delta_l).
    pub theory_grad_var: f64,
    /// chi_1 at this layer.
    pub chi1: f64,
    /// The CPU reference's Var(z_l) (null on the CPU backend).
    pub cpu_pre_var: Option<f64>,
    /// The CPU reference's Var(delta_l).
    pub cpu_grad_var: Option<f64>,
    /// Fraction of units zero for the whole batch.
    pub dead_frac: f64,
    /// Fraction of exactly-zero activations.
    pub zero_frac: f64,
    /// Fraction of saturated activations.
    pub saturated_frac: f64,
    /// NaN/Inf in z, a or delta.
    pub nonfinite: u64,
    /// Relative tolerance applied vs the CPU (null when not compared).
    pub cpu_tolerance: Option<f64>,
    /// `match`, `mismatch`, `chaotic`, `vanished` (below [`UNDERFLOW`] on both),
    /// `overflow` (beyond 1 / UNDERFLOW or non-finite on both) or `n/a`.
    pub cpu_check: &'static str,
    /// `match`, `deviates`, or `n/a` (vanished/overflowed).
    pub theory_check: &'static str,
}

/// Verdict of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunVerdict {
    /// Every compared layer matches the CPU reference (true on the CPU backend).
    pub cpu_match: bool,
    /// Every checked layer matches the theory.
    pub theory_match: bool,
    /// Largest relative GPU-vs-CPU difference over the compared statistics.
    pub max_rel_err_cpu: f64,
    /// Layers not compared with the CPU because of chaotic amplification.
    pub chaotic_layers: usize,
    /// First layer with non-finite values (the signal overflowed), if any.
    pub overflow_at: Option<usize>,
    /// One line per failure.
    pub failures: Vec<String>,
}

/// A run's report (one entry of `report.json`'s `runs`).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Scheme name.
    pub scheme: String,
    /// Activation name.
    pub activation: String,
    /// Width (the first hidden layer's, for uniform networks all of them).
    pub width: u64,
    /// All widths n_0..n_L.
    pub widths: Vec<u64>,
    /// Depth L.
    pub depth: usize,
    /// Batch.
    pub batch: u64,
    /// Variance multiplier.
    pub multiplier: f64,
    /// Bias standard deviation.
    pub bias_std: f64,
    /// Seed.
    pub seed: u64,
    /// sigma_w^2 of layer 1 (Var(W) * fan_in).
    pub sigma_w2: f64,
    /// Seconds on the device.
    pub seconds: f64,
    /// Seconds of the CPU reference.
    pub cpu_seconds: Option<f64>,
    /// Input statistics.
    pub input_var: f64,
    /// Per layer.
    pub layers: Vec<LayerReport>,
    /// Cosine similarity of the first two inputs after L layers.
    pub final_cosine: Option<f64>,
    /// Gram matrix of a_L (batch x batch, row-major); not in the JSON.
    #[serde(skip)]
    pub final_gram: Vec<f64>,
    /// Verdict.
    pub verdict: RunVerdict,
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// Compares one statistic; returns (ok, relative error if compared).
fn compare(
    gpu: f64,
    cpu: f64,
    gpu_nonfinite: bool,
    cpu_nonfinite: bool,
    tol: f64,
) -> (bool, Option<f64>) {
    if gpu_nonfinite || cpu_nonfinite {
        return (gpu_nonfinite && cpu_nonfinite, None);
    }
    if gpu.abs() < UNDERFLOW && cpu.abs() < UNDERFLOW {
        return (true, None);
    }
    let r = rel(gpu, cpu);
    (r <= tol, Some(r))
}

/// Runs `cfg` on `device`, and on the CPU reference when the device is a GPU.
pub fn run(device: &Device, cfg: &NetConfig, verify: bool) -> Result<RunReport> {
    run_with_input(device, cfg, None, verify)
}

/// [`run`] with the inputs given (`batch x n_0`, row-major) instead of drawn
/// from the RNG. The theory then uses their measured mean square and kurtosis.
pub fn run_with_input(
    device: &Device,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
) -> Result<RunReport> {
    let s = cfg.sigma_w2()?;
    let measured: NetStats = match device {
        Device::Gpu(g, k) => crate::gpu::network::run(g, k, cfg, input)?,
        Device::Cpu => crate::reference::run(cfg, input)?,
    };
    let reference = match device {
        Device::Gpu(..) if verify => Some(crate::reference::run(cfg, input)?),
        _ => None,
    };
    let m_in = measured.input.mean_sq;
    // Kurtosis E[x^4] / E[x^2]^2 of the inputs: 3 for the RNG's Gaussian inputs.
    let k_in = match input {
        Some(x) if !x.is_empty() => {
            let m2 = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
            let m4 = x.iter().map(|&v| f64::from(v).powi(4)).sum::<f64>() / x.len() as f64;
            if m2 > 0.0 {
                m4 / (m2 * m2)
            } else {
                3.0
            }
        }
        _ => 3.0,
    };
    let th = theory::predict(
        cfg.act,
        &s,
        &cfg.widths,
        m_in,
        k_in,
        cfg.bias_std * cfg.bias_std,
    );
    Ok(assemble(cfg, &s, &measured, reference.as_ref(), &th))
}

fn assemble(
    cfg: &NetConfig,
    s: &[f64],
    m: &NetStats,
    cpu: Option<&NetStats>,
    th: &[LayerTheory],
) -> RunReport {
    let depth = cfg.depth();
    // Amplification of a relative perturbation: from z_i to z_{i+1} an absolute
    // perturbation grows by chi_1 while the signal grows by q_{i+1} / q_i, so the
    // relative one by chi_1 q_i / q_{i+1} (1 for ReLU at any sigma_w: positive
    // homogeneity; > 1 in the chaotic phase of tanh). Layer 1 starts at 1. The
    // backward pass is linear in delta, so gradients inherit the forward
    // amplification of the whole network.
    let mut fwd = vec![1.0f64; depth];
    for l in 1..depth {
        let gain = th[l - 1].chi1 * th[l - 1].pre_var / th[l].pre_var;
        fwd[l] = fwd[l - 1] * if gain.is_finite() { gain.max(1.0) } else { 1.0 };
    }
    let bwd = vec![fwd[depth - 1]; depth];
    let z = crate::stats::normal_quantile(1.0 - ALPHA / (2.0 * depth as f64));
    let mut failures = Vec::new();
    let mut max_rel: f64 = 0.0;
    let mut chaotic = 0usize;
    let mut overflow_at = None;
    let mut layers = Vec::with_capacity(depth);
    for (i, ls) in m.layers.iter().enumerate() {
        let nonfinite = ls.pre.nonfinite + ls.post.nonfinite + ls.grad.nonfinite;
        if ls.pre.nonfinite + ls.post.nonfinite > 0 && overflow_at.is_none() {
            overflow_at = Some(ls.layer);
        }
        let (cpu_tolerance, cpu_check) = match cpu.map(|c| &c.layers[i]) {
            None => (None, "n/a"),
            Some(c) if ls.pre.var < UNDERFLOW && c.pre.var < UNDERFLOW && nonfinite == 0 => {
                (None, "vanished")
            }
            // Near f32's range the GEMMs overflow partially, at places that
            // depend on summation order: both overflowing is agreement.
            Some(c)
                if (nonfinite > 0 || ls.pre.var > 1.0 / UNDERFLOW)
                    && (c.pre.nonfinite + c.post.nonfinite + c.grad.nonfinite > 0
                        || c.pre.var > 1.0 / UNDERFLOW) =>
            {
                (None, "overflow")
            }
            Some(c) => {
                let tol_f = TAU0 * fwd[i];
                let tol_b = TAU0 * bwd[i];
                if tol_f > CHAOS_LIMIT {
                    chaotic += 1;
                    (None, "chaotic")
                } else {
                    let nf = |t: &LayerStats| {
                        (t.pre.nonfinite + t.post.nonfinite > 0, t.grad.nonfinite > 0)
                    };
                    let (gf, gb) = nf(ls);
                    let (cf, cb) = nf(c);
                    let mut checks = vec![
                        ("pre_var", compare(ls.pre.var, c.pre.var, gf, cf, tol_f)),
                        ("post_var", compare(ls.post.var, c.post.var, gf, cf, tol_f)),
                        (
                            "post_mean_sq",
                            compare(ls.post.mean_sq, c.post.mean_sq, gf, cf, tol_f),
                        ),
                    ];
                    if tol_b <= CHAOS_LIMIT {
                        checks.push((
                            "grad_var",
                            compare(ls.grad.var, c.grad.var, gb || gf, cb || cf, tol_b),
                        ));
                        checks.push((
                            "grad_w_norm",
                            compare(ls.grad_w_norm, c.grad_w_norm, gb || gf, cb || cf, tol_b),
                        ));
                    }
                    // Fractions: a few units may cross a threshold (0 or +-0.99).
                    let count_tol = tol_f + 16.0 / (cfg.batch * cfg.widths[ls.layer]) as f64;
                    let mut ok = true;
                    for (name, (good, r)) in checks {
                        if let Some(r) = r {
                            max_rel = max_rel.max(r);
                        }
                        if !good {
                            ok = false;
                            failures.push(format!(
                                "layer {}: {name} differs from the CPU reference by {} (tolerance {:.1e})",
                                ls.layer,
                                r.map_or("a non-finite value".to_string(), |r| format!("{r:.2e}")),
                                tol_f
                            ));
                        }
                    }
                    for (name, a, b) in [
                        ("dead_frac", ls.dead_frac, c.dead_frac),
                        (
                            "saturated_frac",
                            ls.post.saturated_frac,
                            c.post.saturated_frac,
                        ),
                    ] {
                        if (a - b).abs() > count_tol {
                            ok = false;
                            failures.push(format!(
                                "layer {}: {name} {a} vs CPU {b} (tolerance {count_tol:.1e})",
                                ls.layer
                            ));
                        }
                    }
                    (Some(tol_f), if ok { "match" } else { "mismatch" })
                }
            }
        };
        let t = &th[i];
        let theory_check = if ls.pre.nonfinite > 0
            || !(UNDERFLOW..1.0 / UNDERFLOW).contains(&t.pre_var)
            || !(UNDERFLOW..1.0 / UNDERFLOW).contains(&ls.pre.var)
        {
            "n/a"
        } else {
            let dev = (ls.pre.var / t.pre_var).ln().abs();
            // 1e-6: the quadrature's own error.
            if dev <= z * t.log_sd + 1e-6 {
                "match"
            } else {
                failures.push(format!(
                    "layer {}: Var(z) = {:.4e} but theory predicts {:.4e} (|ln ratio| {:.3} > {:.3})",
                    ls.layer,
                    ls.pre.var,
                    t.pre_var,
                    dev,
                    z * t.log_sd
                ));
                "deviates"
            }
        };
        layers.push(LayerReport {
            layer: ls.layer,
            pre_mean: ls.pre.mean,
            pre_var: ls.pre.var,
            post_mean: ls.post.mean,
            post_var: ls.post.var,
            post_mean_sq: ls.post.mean_sq,
            grad_var: ls.grad.var,
            grad_w_norm: ls.grad_w_norm,
            theory_pre_var: t.pre_var,
            theory_grad_var: t.grad_var,
            chi1: t.chi1,
            cpu_pre_var: cpu.map(|c| c.layers[i].pre.var),
            cpu_grad_var: cpu.map(|c| c.layers[i].grad.var),
            dead_frac: ls.dead_frac,
            zero_frac: ls.post.zero_frac,
            saturated_frac: ls.post.saturated_frac,
            nonfinite,
            cpu_tolerance,
            cpu_check,
            theory_check,
        });
    }
    let b = cfg.batch as usize;
    let final_cosine = (b >= 2 && m.final_gram.len() >= b * b).then(|| {
        let g = &m.final_gram;
        g[1] / (g[0] * g[b + 1]).sqrt()
    });
    let cpu_match = !layers.iter().any(|l| l.cpu_check == "mismatch");
    let theory_match = !layers.iter().any(|l| l.theory_check == "deviates");
    RunReport {
        scheme: cfg.scheme.name(),
        activation: cfg.act.name(),
        width: cfg.widths[1.min(depth)],
        widths: cfg.widths.clone(),
        depth,
        batch: cfg.batch,
        multiplier: cfg.multiplier,
        bias_std: cfg.bias_std,
        seed: cfg.seed,
        sigma_w2: s[0],
        seconds: m.seconds,
        cpu_seconds: cpu.map(|c| c.seconds),
        input_var: m.input.var,
        layers,
        final_cosine: final_cosine.filter(|c| c.is_finite()),
        final_gram: m.final_gram.clone(),
        verdict: RunVerdict {
            cpu_match,
            theory_match,
            max_rel_err_cpu: max_rel,
            chaotic_layers: chaotic,
            overflow_at,
            failures,
        },
    }
}
