//! `deepinit init`: one tensor, generated, verified, optionally written.

use super::*;
use crate::backend::DeviceKind;
use crate::gpu::{self, GenOptions};
use crate::init::scheme::{self, InitSpec, Scheme, Shape};
use crate::report::style::{Outcome, Styled};
use crate::tensor::{self, DrawOptions, Report};
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub(crate) struct InitArgs {
    /// he|kaiming, lecun, xavier|glorot, or naive:STD.
    #[arg(long, default_value = "he", value_parser = Scheme::parse)]
    scheme: Scheme,
    /// Weight shape, [out, in] or [out, in/groups, k...], e.g. 4096x4096 or 64x3x3x3.
    #[arg(long, default_value = "4096x4096", value_parser = Shape::parse)]
    shape: Shape,
    /// Weight distribution.
    #[arg(long, value_enum, default_value = "normal")]
    dist: DistChoice,
    /// Seed (the Philox key).
    #[arg(long, default_value_t = 0, value_parser = num::seed)]
    seed: u64,
    /// Tensor id (Philox counter word 2), e.g. the layer index.
    #[arg(long, default_value_t = 0, value_parser = num::int_in(0u32, u32::MAX))]
    tensor_id: u32,
    /// The fan to divide by (overrides the scheme's).
    #[arg(long, value_enum)]
    mode: Option<ModeChoice>,
    /// Gain: a number or an activation (relu, tanh, leaky_relu[:a], selu, ...);
    /// the variance numerator becomes gain^2.
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<String>,
    /// Variance multiplier (the tunable hyperparameter).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    multiplier: f64,
    /// Convolution groups.
    #[arg(long, default_value_t = 1, value_parser = num::int_in(1u64, u64::MAX))]
    groups: u64,
    /// Generate only rows A:B (dimension 0) of the tensor: bit for bit that
    /// slice of the whole (tensor-parallel layouts).
    #[arg(long, value_name = "A:B")]
    rows: Option<String>,
    /// Generate only columns C:D of a 2-D tensor (with --rows: a block).
    #[arg(long, value_name = "C:D")]
    cols: Option<String>,
    /// Write the tensor to this .npy file (atomically; --force replaces it).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArgs,
    /// Skip the comparison with the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Elements per GPU chunk, 1..=2^32 (default: one storage binding, at
    /// most 256 MiB).
    #[arg(long, value_parser = num::int_in(1u64, 1 << 32))]
    chunk_elems: Option<u64>,
    /// GPU workgroup size (power of two, 32..=1024), with one-word stores.
    /// Default: the store and workgroup size tuned for this device and
    /// distribution (cached; see `deepinit adapters`), or 256 when tuning is
    /// off (`--gemm VARIANT`).
    #[arg(long, value_parser = num::int_in(32u32, 1024))]
    workgroup_size: Option<u32>,
}

impl InitArgs {
    fn spec(&self) -> Result<InitSpec> {
        let spec = InitSpec::new(self.scheme, self.shape.clone())
            .with_dist(self.dist.into())
            .with_multiplier(self.multiplier)?
            .with_groups(self.groups)?
            .with_mode(self.mode.map(Into::into))
            .with_gain(self.gain.as_deref().map(scheme::gain).transpose()?)?;
        spec.target()?; // validate everything before touching a device
        if let Some(wg) = self.workgroup_size {
            gpu::generate::check_workgroup_size(wg, gpu::generate::MAX_WORKGROUP_SIZE)?;
        }
        Ok(spec)
    }
}

pub(crate) fn run_init(a: &InitArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let spec = a.spec()?;
    let mut outputs = a.json.file();
    outputs.extend(
        a.out
            .iter()
            .map(|p| ("the --out tensor".to_string(), p.clone())),
    );
    crate::io::output::check_distinct(&outputs)?;
    let out = a
        .out
        .as_deref()
        .map(|p| crate::io::output::Destination::check(p, a.json.force))
        .transpose()?;
    let json = a.json.open()?;
    let block = match (&a.rows, &a.cols) {
        (None, None) => None,
        (r, c) => Some(crate::tensor::Block::parse(
            &spec.shape().0,
            r.as_deref(),
            c.as_deref(),
        )?),
    };
    let elements = block.as_ref().map_or(spec.shape().numel(), |b| b.len());
    if a.out.is_none() {
        // Without --out the tensor is only checked, never kept; refuse what no
        // one could hold in memory rather than stream it for hours.
        let bytes = elements.saturating_mul(4);
        if let Some(mem) = crate::io::host::host_memory_bytes() {
            if bytes > mem {
                return Err(Error::LimitExceeded {
                    what: "tensor (bytes)".into(),
                    got: bytes,
                    max: mem,
                    hint: " of host memory; pass --out FILE to stream it to disk".into(),
                });
            }
        }
    }
    let backend = open_backend(d)?;
    let gen = GenOptions {
        chunk_elems: a.chunk_elems,
        ..GenOptions::default()
    };
    let gen = match (a.workgroup_size, backend.gpu()) {
        (Some(wg), _) => GenOptions {
            workgroup_size: wg,
            ..gen
        },
        (None, Some(g)) => g
            .gemm()
            .generation_for(g.generator(), gpu::Kernel::Dist(spec.dist()), elements)?
            .apply(gen),
        (None, None) => gen,
    };
    let opts = DrawOptions {
        seed: a.seed,
        tensor_id: a.tensor_id,
        gen,
        verify: !a.no_verify,
        block,
        out,
        progress: Some(std::sync::Arc::new(crate::progress::Progress::new(
            &format!("generating {} ({elements} elements)", spec.shape()),
        ))),
        ..DrawOptions::default()
    };
    let report = tensor::draw(&spec, &backend, &opts)?;
    let t = json.text();
    t.styled(&render(&report, &spec));
    json.emit(&report, &t)?;
    Ok(if report.verdict.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// A number in 7 significant digits, fixed-point where that is readable.
pub(crate) fn num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.7}")
    } else {
        format!("{v:.6e}")
    }
}

pub(crate) fn render(r: &Report, spec: &InitSpec) -> Styled {
    let mut s = Styled::new();
    render_header(&mut s, r, spec);
    render_statistics(&mut s, r, spec);
    render_cpu_check(&mut s, r);
    render_footer(&mut s, r, spec);
    s
}

/// What was drawn, on which device, with which target.
fn render_header(s: &mut Styled, r: &Report, spec: &InitSpec) {
    use std::fmt::Write;
    let t = &r.target;
    let rule = match (t.scale, t.mode) {
        (Some(scale), Some(mode)) => {
            format!("variance {} x {scale} / {}", r.multiplier, mode.name())
        }
        _ => format!("fixed std, variance multiplier {}", r.multiplier),
    };
    let block = match r.block {
        Some([[r0, r1], [c0, c1]]) => format!(", block rows {r0}:{r1} x cols {c0}:{c1}"),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "deepinit init: {} ({rule}), {}, shape {}{block} ({} elements)",
        r.scheme,
        r.dist.name(),
        spec.shape(),
        thousands(r.elements),
    );
    let _ = writeln!(s, "device: {}", r.device.describe());
    let _ = writeln!(
        s,
        "fans: in {}, out {}  ->  target std {}, variance {:.6e}; seed {}, tensor {}",
        t.fan_in,
        t.fan_out,
        num(t.std),
        t.variance,
        r.seed,
        r.tensor_id
    );
}

/// The sample against the target: mean, variance, support, kurtosis, KS.
fn render_statistics(s: &mut Styled, r: &Report, spec: &InitSpec) {
    use std::fmt::Write;
    let t = &r.target;
    let _ = writeln!(s);
    let m = &r.sample;
    let too_few = |what: &str| format!(" ({what}: {})", crate::tensor::TOO_FEW);
    let _ = writeln!(s, "{:<22}{:<15}{:<15}check", "", "target", "sample");
    let _ = write!(
        s,
        "{:<22}{:<15}{:<15}",
        "mean",
        "0",
        format!("{:+.3e}", m.mean)
    );
    match &r.mean_test {
        Some(t) => {
            let _ = write!(s, "z = {:+.3}, |z| <= {:.3}: ", t.z, t.critical);
            s.outcome(Outcome::of(t.pass), 0);
        }
        None => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("mean test"));
        }
    }
    let _ = writeln!(s);
    let _ = write!(
        s,
        "{:<22}{:<15}{:<15}",
        "variance",
        format!("{:.6e}", t.variance),
        format!("{:.6e}", m.variance)
    );
    match (&r.variance_ci, r.target_in_ci) {
        (Some(ci), Some(inside)) => {
            let _ = write!(
                s,
                "{:.1}% CI [{:.4e}, {:.4e}]: ",
                100.0 * ci.level,
                ci.lo,
                ci.hi,
            );
            s.outcome(Outcome::of(inside), 0);
            if !inside {
                let _ = write!(s, ", the target is outside");
            }
        }
        _ => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("variance interval"));
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<22}{:<15}{:<15}", "std", num(t.std), num(m.std));
    let support = spec.dist().max_abs_in_std() * t.std;
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<22} support +-{}",
        "min / max",
        "",
        format!("{} / {}", num(m.min), num(m.max)),
        num(support)
    );
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<15}",
        "excess kurtosis",
        format!("{:+.4}", m.expected_excess_kurtosis),
        format!("{:+.4}", m.excess_kurtosis)
    );
    let _ = write!(s, "{:<22}", format!("KS vs {} CDF", r.dist.name()));
    match &r.ks {
        Some(k) => {
            let _ = write!(
                s,
                "D = {:.6}, critical {:.6} (n = {}, alpha {}): ",
                k.d,
                k.critical,
                thousands(k.n),
                k.alpha,
            );
            s.outcome(Outcome::of(k.pass), 0);
        }
        None => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("KS test"));
        }
    }
    let _ = writeln!(s);
}

/// The GPU against the CPU reference (or why there was no comparison).
fn render_cpu_check(s: &mut Styled, r: &Report) {
    use std::fmt::Write;
    match &r.cpu_check {
        Some(c) => {
            let _ = write!(
                s,
                "{:<22}raw bits: {} of {} words identical: ",
                "GPU vs CPU reference",
                thousands(c.bits_compared - c.bits_mismatched),
                thousands(c.bits_compared),
            );
            s.outcome(Outcome::of(c.bits_mismatched == 0), 0);
            let _ = write!(
                s,
                "\n{:<22}values: {} of {} bit-identical: ",
                "",
                thousands(c.values.compared - c.values.mismatched),
                thousands(c.values.compared),
            );
            s.outcome(Outcome::of(c.values.identical()), 0);
            let _ = writeln!(s);
        }
        None if r.device.kind == DeviceKind::Cpu => {
            let _ = write!(s, "{:<22}", "GPU vs CPU reference");
            s.outcome(Outcome::NotRun, 0);
            let _ = writeln!(s, ", the CPU backend is the reference itself");
        }
        None => {
            let _ = write!(s, "{:<22}", "GPU vs CPU reference");
            s.outcome(Outcome::NotRun, 0);
            let _ = writeln!(s, ", not compared (--no-verify)");
        }
    }
}

/// The file written, the time, and the verdict.
fn render_footer(s: &mut Styled, r: &Report, spec: &InitSpec) {
    use std::fmt::Write;
    let _ = writeln!(s);
    if let Some(p) = &r.out {
        let _ = writeln!(
            s,
            "wrote {} ({} bytes)",
            p.display(),
            thousands(4 * r.elements + crate::io::npy::header(&r.out_shape).len() as u64)
        );
    }
    let _ = writeln!(
        s,
        "time: {:.2} s (generation + streaming checks)",
        r.seconds
    );
    let _ = write!(s, "verdict: ");
    s.verdict(r.verdict.pass);
    if r.verdict.pass {
        if r.verdict.not_checked.is_empty() {
            let _ = writeln!(s);
        } else {
            let _ = writeln!(s, " (of the checks that ran; not checked:)");
            for n in &r.verdict.not_checked {
                let _ = writeln!(s, "  - {n}");
            }
        }
    } else {
        let _ = writeln!(s);
        for f in &r.verdict.failures {
            let _ = writeln!(s, "  - {f}");
        }
        if r.out.is_none() && spec.shape().numel() > 0 {
            let _ = writeln!(s, "  (no file was written)");
        }
    }
}
