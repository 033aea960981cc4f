//! One network configuration run on the GPU (or the CPU backend), checked
//! against the CPU reference and against mean-field theory, with a verdict.
//!
//! # The checks and their false-alarm rates
//!
//! **GPU vs CPU reference** (GPU backend, unless `--no-verify`): every
//! layer's Var(z), Var(a), E[a^2], Var(delta), ||dW||, dead and saturated
//! fractions must agree within tolerances derived from what f32 rounding can
//! do through the network, kink flips included ([`crate::net::tolerance`]), at a
//! designed false-alarm rate of [`tolerance::ALPHA`] per run. Layers past the
//! model's reach are `chaotic` and *not compared*; values below [`UNDERFLOW`]
//! on both sides are "both vanished", non-finite on both "both overflowed".
//!
//! **Theory**, two tests, each at false-alarm rate [`ALPHA`] per run:
//! - *per layer*: `|ln(measured / predicted Var(z_l))|` within `z *
//!   log_sd_l`, `z` the two-sided normal quantile at ALPHA / L (Bonferroni
//!   over the layers) and `log_sd_l` the finite-width spread carried through
//!   the variance map's slope ([`crate::net::theory::predict`]); layers whose band
//!   is wider than a factor of 10 are `n/a` ([`THEORY_BAND_LIMIT`]);
//! - *one step*: [`crate::net::theory::weight_test`], which asks whether each
//!   layer's variance follows from the layer below through the stated weight
//!   variance, pooled over all layers. It is what catches a weight variance a
//!   few per cent off at realistic widths.
//!
//! A check that did not run is `None` (JSON `null`, text "not compared"),
//! never a pass.

use crate::backend::Backend;
use crate::error::Result;
use crate::net::theory::{self, LayerTheory, WeightTest};
use crate::net::tolerance::{self, Calibration, LayerTolerance};
use crate::net::{Fault, LayerStats, NetConfig, NetStats};
use serde::Serialize;

/// Variances below this are "vanished": the values (~1e-30) are within a few
/// factors of 2^-100 of f32's subnormal range, where devices may flush to zero.
pub const UNDERFLOW: f64 = 1e-60;
/// False-alarm rate of each theory test over a whole run.
pub const ALPHA: f64 = 1e-3;
/// A layer's theory band wider than this in |ln ratio| (a factor of 10 either
/// way) cannot tell a right variance from a wrong one, and the linear
/// propagation behind it stops being accurate: such layers are `n/a`, not
/// checked (the weight test still covers them).
pub const THEORY_BAND_LIMIT: f64 = std::f64::consts::LN_10;

/// A layer against the CPU reference (JSON: the lower-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CpuStatus {
    /// Every compared statistic within its tolerance.
    #[serde(rename = "match")]
    Match,
    /// At least one statistic outside its tolerance.
    #[serde(rename = "mismatch")]
    Mismatch,
    /// Beyond the rounding model's reach (chaotic amplification): not compared.
    #[serde(rename = "chaotic")]
    Chaotic,
    /// Below [`UNDERFLOW`] on both sides: not compared.
    #[serde(rename = "vanished")]
    Vanished,
    /// Beyond 1 / [`UNDERFLOW`] or non-finite on both sides: not compared.
    #[serde(rename = "overflow")]
    Overflow,
    /// No reference ran (CPU backend, `--no-verify`).
    #[serde(rename = "not compared")]
    NotCompared,
}

impl CpuStatus {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuStatus::Match => "match",
            CpuStatus::Mismatch => "mismatch",
            CpuStatus::Chaotic => "chaotic",
            CpuStatus::Vanished => "vanished",
            CpuStatus::Overflow => "overflow",
            CpuStatus::NotCompared => "not compared",
        }
    }

    /// Whether the layer's statistics were compared (matching or not).
    pub fn compared(self) -> bool {
        matches!(self, CpuStatus::Match | CpuStatus::Mismatch)
    }
}

impl std::fmt::Display for CpuStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A layer against the mean-field theory (JSON: `match`, `deviates`, `n/a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TheoryStatus {
    /// Within the finite-width band.
    #[serde(rename = "match")]
    Match,
    /// Outside it.
    #[serde(rename = "deviates")]
    Deviates,
    /// Not checked: vanished, overflowed, or a band wider than
    /// [`THEORY_BAND_LIMIT`].
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl TheoryStatus {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TheoryStatus::Match => "match",
            TheoryStatus::Deviates => "deviates",
            TheoryStatus::NotApplicable => "n/a",
        }
    }
}

impl std::fmt::Display for TheoryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
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
    /// The CPU reference's ||dW_l||_F.
    pub cpu_grad_w_norm: Option<f64>,
    /// Fraction of units zero for the whole batch.
    pub dead_frac: f64,
    /// Fraction of exactly-zero activations.
    pub zero_frac: f64,
    /// Fraction of saturated activations.
    pub saturated_frac: f64,
    /// NaN/Inf in z, a or delta.
    pub nonfinite: u64,
    /// Tolerances applied vs the CPU (null when not compared).
    pub cpu_tolerance: Option<LayerTolerance>,
    /// Against the CPU reference.
    pub cpu_check: CpuStatus,
    /// Whether the backward statistics were compared (false where only the
    /// forward ones were: a tolerance beyond the chaos limit, an overflowed
    /// layer above, or Gram entries near f32's subnormal range).
    pub cpu_backward_compared: bool,
    /// Against the theory.
    pub theory_check: TheoryStatus,
}

/// Verdict of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunVerdict {
    /// Every compared layer matches the CPU reference; `None` when there was
    /// no comparison (CPU backend, `--no-verify`) or no layer was comparable.
    pub cpu_match: Option<bool>,
    /// Every checked layer matches the theory and the weight test passed.
    pub theory_match: bool,
    /// Largest relative GPU-vs-CPU difference over the compared statistics
    /// (`None` when nothing was compared).
    pub max_rel_err_cpu: Option<f64>,
    /// Layers compared with the CPU reference.
    pub compared_layers: usize,
    /// Layers not compared because of chaotic amplification.
    pub chaotic_layers: usize,
    /// Layers whose backward statistics were not compared (chaotic backward).
    pub backward_not_compared: usize,
    /// First layer with non-finite values (the signal overflowed), if any.
    pub overflow_at: Option<usize>,
    /// The one-step weight test (None if no layer was in range).
    pub weight_test: Option<WeightTest>,
    /// The device calibration behind the tolerances (GPU runs with verification).
    pub calibration: Option<Calibration>,
    /// One line per failure.
    pub failures: Vec<String>,
}

impl RunVerdict {
    /// No check that ran failed.
    pub fn passed(&self) -> bool {
        self.cpu_match != Some(false) && self.theory_match
    }

    /// `ok`, `FAIL` or `not compared` for the CPU-reference check.
    pub fn cpu_word(&self) -> &'static str {
        match self.cpu_match {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "not compared",
        }
    }
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

/// Runs `cfg` on `backend`, and on the CPU reference too when it is a GPU.
pub fn run(backend: &Backend, cfg: &NetConfig, verify: bool) -> Result<RunReport> {
    run_with_input(backend, cfg, None, verify)
}

/// [`run`] with the inputs given (`batch x n_0`, row-major) instead of drawn
/// from the RNG. The theory then uses their measured mean square and kurtosis.
pub fn run_with_input(
    backend: &Backend,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
) -> Result<RunReport> {
    run_with_fault(backend, cfg, input, verify, &Fault::default())
}

/// [`run_with_input`] with a defect injected into the device under test
/// (never the reference): how the tests prove that the verdicts catch errors.
#[doc(hidden)]
pub fn run_with_fault(
    backend: &Backend,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
    fault: &Fault,
) -> Result<RunReport> {
    run_inner(backend, cfg, input, verify, fault, None)
}

/// [`run_with_input`], reporting progress (the device's pass, then the CPU
/// reference) on `progress`.
pub fn run_with_progress(
    backend: &Backend,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
    progress: &crate::progress::Progress,
) -> Result<RunReport> {
    run_inner(
        backend,
        cfg,
        input,
        verify,
        &Fault::default(),
        Some(progress),
    )
}

fn run_inner(
    backend: &Backend,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
    fault: &Fault,
    progress: Option<&crate::progress::Progress>,
) -> Result<RunReport> {
    let s = cfg.sigma_w2()?;
    let (measured, reference, calibration) = match backend {
        Backend::Gpu(gpu) => {
            let (g, k) = (gpu.generator(), &*gpu.kernels(cfg.act)?);
            let m = crate::gpu::network::run_with_fault(g, k, cfg, input, fault, progress)?;
            if verify {
                let cal = crate::gpu::network::calibrate(g, k, cfg, input.is_none())?;
                if let Some(p) = progress {
                    p.stage("CPU reference");
                }
                let r = crate::net::reference::run_observed(
                    cfg,
                    input,
                    &Fault::default(),
                    progress,
                    &mut |_, _| {},
                )?;
                (m, Some(r), Some(cal))
            } else {
                (m, None, None)
            }
        }
        Backend::Cpu => (
            crate::net::reference::run_observed(cfg, input, fault, progress, &mut |_, _| {})?,
            None,
            None,
        ),
    };
    if let Some(p) = progress {
        p.finish();
    }
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
    let sigma_b2 = cfg.bias_std * cfg.bias_std;
    let th = theory::predict(
        cfg.act,
        &s,
        &cfg.widths,
        measured.input.mean_sq,
        k_in,
        sigma_b2,
    );
    let checked = reference.as_ref().zip(calibration.as_ref());
    Ok(assemble(cfg, &s, &measured, checked, &th))
}

/// The statistics compared with the CPU reference per layer.
const COMPARED_STATISTICS: usize = 7;

/// One layer against the CPU reference: (status, tolerances, backward
/// compared, largest relative difference); failures are appended.
fn compare_layer(
    m: &LayerStats,
    c: &LayerStats,
    tol: &LayerTolerance,
    failures: &mut Vec<String>,
) -> (CpuStatus, bool, Option<f64>) {
    let nonfinite = |t: &LayerStats| t.pre.nonfinite + t.post.nonfinite + t.grad.nonfinite;
    if m.pre.var < UNDERFLOW && c.pre.var < UNDERFLOW && nonfinite(m) == 0 {
        return (CpuStatus::Vanished, false, None);
    }
    // Near f32's range the GEMMs overflow partially, at places that depend on
    // summation order: both overflowing is agreement.
    let blown = |t: &LayerStats| nonfinite(t) > 0 || t.pre.var > 1.0 / UNDERFLOW;
    if blown(m) && blown(c) {
        return (CpuStatus::Overflow, false, None);
    }
    if !tol.forward {
        return (CpuStatus::Chaotic, false, None);
    }
    let mut checks = vec![
        ("Var(z)", m.pre.var, c.pre.var, tol.pre_var),
        ("Var(a)", m.post.var, c.post.var, tol.post_var),
        ("E[a^2]", m.post.mean_sq, c.post.mean_sq, tol.post_mean_sq),
    ];
    if tol.backward {
        checks.push(("Var(delta)", m.grad.var, c.grad.var, tol.grad_var));
        checks.push(("||dW||", m.grad_w_norm, c.grad_w_norm, tol.grad_w_norm));
    }
    let mut ok = true;
    let mut max_rel: Option<f64> = None;
    for (name, a, b, t) in checks {
        let bad = if !a.is_finite() || !b.is_finite() {
            a.is_finite() != b.is_finite()
        } else if a.abs() < UNDERFLOW && b.abs() < UNDERFLOW {
            false
        } else {
            let r = rel(a, b);
            max_rel = Some(max_rel.map_or(r, |x: f64| x.max(r)));
            r > t
        };
        if bad {
            ok = false;
            failures.push(format!(
                "layer {}: {name} = {a:.6e} on the device but {b:.6e} in the CPU reference \
                 (relative difference {:.2e}, tolerance {t:.2e})",
                m.layer,
                rel(a, b)
            ));
        }
    }
    for (name, a, b, t) in [
        (
            "dead-unit fraction",
            m.dead_frac,
            c.dead_frac,
            tol.dead_frac,
        ),
        (
            "saturated fraction",
            m.post.saturated_frac,
            c.post.saturated_frac,
            tol.saturated_frac,
        ),
    ] {
        if (a - b).abs() > t {
            ok = false;
            failures.push(format!(
                "layer {}: {name} {a:.6} vs CPU {b:.6} (tolerance {t:.1e})",
                m.layer
            ));
        }
    }
    let status = if ok {
        CpuStatus::Match
    } else {
        CpuStatus::Mismatch
    };
    (status, tol.backward, max_rel)
}

/// One layer against the theory's band.
fn theory_layer(
    ls: &LayerStats,
    t: &LayerTheory,
    z: f64,
    failures: &mut Vec<String>,
) -> TheoryStatus {
    if ls.pre.nonfinite > 0
        || !(UNDERFLOW..1.0 / UNDERFLOW).contains(&t.pre_var)
        || !(UNDERFLOW..1.0 / UNDERFLOW).contains(&ls.pre.var)
    {
        return TheoryStatus::NotApplicable;
    }
    if z * t.log_sd > THEORY_BAND_LIMIT {
        return TheoryStatus::NotApplicable;
    }
    let dev = (ls.pre.var / t.pre_var).ln().abs();
    // 1e-6: the quadrature's own error.
    if dev <= z * t.log_sd + 1e-6 {
        TheoryStatus::Match
    } else {
        failures.push(format!(
            "layer {}: Var(z) = {:.4e} but theory predicts {:.4e} (|ln ratio| {:.3} > {:.3})",
            ls.layer,
            ls.pre.var,
            t.pre_var,
            dev,
            z * t.log_sd
        ));
        TheoryStatus::Deviates
    }
}

/// Per layer: whether any layer at or above it left f32's range in either
/// run. The backward pass starts at layer L, so delta_l then went through
/// values whose rounding (which entries overflowed) differs: its statistics
/// are not compared.
fn upstream_blown(m: &NetStats, cpu: Option<&NetStats>) -> Vec<bool> {
    let blown =
        |t: &LayerStats| t.pre.nonfinite + t.post.nonfinite > 0 || t.pre.var > 1.0 / UNDERFLOW;
    let depth = m.layers.len();
    let mut up = vec![false; depth + 1];
    for i in (0..depth).rev() {
        let here = blown(&m.layers[i]) || cpu.is_some_and(|c| blown(&c.layers[i]));
        up[i] = up[i + 1] || here;
    }
    up
}

/// The failure line of a weight test that did not pass.
fn weight_failure(w: &WeightTest) -> String {
    format!(
        "weight test: each layer's variance follows from the layer below with a mean \
         excess of {:+.2}% +- {:.2}% over {} layers (|T| = {:.2} > {:.2}): the weights' \
         variance is not the scheme's",
        100.0 * w.mean_excess,
        100.0 * w.std_error,
        w.layers,
        w.z.abs(),
        w.critical
    )
}

/// Cosine similarity of the first two inputs after the last layer.
fn final_cosine(m: &NetStats, b: usize) -> Option<f64> {
    (b >= 2 && m.final_gram.len() >= b * b)
        .then(|| {
            let g = &m.final_gram;
            g[1] / (g[0] * g[b + 1]).sqrt()
        })
        .filter(|c| c.is_finite())
}

impl LayerReport {
    /// The measured statistics, the theory and the CPU reference's values of
    /// one layer (the checks not yet filled in).
    fn measured(ls: &LayerStats, t: &LayerTheory, cpu: Option<&LayerStats>) -> LayerReport {
        LayerReport {
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
            cpu_pre_var: cpu.map(|c| c.pre.var),
            cpu_grad_var: cpu.map(|c| c.grad.var),
            cpu_grad_w_norm: cpu.map(|c| c.grad_w_norm),
            dead_frac: ls.dead_frac,
            zero_frac: ls.post.zero_frac,
            saturated_frac: ls.post.saturated_frac,
            nonfinite: ls.pre.nonfinite + ls.post.nonfinite + ls.grad.nonfinite,
            cpu_tolerance: None,
            cpu_check: CpuStatus::NotCompared,
            cpu_backward_compared: false,
            theory_check: TheoryStatus::NotApplicable,
        }
    }
}

fn assemble(
    cfg: &NetConfig,
    s: &[f64],
    m: &NetStats,
    checked: Option<(&NetStats, &Calibration)>,
    th: &[LayerTheory],
) -> RunReport {
    let depth = cfg.depth();
    let z_theory = crate::stats::normal_quantile(1.0 - ALPHA / (2.0 * depth as f64));
    let z_cpu = tolerance::quantile(tolerance::ALPHA, COMPARED_STATISTICS * depth);
    let tols = checked.map(|(c, cal)| tolerance::network(cfg, th, c, cal, z_cpu));
    let mut failures = Vec::new();
    let mut max_rel: Option<f64> = None;
    let (mut compared, mut chaotic, mut back_skipped) = (0usize, 0usize, 0usize);
    let mut layers = Vec::with_capacity(depth);
    let upstream_blown = upstream_blown(m, checked.map(|(c, _)| c));
    for (i, ls) in m.layers.iter().enumerate() {
        let cpu = checked.map(|(c, _)| &c.layers[i]);
        let tol = tols.as_ref().map(|t| LayerTolerance {
            backward: t[i].backward && !upstream_blown[i],
            ..t[i]
        });
        let (cpu_check, backward, r) = match (cpu, &tol) {
            (Some(c), Some(t)) => compare_layer(ls, c, t, &mut failures),
            _ => (CpuStatus::NotCompared, false, None),
        };
        if let Some(r) = r {
            max_rel = Some(max_rel.map_or(r, |x: f64| x.max(r)));
        }
        if cpu_check.compared() {
            compared += 1;
            back_skipped += usize::from(!backward);
        }
        chaotic += usize::from(cpu_check == CpuStatus::Chaotic);
        let theory_check = theory_layer(ls, &th[i], z_theory, &mut failures);
        layers.push(LayerReport {
            cpu_tolerance: tol.filter(|_| cpu_check.compared()),
            cpu_check,
            cpu_backward_compared: backward,
            theory_check,
            ..LayerReport::measured(ls, &th[i], cpu)
        });
    }
    let overflow_at = m
        .layers
        .iter()
        .find(|l| l.pre.nonfinite + l.post.nonfinite > 0)
        .map(|l| l.layer);
    let weight_test =
        theory::weight_test(s, &cfg.widths, cfg.batch, m.input.mean_sq, &m.layers, ALPHA);
    if let Some(w) = weight_test.filter(|w| !w.pass) {
        failures.push(weight_failure(&w));
    }
    let cpu_match = (checked.is_some() && compared > 0)
        .then(|| !layers.iter().any(|l| l.cpu_check == CpuStatus::Mismatch));
    let theory_match = !layers
        .iter()
        .any(|l| l.theory_check == TheoryStatus::Deviates)
        && weight_test.is_none_or(|w| w.pass);
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
        cpu_seconds: checked.map(|(c, _)| c.seconds),
        input_var: m.input.var,
        layers,
        final_cosine: final_cosine(m, cfg.batch as usize),
        final_gram: m.final_gram.clone(),
        verdict: RunVerdict {
            cpu_match,
            theory_match,
            max_rel_err_cpu: max_rel,
            compared_layers: compared,
            chaotic_layers: chaotic,
            backward_not_compared: back_skipped,
            overflow_at,
            weight_test,
            calibration: checked.map(|(_, c)| *c),
            failures,
        },
    }
}
