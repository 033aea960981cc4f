//! Drawing one weight tensor end to end: generation on a backend, streaming
//! statistics, verification against the CPU reference and the analytic
//! distribution, and optional `.npy` output. Memory use is bounded by the
//! chunk size, whatever the tensor's size.

use crate::backend::{Backend, DeviceInfo};
use crate::error::Result;
use crate::gpu::{GenOptions, GenRequest, Generator, Kernel};
pub use crate::init::block::Block;
use crate::init::scheme::{InitSpec, Target};
use crate::io::npy::NpyWriter;
use crate::io::output::Destination;
use crate::rng::cpu::{self, Comparison};
use crate::rng::dist::Dist;
use crate::stats::{self, KsTest, Moments, VarianceInterval};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Options of [`draw`].
#[derive(Debug, Clone)]
pub struct DrawOptions {
    /// Seed.
    pub seed: u64,
    /// Tensor id (e.g. the layer index).
    pub tensor_id: u32,
    /// GPU kernel options (chunking, workgroup size).
    pub gen: GenOptions,
    /// Compare GPU output with the CPU reference (values and raw bits).
    pub verify: bool,
    /// False-alarm rate of each statistical test.
    pub alpha: f64,
    /// Most elements the KS test sorts (a deterministic strided subsample).
    pub ks_max: u64,
    /// Write a `.npy` here (validated by the caller before any work).
    pub out: Option<Destination>,
    /// Report progress here (long tensors).
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
    /// Generate only this block of the tensor (rows x columns of its
    /// `[dim 0, the rest]` matrix view); `None` = the whole tensor.
    pub block: Option<Block>,
}

impl Default for DrawOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            tensor_id: 0,
            gen: GenOptions::default(),
            verify: true,
            alpha: 1e-3,
            ks_max: 1 << 22,
            out: None,
            progress: None,
            block: None,
        }
    }
}

/// Sample statistics of the generated tensor.
#[derive(Debug, Clone, Serialize)]
pub struct SampleStats {
    /// Mean.
    pub mean: f64,
    /// Unbiased variance.
    pub variance: f64,
    /// Square root of the variance.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Excess kurtosis.
    pub excess_kurtosis: f64,
    /// The distribution's excess kurtosis.
    pub expected_excess_kurtosis: f64,
    /// NaN/Inf count (must be 0).
    pub nonfinite: u64,
}

/// z-test of the mean against 0.
#[derive(Debug, Clone, Serialize)]
pub struct MeanTest {
    /// mean / (target std / sqrt n).
    pub z: f64,
    /// Two-sided critical |z| at alpha.
    pub critical: f64,
    /// |z| <= critical.
    pub pass: bool,
}

/// GPU output against the CPU reference.
#[derive(Debug, Clone, Serialize)]
pub struct CpuCheck {
    /// Float values: largest difference and elements beyond the derived bound.
    pub values: Comparison,
    /// Raw Philox words compared (all elements).
    pub bits_compared: u64,
    /// Raw words that differ (must be 0: the integer path is exact).
    pub bits_mismatched: u64,
}

/// Pass/fail and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Every check that ran passed.
    pub pass: bool,
    /// One line per failed check.
    pub failures: Vec<String>,
    /// One line per check that did not run, with the reason.
    pub not_checked: Vec<String>,
}

/// Why the statistical tests need at least two elements.
pub(crate) const TOO_FEW: &str = "needs at least 2 elements";

/// Everything `deepinit init` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scheme name.
    pub scheme: String,
    /// Distribution.
    pub dist: Dist,
    /// Shape of the whole tensor (the fans come from it).
    pub shape: Vec<u64>,
    /// The block generated, `[[row0, row1], [col0, col1]]` of the matrix
    /// view; null for the whole tensor.
    pub block: Option<[[u64; 2]; 2]>,
    /// Shape of what was generated (the block's, or the tensor's).
    pub out_shape: Vec<u64>,
    /// Element count (of the block, when one was asked for).
    pub elements: u64,
    /// Seed.
    pub seed: u64,
    /// Tensor id.
    pub tensor_id: u32,
    /// Variance multiplier.
    pub multiplier: f64,
    /// Fans and target variance.
    pub target: Target,
    /// The device that generated the tensor.
    pub device: DeviceInfo,
    /// Sample statistics.
    pub sample: SampleStats,
    /// Mean test (null with fewer than 2 elements).
    pub mean_test: Option<MeanTest>,
    /// Confidence interval for the variance (null with fewer than 2 elements).
    pub variance_ci: Option<VarianceInterval>,
    /// Target variance inside the interval (null when not computed).
    pub target_in_ci: Option<bool>,
    /// KS test against the analytic CDF (null with fewer than 2 elements).
    pub ks: Option<KsTest>,
    /// CPU-reference comparison (GPU backend with verification only).
    pub cpu_check: Option<CpuCheck>,
    /// The written file.
    pub out: Option<PathBuf>,
    /// Wall-clock seconds for generation plus the streaming checks.
    pub seconds: f64,
    /// Overall verdict.
    pub verdict: Verdict,
}

/// Generates the tensor `spec` describes and checks it. Nothing is written
/// unless every step succeeds (the `.npy` is renamed into place at the end).
pub fn draw(spec: &InitSpec, backend: &Backend, opts: &DrawOptions) -> Result<Report> {
    draw_with(spec, backend, opts, |_, _| Ok(()))
}

/// [`draw`], also handing every chunk of values to `sink(offset, values)`
/// (offsets into what is generated: the block's, or the tensor's) as it
/// streams through the checks.
pub(crate) fn draw_with(
    spec: &InitSpec,
    backend: &Backend,
    opts: &DrawOptions,
    mut sink: impl FnMut(u64, &[f32]) -> Result<()>,
) -> Result<Report> {
    let target = spec.target()?;
    let whole = Block::whole(&spec.shape().0);
    let block = opts.block.clone().unwrap_or_else(|| whole.clone());
    block.check_inside(&whole)?;
    let out_shape = block.shape(&spec.shape().0);
    let n = block.len();
    let scale = spec.dist().kernel_scale(target.std);
    let mut writer = match &opts.out {
        Some(dest) => Some(NpyWriter::create(dest, &out_shape)?),
        None => None,
    };
    let mut moments = Moments::default();
    let mut cmp = Comparison::default();
    // Odd stride, so a subsample visits all four lanes of the Philox blocks.
    let stride = (n.div_ceil(opts.ks_max.max(1)).max(1)) | 1;
    let mut sample: Vec<f32> = Vec::with_capacity(n.div_ceil(stride) as usize);
    let verify_gpu = opts.verify && matches!(backend, Backend::Gpu(_));
    let start = Instant::now();
    // `off`: position in the output; `element`: index in the whole tensor.
    let mut consume = |off: u64, element: u64, values: &[f32]| -> Result<()> {
        moments = moments.merge(Moments::of(values));
        let first = (stride - off % stride) % stride;
        sample.extend(values.iter().skip(first as usize).step_by(stride as usize));
        if verify_gpu {
            cmp = cmp.merge(cpu::compare(
                spec.dist(),
                scale,
                opts.seed,
                opts.tensor_id,
                element,
                values,
            ));
        }
        if let Some(w) = writer.as_mut() {
            w.write(values)?;
        }
        sink(off, values)?;
        if let Some(p) = &opts.progress {
            p.update((off + values.len() as u64) as f64, n as f64);
        }
        Ok(())
    };
    let requests = block.requests(spec.dist(), opts.seed, opts.tensor_id, scale);
    let mut backend_info = backend.info();
    let mut base = 0u64;
    for req in &requests {
        backend_info = backend.generate(req, &opts.gen, |off, v| {
            consume(base + off, req.start + off, v)
        })?;
        base += req.count;
    }
    let cpu_check = match backend {
        Backend::Gpu(g) if verify_gpu => Some(bits_check(g.generator(), &requests, opts, cmp)?),
        _ => None,
    };
    let seconds = start.elapsed().as_secs_f64();

    let sample_stats = SampleStats::of(&moments, spec.dist());
    let (mean_test, variance_ci, ks) =
        sample_tests(&moments, &mut sample, spec, &target, opts.alpha);
    let target_in_ci = variance_ci.as_ref().map(|ci| ci.contains(target.variance));
    let mut report = Report {
        scheme: spec.scheme().name(),
        dist: spec.dist(),
        shape: spec.shape().0.clone(),
        block: opts.block.as_ref().map(Block::corners),
        out_shape,
        elements: n,
        seed: opts.seed,
        tensor_id: opts.tensor_id,
        multiplier: spec.multiplier(),
        target,
        device: backend_info,
        sample: sample_stats,
        mean_test,
        variance_ci,
        target_in_ci,
        ks,
        cpu_check,
        out: None,
        seconds,
        // Filled in by `judge`.
        verdict: Verdict::default(),
    };
    judge(
        &mut report,
        spec,
        matches!(backend, Backend::Gpu(_)) && !opts.verify,
    );
    report.out = match writer {
        Some(w) if report.verdict.pass => Some(w.finish()?),
        // A tensor that failed verification is not written (the writer's Drop
        // removes the temporary file).
        _ => None,
    };
    Ok(report)
}

impl SampleStats {
    fn of(m: &Moments, dist: Dist) -> SampleStats {
        let variance = m.variance();
        SampleStats {
            mean: m.mean,
            variance,
            std: variance.sqrt(),
            min: m.min,
            max: m.max,
            excess_kurtosis: m.excess_kurtosis(),
            expected_excess_kurtosis: dist.excess_kurtosis(),
            nonfinite: m.nonfinite,
        }
    }
}

/// Compares the device's raw Philox words of every generated range with the CPU's.
fn bits_check(
    g: &Generator,
    requests: &[GenRequest],
    opts: &DrawOptions,
    values: Comparison,
) -> Result<CpuCheck> {
    let total: u64 = requests.iter().map(|r| r.count).sum();
    let mut mismatched = 0u64;
    if let Some(p) = &opts.progress {
        p.stage("comparing the raw Philox words with the CPU reference");
    }
    let mut done = 0u64;
    for req in requests {
        let bits = GenRequest {
            kernel: Kernel::Bits,
            ..*req
        };
        g.generate(&bits, &opts.gen, |off, words| {
            mismatched +=
                cpu::count_word_mismatches(opts.seed, opts.tensor_id, req.start + off, words);
            if let Some(p) = &opts.progress {
                p.update((done + off + words.len() as u64) as f64, total as f64);
            }
            Ok(())
        })?;
        done += req.count;
    }
    Ok(CpuCheck {
        values,
        bits_compared: total,
        bits_mismatched: mismatched,
    })
}

/// The mean test, the variance interval and the KS test (none with fewer
/// than 2 elements).
fn sample_tests(
    moments: &Moments,
    sample: &mut [f32],
    spec: &InitSpec,
    target: &Target,
    alpha: f64,
) -> (Option<MeanTest>, Option<VarianceInterval>, Option<KsTest>) {
    if moments.n < 2 {
        return (None, None, None);
    }
    let zc = stats::normal_quantile(1.0 - alpha / 2.0);
    let z = moments.mean / (target.std / (moments.n as f64).sqrt());
    let mean_test = MeanTest {
        z,
        critical: zc,
        pass: z.abs() <= zc,
    };
    let kurt = spec.dist().excess_kurtosis();
    let ci = stats::variance_interval(moments.n, moments.variance(), kurt, 1.0 - alpha);
    let ks = stats::ks_one_sample(sample, |x| spec.dist().cdf(target.std, x), alpha);
    (Some(mean_test), Some(ci), Some(ks))
}

/// Fills the verdict from the report's checks: every failure, and every check
/// that did not run with its reason (`unverified`: a GPU run with
/// `--no-verify`).
fn judge(r: &mut Report, spec: &InitSpec, unverified: bool) {
    let mut failures = Vec::new();
    let mut not_checked = Vec::new();
    let m = &r.sample;
    if m.nonfinite > 0 {
        failures.push(format!("{} non-finite values", m.nonfinite));
    }
    if r.mean_test.is_none() {
        for what in ["mean test", "variance interval", "KS test"] {
            not_checked.push(format!("{what}: {TOO_FEW} (the tensor has {})", r.elements));
        }
    }
    if let Some(t) = r.mean_test.as_ref().filter(|t| !t.pass) {
        failures.push(format!("mean z = {:.3} beyond +-{:.3}", t.z, t.critical));
    }
    if let (Some(false), Some(ci)) = (r.target_in_ci, &r.variance_ci) {
        failures.push(format!(
            "target variance {:.6e} outside the {:.1}% interval [{:.6e}, {:.6e}]",
            r.target.variance,
            100.0 * ci.level,
            ci.lo,
            ci.hi
        ));
    }
    if let Some(k) = r.ks.as_ref().filter(|k| !k.pass) {
        failures.push(format!(
            "KS D = {:.5} above the critical {:.5}",
            k.d, k.critical
        ));
    }
    if unverified {
        not_checked.push("GPU vs CPU reference: not compared (--no-verify)".into());
    }
    let bound = spec.dist().max_abs_in_std() * r.target.std * (1.0 + 1e-5);
    let finite = r.elements.saturating_sub(m.nonfinite);
    if finite > 0 && (m.max > bound || m.min < -bound) {
        failures.push(format!(
            "values outside the distribution's support +-{bound:.6e}"
        ));
    }
    if let Some(c) = &r.cpu_check {
        if c.bits_mismatched > 0 {
            failures.push(format!(
                "{} raw Philox words differ from the CPU",
                c.bits_mismatched
            ));
        }
        if !c.values.identical() {
            failures.push(format!(
                "{} of {} values differ from the CPU reference (first at element {})",
                c.values.mismatched,
                c.values.compared,
                c.values.first_mismatch.unwrap_or(0)
            ));
        }
    }
    r.verdict = Verdict {
        pass: failures.is_empty(),
        failures,
        not_checked,
    };
}
