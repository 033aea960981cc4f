//! One network configuration run on the GPU (or the CPU backend), checked
//! against the CPU mirror of the device's arithmetic and against mean-field
//! theory, with a verdict.
//!
//! # The checks and their false-alarm rates
//!
//! **GPU vs CPU mirror** (GPU backend, unless `--no-verify`): the device's
//! arithmetic class is probed ([`crate::gpu::probe`]) and its activations
//! checked on a known-answer grid; the CPU then runs the same pass in that
//! arithmetic ([`crate::net::mirror`]), and every statistics record, dead-unit
//! counter and Gram entry of every layer, forward and backward, must be
//! *equal*, bit for bit (NaN as a class). There is no tolerance: a
//! difference fails and names the first differing layer and statistic. A
//! device that conforms to no class cannot be verified, and says so: the
//! check fails rather than passing unchecked.
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
use crate::net::mirror::{self, Difference};
use crate::net::theory::{self, LayerTheory, WeightTest};
use crate::net::{Fault, LayerStats, NetConfig, NetStats};
use serde::Serialize;

/// Variances below this are "vanished": the values (~1e-30) are within a few
/// factors of 2^-100 of f32's subnormal range, where devices may flush to zero.
pub(crate) const UNDERFLOW: f64 = 1e-60;
/// False-alarm rate of each theory test over a whole run.
pub const ALPHA: f64 = 1e-3;
/// A layer's theory band wider than this in |ln ratio| (a factor of 10 either
/// way) cannot tell a right variance from a wrong one, and the linear
/// propagation behind it stops being accurate: such layers are `n/a`, not
/// checked (the weight test still covers them).
pub const THEORY_BAND_LIMIT: f64 = std::f64::consts::LN_10;

/// A layer against the CPU mirror (JSON: the lower-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CpuStatus {
    /// Every statistic of the layer, forward and backward, bit-identical.
    #[serde(rename = "match")]
    Match,
    /// At least one statistic differs.
    #[serde(rename = "mismatch")]
    Mismatch,
    /// No mirror ran (CPU backend, `--no-verify`, or a device of no class).
    #[serde(rename = "not compared")]
    NotCompared,
}

impl CpuStatus {
    /// The name used in tables and JSON.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CpuStatus::Match => "match",
            CpuStatus::Mismatch => "mismatch",
            CpuStatus::NotCompared => "not compared",
        }
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
    pub(crate) fn as_str(self) -> &'static str {
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
    /// The CPU mirror's Var(z_l) (null when nothing was compared).
    pub cpu_pre_var: Option<f64>,
    /// The CPU mirror's Var(delta_l).
    pub cpu_grad_var: Option<f64>,
    /// The CPU mirror's ||dW_l||_F.
    pub cpu_grad_w_norm: Option<f64>,
    /// Fraction of units zero for the whole batch.
    pub dead_frac: f64,
    /// Fraction of exactly-zero activations.
    pub zero_frac: f64,
    /// Fraction of saturated activations.
    pub saturated_frac: f64,
    /// NaN/Inf in z, a or delta.
    pub nonfinite: u64,
    /// Against the CPU mirror: every statistic, forward and backward.
    pub cpu_check: CpuStatus,
    /// Against the theory.
    pub theory_check: TheoryStatus,
}

/// Verdict of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunVerdict {
    /// The device's raw results equal the CPU mirror's; `None` when no
    /// comparison was asked for (CPU backend, `--no-verify`). A device that
    /// conforms to no arithmetic class gives `Some(false)`: asked for, not done.
    pub cpu_match: Option<bool>,
    /// Every checked layer matches the theory and the weight test passed.
    pub theory_match: bool,
    /// The arithmetic class the mirror ran in (`two-rounding fma` or `fused
    /// fma`), or why there was none.
    pub arithmetic: Option<String>,
    /// Layers compared with the CPU mirror.
    pub compared_layers: usize,
    /// Words compared: every statistics record word, dead-unit counter and
    /// Gram entry of the pass.
    pub compared_words: u64,
    /// The first difference in the order the pass computes, if any.
    pub first_difference: Option<Difference>,
    /// Layers whose Var(z) was checked against the theory (the others are n/a).
    pub theory_layers: usize,
    /// Of those, the layers whose Var(z) deviates from it.
    pub theory_deviations: usize,
    /// Layers in the network.
    pub layers: usize,
    /// First layer with non-finite values (the signal overflowed), if any.
    pub overflow_at: Option<usize>,
    /// The one-step weight test (None if no layer was in range).
    pub weight_test: Option<WeightTest>,
    /// Why there is no weight test, when there is none.
    pub weight_test_na: Option<String>,
    /// One line per failure.
    pub failures: Vec<String>,
}

impl RunVerdict {
    /// No check that ran failed.
    pub fn passed(&self) -> bool {
        self.cpu_match != Some(false) && self.theory_match
    }
}

/// What depth did to a run's signal: Var(a_L) / Var(a_1) within a factor
/// of 1000 either way, below it, above it, or past f32's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Within a factor of 1000 of the first layer's.
    Stable,
    /// Below 1/1000 of it.
    Vanishes,
    /// Above 1000 times it (or not finite).
    Explodes,
    /// Overflowed f32 at some layer.
    Overflows,
}

impl Fate {
    /// `stable`, `vanishes`, `explodes` or `overflows`.
    pub fn name(self) -> &'static str {
        match self {
            Fate::Stable => "stable",
            Fate::Vanishes => "vanishes",
            Fate::Explodes => "explodes",
            Fate::Overflows => "overflows",
        }
    }
}

impl RunReport {
    /// The signal's fate over the depth, from Var(a_L) / Var(a_1).
    pub fn fate(&self) -> Fate {
        if self.verdict.overflow_at.is_some() {
            return Fate::Overflows;
        }
        let (Some(first), Some(last)) = (self.layers.first(), self.layers.last()) else {
            return Fate::Stable;
        };
        let ratio = last.post_var / first.post_var;
        if !ratio.is_finite() || ratio > 1e3 {
            Fate::Explodes
        } else if ratio < 1e-3 {
            Fate::Vanishes
        } else {
            Fate::Stable
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
    /// Seconds of the CPU mirror.
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

/// Runs `cfg` on `backend`, and on the CPU reference too when it is a GPU.
pub fn run(backend: &Backend, cfg: &NetConfig, verify: bool) -> Result<RunReport> {
    run_with_input(backend, cfg, None, verify)
}

/// [`run`] with the inputs given (`batch x n_0`, row-major) instead of drawn
/// from the RNG. The theory then uses their measured mean square and kurtosis.
pub(crate) fn run_with_input(
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
pub(crate) fn run_with_progress(
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

/// The CPU mirror's verdict on a device pass.
struct Checked {
    /// The mirror's statistics (the report's `cpu_*` columns).
    stats: NetStats,
    /// The comparison of the raw results, with which layers matched.
    comparison: mirror::Comparison,
    /// The arithmetic class the mirror ran in.
    class: &'static str,
}

/// What verification of a device pass found.
enum Verification {
    /// Not asked for (`--no-verify`) or nothing to verify (CPU backend).
    None,
    /// The mirror ran and was compared.
    Done(Box<Checked>),
    /// Asked for, but the device conforms to no arithmetic class.
    Impossible(String),
}

/// Activation inputs of the known-answer check run before each verified pass:
/// both zeros, the series thresholds, the exp cut-off, NaN and infinities, and
/// a sweep of [-20, 20].
fn activation_kat_inputs() -> Vec<f32> {
    let mut v: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
    v.extend([
        0.0,
        -0.0,
        0.25,
        -0.25,
        0.031_25,
        -0.031_25,
        -42.5,
        42.5,
        -85.0,
        85.0,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    v
}

/// The device's activation on the known-answer inputs against the mirror's,
/// bit for bit (NaN as a class): `None` when they agree, else the first input
/// where they differ.
fn activation_kat<A: crate::act::arith::Arith>(
    k: &crate::net::kernels::NetKernels,
    act: crate::act::Activation,
) -> Result<Option<String>> {
    let xs = activation_kat_inputs();
    let (a, d) = crate::net::device::activation_values(k, &xs)?;
    let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    for (i, &x) in xs.iter().enumerate() {
        let (wa, wd) = (
            crate::act::arith::act::<A>(act, x),
            crate::act::arith::dact::<A>(act, x),
        );
        if !same(a[i], wa) || !same(d[i], wd) {
            return Ok(Some(format!(
                "its {} at {x:e} is ({:e}, {:e}) where the class gives ({wa:e}, {wd:e})",
                act.name(),
                a[i],
                d[i]
            )));
        }
    }
    Ok(None)
}

fn run_inner(
    backend: &Backend,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    verify: bool,
    fault: &Fault,
    progress: Option<&crate::progress::Progress>,
) -> Result<RunReport> {
    use crate::act::arith::{Fused, Unfused};
    use crate::gpu::probe::FmaMode;
    let s = cfg.sigma_w2()?;
    let (measured, verification) = match backend {
        Backend::Gpu(gpu) => {
            let (g, k) = (gpu.generator(), &*gpu.kernels(cfg.act)?);
            let (m, raw, layout) = crate::net::device::run_raw(g, k, cfg, input, fault, progress)?;
            let verification = if !verify {
                Verification::None
            } else {
                let model = g.context().float_model()?;
                let class = model.class();
                let kat = match class {
                    Some(FmaMode::Fused) => activation_kat::<Fused>(k, cfg.act)?,
                    Some(_) => activation_kat::<Unfused>(k, cfg.act)?,
                    None => None,
                };
                match (class, kat) {
                    (None, _) => Verification::Impossible(format!(
                        "{} conforms to no arithmetic class the CPU can mirror ({})",
                        g.context().adapter().name,
                        model.describe()
                    )),
                    (Some(_), Some(why)) => Verification::Impossible(format!(
                        "{} fails the activation known-answer check: {why}",
                        g.context().adapter().name
                    )),
                    (Some(mode), None) => {
                        if let Some(p) = progress {
                            p.stage("CPU mirror");
                        }
                        let start = std::time::Instant::now();
                        let cpu = mirror::run_in(mode, cfg, input, &layout)?;
                        let name = mirror::class_name(mode);
                        let comparison = mirror::compare(cfg, &layout, &raw, &cpu);
                        let mut stats = mirror::fold(cfg, &layout, &cpu)?;
                        stats.seconds = start.elapsed().as_secs_f64();
                        Verification::Done(Box::new(Checked {
                            stats,
                            comparison,
                            class: name,
                        }))
                    }
                }
            };
            (m, verification)
        }
        Backend::Cpu => (
            crate::net::reference::run_observed(cfg, input, fault, progress, &mut |_, _| {})?,
            Verification::None,
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
    Ok(assemble(cfg, &s, &measured, &verification, &th))
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
            cpu_check: CpuStatus::NotCompared,
            theory_check: TheoryStatus::NotApplicable,
        }
    }
}

fn assemble(
    cfg: &NetConfig,
    s: &[f64],
    m: &NetStats,
    verification: &Verification,
    th: &[LayerTheory],
) -> RunReport {
    let depth = cfg.depth();
    let z_theory = crate::stats::normal_quantile(1.0 - ALPHA / (2.0 * depth as f64));
    let mut failures = Vec::new();
    let checked = match verification {
        Verification::Done(c) => Some(&**c),
        _ => None,
    };
    let mut layers = Vec::with_capacity(depth);
    for (i, ls) in m.layers.iter().enumerate() {
        let cpu = checked.map(|c| &c.stats.layers[i]);
        let cpu_check = match checked {
            Some(c) if c.comparison.layer_equal.get(i) == Some(&true) => CpuStatus::Match,
            Some(_) => CpuStatus::Mismatch,
            None => CpuStatus::NotCompared,
        };
        let theory_check = theory_layer(ls, &th[i], z_theory, &mut failures);
        layers.push(LayerReport {
            cpu_check,
            theory_check,
            ..LayerReport::measured(ls, &th[i], cpu)
        });
    }
    let cpu_match = match verification {
        Verification::None => None,
        Verification::Done(c) => {
            if let Some(d) = &c.comparison.first_difference {
                failures.insert(
                    0,
                    format!(
                        "layer {}: {} differs from the CPU mirror (device bits {:08x}, mirror {:08x}); \
                         {} of {} layers bit-identical",
                        d.layer,
                        d.statistic,
                        d.device,
                        d.mirror,
                        c.comparison.layer_equal.iter().filter(|&&e| e).count(),
                        depth
                    ),
                );
            }
            Some(c.comparison.first_difference.is_none())
        }
        Verification::Impossible(why) => {
            failures.insert(
                0,
                format!("GPU vs CPU: not verified: {why}; run with --backend cpu, or --no-verify"),
            );
            Some(false)
        }
    };
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
    let theory_match = !layers
        .iter()
        .any(|l| l.theory_check == TheoryStatus::Deviates)
        && weight_test.is_none_or(|w| w.pass);
    let theory_layers = layers
        .iter()
        .filter(|l| l.theory_check != TheoryStatus::NotApplicable)
        .count();
    let theory_deviations = layers
        .iter()
        .filter(|l| l.theory_check == TheoryStatus::Deviates)
        .count();
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
        cpu_seconds: checked.map(|c| c.stats.seconds),
        input_var: m.input.var,
        layers,
        final_cosine: final_cosine(m, cfg.batch as usize),
        final_gram: m.final_gram.clone(),
        verdict: RunVerdict {
            cpu_match,
            theory_match,
            arithmetic: match verification {
                Verification::Done(c) => Some(c.class.to_string()),
                Verification::Impossible(why) => Some(format!("none: {why}")),
                Verification::None => None,
            },
            compared_layers: checked.map_or(0, |c| c.comparison.layers),
            compared_words: checked.map_or(0, |c| c.comparison.words),
            first_difference: checked.and_then(|c| c.comparison.first_difference.clone()),
            theory_layers,
            theory_deviations,
            layers: depth,
            overflow_at,
            weight_test,
            weight_test_na: weight_test.is_none().then(|| {
                if cfg.batch < 2 {
                    "it needs a batch of at least 2 (each unit is centred over the batch, which \
                     leaves nothing of one sample)"
                        .to_string()
                } else {
                    "no layer was in f32's range with a batch spread wider than its rounding"
                        .to_string()
                }
            }),
            failures,
        },
    }
}
