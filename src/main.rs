//! The `deepinit` command line.
//!
//! Exit status: 0 success, 1 error (bad input, no device, I/O), 2 usage error,
//! 3 the tensor was generated but failed verification.

use clap::{Args, Parser, Subcommand, ValueEnum};
use deepinit::demo;
use deepinit::gpu::{self, AdapterRequest, GenOptions, Generator, GpuContext};
use deepinit::scheme::{self, FanMode, InitSpec, Scheme, Shape};
use deepinit::tensor::{self, Backend, DrawOptions, Report};
use deepinit::{Dist, Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "deepinit",
    version,
    about = "Reproducible, verified neural-network weight initialization on the GPU",
    long_about = "Generates He/LeCun/Xavier (and naive) initial weights with WGSL compute \
                  shaders (Philox4x32-10 + Box-Muller), checks them against a bit-matching \
                  CPU reference and the analytic distribution, and writes .npy files.\n\n\
                  With no subcommand, runs `demo` with its defaults."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate one weight tensor, verify it, optionally write it as .npy.
    Init(InitArgs),
    /// The lecture as an experiment: five schemes x relu/tanh through a deep
    /// network, checked against the CPU reference and mean-field theory (the default).
    Demo(DemoArgs),
    /// One deep forward + backward pass with per-layer statistics.
    Forward(ForwardArgs),
    /// Sweep the variance multiplier: signal/gradient gains, correlations, the
    /// critical multiplier (measured and theory), heatmaps and histograms.
    Sweep(SweepArgs),
    /// Throughput against the device's own rooflines and against the CPU.
    Bench(BenchArgs),
    /// List the GPU adapters with their limits, and the one deepinit would use.
    Adapters {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SizeChoice {
    /// Width 256, depth 50, batch 64: ~20 s on a 2-core CPU through lavapipe.
    Default,
    /// Width 4096, depth 100, batch 128: for real GPUs.
    Big,
}

#[derive(Args, Debug, Clone)]
struct DemoArgs {
    /// Network size.
    #[arg(long, value_enum, default_value = "default")]
    size: SizeChoice,
    /// Directory for report.json and variance.{svg,png}.
    #[arg(long, default_value = "deepinit-out")]
    out_dir: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the CPU reference (GPU only).
    #[arg(long)]
    no_verify: bool,
    /// Replace files in --out-dir that deepinit did not write (its own
    /// results there are always replaced while unchanged).
    #[arg(long)]
    force: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: DemoArgs,
        }
        Wrap::parse_from(["deepinit"]).a
    }
}

#[derive(Args, Debug, Clone)]
struct ForwardArgs {
    /// he|kaiming, lecun, xavier|glorot, or naive:STD.
    #[arg(long, default_value = "he")]
    scheme: String,
    /// relu, leaky_relu[:a], tanh, sigmoid, selu, gelu, linear.
    #[arg(long, default_value = "relu")]
    act: String,
    /// Width of the input and every layer.
    #[arg(long, default_value_t = 256)]
    width: u64,
    /// Explicit widths n_0,n_1,...,n_L (overrides --width and --depth).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<u64>>,
    /// Number of layers.
    #[arg(long, default_value_t = 50)]
    depth: usize,
    /// Batch size [default: 64, or the rows of --input].
    #[arg(long)]
    batch: Option<u64>,
    /// Bias standard deviation (0: no bias).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    bias_std: f64,
    /// Variance multiplier.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    multiplier: f64,
    /// Gain: a number or an activation name (scale = gain^2).
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<String>,
    /// fan_in, fan_out or fan_avg.
    #[arg(long)]
    mode: Option<String>,
    /// Weight distribution: normal, truncated, uniform.
    #[arg(long, default_value = "normal")]
    dist: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the report (same format as the demo's report.json) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite --json if it exists.
    #[arg(long)]
    force: bool,
    /// Skip the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Inputs from a .npy file of shape (batch, n_0), float32 or float64
    /// (sets the batch and the input width); default: N(0, 1) from the RNG.
    #[arg(long)]
    input: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SweepArgs {
    /// relu, leaky_relu[:a], tanh, sigmoid, selu, gelu, linear.
    #[arg(long, default_value = "tanh")]
    act: String,
    /// Base scheme whose variance the multiplier scales (lecun: multiplier = sigma_w^2).
    #[arg(long, default_value = "lecun")]
    scheme: String,
    /// Multipliers: start:stop:step or a comma list.
    #[arg(long, default_value = "0.25:4:0.25")]
    multiplier: String,
    /// Depth.
    #[arg(long, default_value_t = 50)]
    depth: usize,
    /// Width of every layer.
    #[arg(long, default_value_t = 256)]
    width: u64,
    /// Batch (even: the inputs come in correlated pairs).
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// Bias standard deviation.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    bias_std: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also run the CPU reference for every multiplier.
    #[arg(long)]
    verify: bool,
    /// Directory for sweep.json, heatmap.{svg,png}, curves.{svg,png},
    /// histograms.{svg,png}.
    #[arg(long, default_value = "deepinit-sweep")]
    out_dir: PathBuf,
    /// Replace files in --out-dir that deepinit did not write.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Small sizes and few repeats: a smoke run (under a minute on lavapipe).
    #[arg(long)]
    quick: bool,
    /// Timed runs after the warm-up, 1..=1000 (default 5, 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: Option<u32>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite --json if it exists.
    #[arg(long)]
    force: bool,
    /// Skip the numpy comparison even if python3 with numpy is available.
    #[arg(long)]
    no_numpy: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendChoice {
    /// The GPU if an adapter exists, else the CPU (with a notice).
    Auto,
    /// A wgpu adapter is required.
    Gpu,
    /// The multi-threaded CPU reference.
    Cpu,
}

#[derive(Args, Debug, Clone)]
struct DeviceArgs {
    /// Where to run: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    backend: BackendChoice,
    /// Use the adapter whose name contains NAME (overrides WGPU_ADAPTER_NAME).
    #[arg(long, value_name = "NAME", global = true)]
    adapter: Option<String>,
    /// Do not use native 64-bit integers in the Philox rounds even if available.
    #[arg(long, global = true)]
    no_int64: bool,
}

#[derive(Args, Debug, Clone)]
struct InitArgs {
    /// he|kaiming, lecun, xavier|glorot, or naive:STD.
    #[arg(long, default_value = "he")]
    scheme: String,
    /// Weight shape, [out, in] or [out, in/groups, k...], e.g. 4096x4096 or 64x3x3x3.
    #[arg(long, default_value = "4096x4096")]
    shape: String,
    /// normal, truncated (+-2 sigma, variance-corrected) or uniform.
    #[arg(long, default_value = "normal")]
    dist: String,
    /// Seed (the Philox key).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tensor id (Philox counter word 2), e.g. the layer index.
    #[arg(long, default_value_t = 0)]
    tensor_id: u32,
    /// fan_in, fan_out or fan_avg (overrides the scheme's).
    #[arg(long)]
    mode: Option<String>,
    /// Gain: a number or an activation (relu, tanh, leaky_relu[:a], selu, ...);
    /// the variance numerator becomes gain^2.
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<String>,
    /// Variance multiplier (the tunable hyperparameter).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    multiplier: f64,
    /// Convolution groups.
    #[arg(long, default_value_t = 1)]
    groups: u64,
    /// Write the tensor to this .npy file (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Skip the comparison with the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Elements per GPU chunk, 1..=2^32 (default: one storage binding, at
    /// most 256 MiB).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    chunk_elems: Option<u64>,
    /// GPU workgroup size (power of two, 32..=1024).
    #[arg(long, default_value_t = 256)]
    workgroup_size: u32,
}

impl InitArgs {
    fn spec(&self) -> Result<InitSpec> {
        let scheme = Scheme::parse(&self.scheme)?;
        let shape = Shape::parse(&self.shape)?;
        let dist = Dist::parse(&self.dist).ok_or_else(|| {
            Error::invalid(
                "distribution",
                format!(
                    "unknown distribution '{}' (expected normal, truncated or uniform)",
                    self.dist
                ),
            )
        })?;
        let mut spec = InitSpec::new(scheme, shape);
        spec.dist = dist;
        spec.multiplier = self.multiplier;
        spec.groups = self.groups;
        spec.mode = self.mode.as_deref().map(FanMode::parse).transpose()?;
        spec.gain = self.gain.as_deref().map(scheme::gain).transpose()?;
        spec.target()?; // validate everything before touching a device
        gpu::generate::check_workgroup_size(
            self.workgroup_size,
            gpu::generate::MAX_WORKGROUP_SIZE,
        )?;
        Ok(spec)
    }
}

fn request(d: &DeviceArgs) -> AdapterRequest {
    AdapterRequest {
        name: d.adapter.clone(),
        backends: None,
        disable_int64: d.no_int64,
    }
}

/// Opens the GPU per --backend; `Ok(None)` means run on the CPU. Under
/// `auto`, a missing adapter falls back to the CPU only when the user named
/// none (`--adapter`, WGPU_ADAPTER_NAME): a named one that does not exist is
/// an error.
fn open_device(d: &DeviceArgs) -> Result<Option<GpuContext>> {
    let req = request(d);
    match d.backend {
        BackendChoice::Cpu => Ok(None),
        BackendChoice::Gpu => GpuContext::new(&req).map(Some),
        BackendChoice::Auto => match GpuContext::new(&req) {
            Ok(ctx) => Ok(Some(ctx)),
            Err(e @ Error::NoAdapter { .. }) if !req.names_adapter() => {
                eprintln!("deepinit: {e}; falling back to the CPU backend");
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

fn run_init(a: &InitArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let spec = a.spec()?;
    let out = a
        .out
        .as_deref()
        .map(|p| deepinit::output::Destination::check(p, a.force))
        .transpose()?;
    if a.out.is_none() {
        // Without --out the tensor is only checked, never kept; refuse what no
        // one could hold in memory rather than stream it for hours.
        let bytes = spec.shape.numel().saturating_mul(4);
        if let Some(mem) = deepinit::cpu::host_memory_bytes() {
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
    let ctx = open_device(d)?;
    let gen = match &ctx {
        Some(c) => Some(Generator::new(c)?),
        None => None,
    };
    let backend = match &gen {
        Some(g) => Backend::Gpu(g),
        None => Backend::Cpu,
    };
    let opts = DrawOptions {
        seed: a.seed,
        tensor_id: a.tensor_id,
        gen: GenOptions {
            chunk_elems: a.chunk_elems,
            workgroup_size: a.workgroup_size,
            mulhi: None,
        },
        verify: !a.no_verify,
        out,
        progress: Some(std::sync::Arc::new(deepinit::progress::Progress::new(
            &format!(
                "generating {} ({} elements)",
                spec.shape,
                spec.shape.numel()
            ),
        ))),
        ..DrawOptions::default()
    };
    let report = tensor::draw(&spec, &backend, &opts)?;
    if a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render(&report, &spec));
    }
    Ok(if report.verdict.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn ok(pass: bool) -> &'static str {
    if pass {
        "ok"
    } else {
        "FAIL"
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number in 7 significant digits, fixed-point where that is readable.
fn num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.7}")
    } else {
        format!("{v:.6e}")
    }
}

fn render(r: &Report, spec: &InitSpec) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let t = &r.target;
    let rule = match (t.scale, t.mode) {
        (Some(scale), Some(mode)) => {
            format!("variance {} x {scale} / {}", r.multiplier, mode.name())
        }
        _ => format!("fixed std, variance multiplier {}", r.multiplier),
    };
    let _ = writeln!(
        s,
        "deepinit init: {} ({rule}), {}, shape {} ({} elements), seed {}, tensor {}",
        r.scheme,
        r.dist.name(),
        spec.shape,
        thousands(r.elements),
        r.seed,
        r.tensor_id
    );
    let _ = writeln!(
        s,
        "device: {} [{}{}]",
        r.backend.device,
        r.backend.api,
        if r.backend.kind == "gpu" {
            if r.backend.int64 {
                ", int64 Philox"
            } else {
                ", 16-bit-halves Philox"
            }
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "fans: in {}, out {}  ->  target std {}, variance {:.6e}",
        t.fan_in,
        t.fan_out,
        num(t.std),
        t.variance
    );
    let _ = writeln!(s);
    let m = &r.sample;
    let na = |what: &str| format!("n/a ({}: {})", what, deepinit::tensor::TOO_FEW);
    let _ = writeln!(s, "{:<22}{:<15}{:<15}check", "", "target", "sample");
    let mean_check = match &r.mean_test {
        Some(t) => format!("z = {:+.3}, |z| <= {:.3}: {}", t.z, t.critical, ok(t.pass)),
        None => na("mean test"),
    };
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<15}{mean_check}",
        "mean",
        "0",
        format!("{:+.3e}", m.mean)
    );
    let var_check = match (&r.variance_ci, r.target_in_ci) {
        (Some(ci), Some(inside)) => format!(
            "{:.1}% CI [{:.6e}, {:.6e}] ({}): {}",
            100.0 * ci.level,
            ci.lo,
            ci.hi,
            ci.method.replace('_', "-"),
            if inside {
                "target inside, ok"
            } else {
                "target outside, FAIL"
            }
        ),
        _ => na("variance interval"),
    };
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<15}{var_check}",
        "variance",
        format!("{:.6e}", t.variance),
        format!("{:.6e}", m.variance)
    );
    let _ = writeln!(s, "{:<22}{:<15}{:<15}", "std", num(t.std), num(m.std));
    let support = spec.dist.max_abs_in_std() * t.std;
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
    let ks_check = match &r.ks {
        Some(k) => format!(
            "D = {:.6}, critical {:.6} (n = {}, alpha {}): {}",
            k.d,
            k.critical,
            thousands(k.n),
            k.alpha,
            ok(k.pass)
        ),
        None => na("KS test"),
    };
    let _ = writeln!(
        s,
        "{:<22}{ks_check}",
        format!("KS vs {} CDF", r.dist.name())
    );
    match &r.cpu_check {
        Some(c) => {
            let _ = writeln!(
                s,
                "{:<22}raw bits: {} of {} words identical: {}",
                "GPU vs CPU reference",
                thousands(c.bits_compared - c.bits_mismatched),
                thousands(c.bits_compared),
                ok(c.bits_mismatched == 0)
            );
            let _ = writeln!(
                s,
                "{:<22}values: max |GPU - CPU| = {:.3e} (derived bound there {:.3e}), {} beyond bound: {}",
                "",
                c.values.max_abs_diff,
                c.values.bound_at_max,
                c.values.exceeding,
                ok(c.values.within_bounds())
            );
        }
        None if r.backend.kind == "cpu" => {
            let _ = writeln!(
                s,
                "{:<22}not compared (the CPU backend is the reference itself)",
                "GPU vs CPU reference"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "{:<22}not compared (--no-verify)",
                "GPU vs CPU reference"
            );
        }
    }
    let _ = writeln!(s);
    if let Some(p) = &r.out {
        let _ = writeln!(
            s,
            "wrote {} ({} bytes)",
            p.display(),
            thousands(4 * r.elements + deepinit::npy::header(&r.shape).len() as u64)
        );
    }
    let _ = writeln!(
        s,
        "time: {:.2} s (generation + streaming checks)",
        r.seconds
    );
    if r.verdict.pass {
        if r.verdict.not_checked.is_empty() {
            let _ = writeln!(s, "verdict: PASS");
        } else {
            let _ = writeln!(s, "verdict: PASS (of the checks that ran; not checked:)");
            for n in &r.verdict.not_checked {
                let _ = writeln!(s, "  - {n}");
            }
        }
    } else {
        let _ = writeln!(s, "verdict: FAIL");
        for f in &r.verdict.failures {
            let _ = writeln!(s, "  - {f}");
        }
        if r.out.is_none() && spec.shape.numel() > 0 {
            let _ = writeln!(s, "  (no file was written)");
        }
    }
    s
}

fn device_info(ctx: Option<&GpuContext>) -> demo::DeviceInfo {
    match ctx {
        Some(c) => demo::DeviceInfo {
            kind: "gpu".into(),
            name: c.adapter.name.clone(),
            backend: c.adapter.backend.clone(),
            driver: format!("{} {}", c.adapter.driver, c.adapter.driver_info),
        },
        None => demo::DeviceInfo {
            kind: "cpu".into(),
            name: format!("cpu ({} threads)", deepinit::cpu::threads()),
            backend: "cpu".into(),
            driver: String::new(),
        },
    }
}

/// A one-line progress bar on stderr (redrawn in place on a terminal).
fn progress_bar() -> impl FnMut(usize, usize, &str) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    move |done, total, label| {
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled));
        let line = format!(
            "{bar} {done}/{total} {:>5.1}s  {label}",
            start.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr();
        if tty {
            let _ = write!(err, "\r{line:<80}");
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

fn run_demo(a: &DemoArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let size = match a.size {
        SizeChoice::Default => demo::Size::DEFAULT,
        SizeChoice::Big => demo::Size::BIG,
    };
    let out = deepinit::output::OutputDir::check(&a.out_dir, &demo::OUTPUT_FILES, a.force)?;
    let ctx = open_device(d)?;
    let gen = ctx.as_ref().map(Generator::new).transpose()?;
    println!(
        "deepinit demo: does the signal keep its scale through {} layers of width {}? (batch {}, seed {})",
        size.depth, size.width, size.batch, a.seed
    );
    println!("device: {}", describe(ctx.as_ref()));
    println!();
    let runs = demo::run(gen.as_ref(), size, a.seed, !a.no_verify, progress_bar())?;
    print!("{}", demo::table(&runs));
    let report = demo::Report {
        device: device_info(ctx.as_ref()),
        config: serde_json::json!({
            "size": format!("{:?}", a.size).to_lowercase(),
            "width": size.width, "depth": size.depth, "batch": size.batch, "seed": a.seed,
            "schemes": demo::SCHEMES, "activations": demo::ACTIVATIONS,
            "verify": !a.no_verify,
        }),
        runs,
    };
    println!("sw^2 = Var(W) * fan_in. Theory: ReLU keeps Var(z) when sw^2 = 2 (He) and scales it by sw^2/2 per layer;");
    println!("tanh keeps a signal near sw^2 = 1. 'vs CPU': every layer's statistics equal the CPU reference within the");
    println!("derived tolerance ('chaotic': layers where rounding differences are amplified beyond comparison).");
    print_failures(&report.runs);
    println!();
    println!("Far from critical (sw^2 != 2 for relu, sw^2 far from 1 for tanh), the signal vanishes or explodes.");
    println!("To find the multiplier for an activation and depth: deepinit sweep --act relu --depth {} (or --act tanh)", size.depth);
    for p in demo::write_outputs(&out, &report)? {
        println!("wrote {}", p.display());
    }
    Ok(exit_for(&report.runs))
}

fn describe(ctx: Option<&GpuContext>) -> String {
    match ctx {
        Some(c) => format!(
            "{} [{}] (CPU reference: {} threads)",
            c.adapter.name,
            c.adapter.backend,
            deepinit::cpu::threads()
        ),
        None => format!("CPU backend ({} threads)", deepinit::cpu::threads()),
    }
}

fn print_failures(runs: &[deepinit::experiment::RunReport]) {
    for r in runs {
        for f in r.verdict.failures.iter().take(5) {
            println!("  FAIL {} / {}: {f}", r.scheme, r.activation);
        }
    }
}

fn exit_for(runs: &[deepinit::experiment::RunReport]) -> ExitCode {
    if runs.iter().all(|r| r.verdict.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn run_forward(a: &ForwardArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let act = deepinit::act::Activation::parse(&a.act)?;
    let max_depth = deepinit::net::MAX_DEPTH;
    let widths = match &a.widths {
        Some(w) if w.len() < 2 => {
            return Err(Error::invalid(
                "widths",
                format!(
                    "--widths {} lists {} value; it needs at least two (n_0,n_1,...: the input \
                     width, then one per layer)",
                    w.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                    w.len()
                ),
            ))
        }
        Some(w) if w.len() - 1 > max_depth => {
            return Err(Error::invalid(
                "widths",
                format!(
                    "{} layers; reduce the depth (at most {max_depth})",
                    w.len() - 1
                ),
            ))
        }
        Some(w) => w.clone(),
        None if a.depth == 0 => {
            return Err(Error::invalid(
                "depth",
                "0 (a network needs at least one layer)",
            ))
        }
        None if a.depth > max_depth => {
            return Err(Error::invalid(
                "depth",
                format!("{}; reduce the depth (at most {max_depth})", a.depth),
            ))
        }
        None => vec![a.width; a.depth + 1],
    };
    let json_out = a
        .json
        .as_deref()
        .map(|p| deepinit::output::Destination::check(p, a.force))
        .transpose()?;
    let input = a.input.as_deref().map(deepinit::npy::read_2d).transpose()?;
    let batch = match (&input, a.batch) {
        (Some(x), Some(b)) if b != x.rows => {
            return Err(Error::invalid(
                "batch",
                format!(
                    "--batch {b} contradicts --input, which holds {} rows (omit --batch)",
                    x.rows
                ),
            ))
        }
        (Some(x), _) => x.rows,
        (None, b) => b.unwrap_or(64),
    };
    let mut cfg = deepinit::net::NetConfig::uniform(Scheme::parse(&a.scheme)?, act, 1, 1, batch);
    cfg.widths = widths;
    if let Some(x) = &input {
        if a.widths.is_some() && cfg.widths[0] != x.cols {
            return Err(Error::invalid(
                "input",
                format!(
                    "the file has width {}, but --widths starts with {}",
                    x.cols, cfg.widths[0]
                ),
            ));
        }
        cfg.widths[0] = x.cols;
    }
    cfg.multiplier = a.multiplier;
    cfg.bias_std = a.bias_std;
    cfg.seed = a.seed;
    cfg.gain = a.gain.as_deref().map(scheme::gain).transpose()?;
    cfg.mode = a.mode.as_deref().map(FanMode::parse).transpose()?;
    cfg.dist = Dist::parse(&a.dist).ok_or_else(|| {
        Error::invalid(
            "distribution",
            format!(
                "unknown distribution '{}' (expected normal, truncated or uniform)",
                a.dist
            ),
        )
    })?;
    cfg.validate()?;
    deepinit::reference::check_host_memory(&cfg)?;
    with_network_device(d, act, |ctx, dev| {
        let progress = deepinit::progress::Progress::new("forward + backward pass");
        let r = deepinit::experiment::run_with_progress(
            dev,
            &cfg,
            input.as_ref().map(|x| x.data.as_slice()),
            !a.no_verify,
            &progress,
        )?;
        drop(progress);
        println!(
            "deepinit forward: {} / {}, widths {}..{}, depth {}, batch {}, sw^2 {:.4}, bias std {}, seed {}",
            r.scheme, r.activation, cfg.widths[0], cfg.widths[r.depth], r.depth, r.batch, r.sigma_w2, r.bias_std, r.seed
        );
        println!("device: {}", describe(ctx));
        println!();
        println!(
            "{:>6} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8} {:>7} {:>7}  {:<9}vs theory",
            "layer",
            "Var(z)",
            "theory",
            "Var(a)",
            "Var(delta)",
            "theory",
            "|dW|_F",
            "chi1",
            "dead",
            "sat",
            "vs CPU",
        );
        let step = if r.depth <= 20 {
            1
        } else {
            r.depth.div_ceil(12)
        };
        for l in r
            .layers
            .iter()
            .filter(|l| l.layer == 1 || l.layer % step == 0 || l.layer == r.depth)
        {
            println!(
                "{:>6} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>8.3} {:>7.3} {:>7.3}  {:<9}{}",
                l.layer, l.pre_var, l.theory_pre_var, l.post_var, l.grad_var, l.theory_grad_var, l.grad_w_norm, l.chi1,
                l.dead_frac, l.saturated_frac, l.cpu_check, l.theory_check
            );
        }
        println!();
        let v = &r.verdict;
        let cpu = match (v.cpu_match, v.max_rel_err_cpu) {
            (None, _) if a.no_verify => "not compared (--no-verify)".to_string(),
            (None, _) if ctx.is_none() => {
                "not compared (the CPU backend is the reference)".to_string()
            }
            (None, _) => "not compared (no layer within the rounding model's reach)".to_string(),
            (Some(ok), r) => format!(
                "{} ({} layers compared, max relative difference {}{}{})",
                if ok { "match" } else { "MISMATCH" },
                v.compared_layers,
                r.map_or("n/a".to_string(), |r| format!("{r:.2e}")),
                if v.chaotic_layers > 0 {
                    format!(", {} chaotic layers not compared", v.chaotic_layers)
                } else {
                    String::new()
                },
                if v.backward_not_compared > 0 {
                    format!(
                        ", backward not compared in {} layers",
                        v.backward_not_compared
                    )
                } else {
                    String::new()
                }
            ),
        };
        let weights = match &v.weight_test {
            Some(w) => format!(
                "weight variance {:+.2}% +- {:.2}% (|T| {:.2} vs {:.2}: {})",
                100.0 * w.mean_excess,
                100.0 * w.std_error,
                w.z.abs(),
                w.critical,
                if w.pass { "ok" } else { "FAIL" }
            ),
            None => "weight test n/a (no layer in f32 range)".to_string(),
        };
        println!("verdict: CPU reference {cpu}");
        println!(
            "         theory {}; {weights}",
            if v.theory_match { "match" } else { "DEVIATES" }
        );
        if let Some(l) = v.overflow_at {
            println!("the signal overflowed f32 at layer {l}");
        }
        let runs = vec![r];
        print_failures(&runs);
        if let Some(dest) = &json_out {
            let report = demo::Report {
                device: device_info(ctx),
                config: serde_json::json!({ "command": "forward" }),
                runs,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::invalid("report", e.to_string()))?;
            dest.write(text.as_bytes())?;
            println!("wrote {}", dest.path().display());
            return Ok(exit_for(&report.runs));
        }
        Ok(exit_for(&runs))
    })
}

/// Opens the device per --backend, compiles the network kernels for `act`
/// there, and runs `f` with the device (and the GPU context, if any).
fn with_network_device<T>(
    d: &DeviceArgs,
    act: deepinit::act::Activation,
    f: impl FnOnce(Option<&GpuContext>, &deepinit::experiment::Device) -> Result<T>,
) -> Result<T> {
    let ctx = open_device(d)?;
    let gen = ctx.as_ref().map(Generator::new).transpose()?;
    let kernels = match &gen {
        Some(g) => Some(deepinit::gpu::kernels::NetKernels::new(g.context(), act)?),
        None => None,
    };
    let dev = match (&gen, &kernels) {
        (Some(g), Some(k)) => deepinit::experiment::Device::Gpu(g, k),
        _ => deepinit::experiment::Device::Cpu,
    };
    f(ctx.as_ref(), &dev)
}

fn run_sweep(a: &SweepArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use deepinit::sweep;
    let act = deepinit::act::Activation::parse(&a.act)?;
    let cfg = sweep::SweepConfig {
        act,
        scheme: Scheme::parse(&a.scheme)?,
        multipliers: sweep::parse_grid(&a.multiplier)?,
        depth: a.depth,
        width: a.width,
        batch: a.batch,
        bias_std: a.bias_std,
        seed: a.seed,
        verify: a.verify,
    };
    if a.depth == 0 || a.depth > deepinit::net::MAX_DEPTH {
        return Err(Error::invalid(
            "depth",
            format!(
                "{} (a sweep needs 1 to {} layers)",
                a.depth,
                deepinit::net::MAX_DEPTH
            ),
        ));
    }
    let mut probe = deepinit::net::NetConfig::uniform(cfg.scheme, act, a.width, a.depth, a.batch);
    probe.bias_std = a.bias_std;
    probe.validate()?;
    deepinit::reference::check_host_memory(&probe)?;
    let out = deepinit::output::OutputDir::check(&a.out_dir, &sweep::OUTPUT_FILES, a.force)?;
    with_network_device(d, act, |ctx, dev| {
        println!(
            "deepinit sweep: {} / {} x multiplier, width {}, depth {}, batch {} ({} input pairs of correlation {}), bias std {}",
            act.name(), cfg.scheme.name(), a.width, a.depth, a.batch, a.batch / 2, sweep::INPUT_CORRELATION, a.bias_std
        );
        println!("device: {}", describe(ctx));
        println!();
        let report = sweep::run(dev, &cfg, progress_bar())?;
        print!("{}", sweep::table(&report));
        let hist = sweep::histograms(&cfg, &report)?;
        for p in sweep::write_outputs(&out, &report, &hist)? {
            println!("wrote {}", p.display());
        }
        let runs: Vec<_> = report.points.iter().map(|p| p.run.clone()).collect();
        print_failures(&runs);
        let ok = exit_for(&runs) == ExitCode::SUCCESS && report.critical_match != Some(false);
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    })
}

fn run_bench(a: &BenchArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use deepinit::bench;
    let opts = bench::BenchOptions {
        quick: a.quick,
        repeats: a.repeats.unwrap_or(if a.quick { 2 } else { 5 }) as usize,
    };
    let json_out = a
        .json
        .as_deref()
        .map(|p| deepinit::output::Destination::check(p, a.force))
        .transpose()?;
    let ctx = open_device(d)?;
    let gen = ctx.as_ref().map(Generator::new).transpose()?;
    println!(
        "deepinit bench{}: {}",
        if a.quick { " --quick" } else { "" },
        describe(ctx.as_ref())
    );
    if let Some(c) = &ctx {
        println!(
            "driver: {} {}; timing: {}; repeats: {} after a warm-up (median shown)",
            c.adapter.driver,
            c.adapter.driver_info,
            if c.timestamps {
                "GPU timestamps"
            } else {
                "wall clock (no timestamp queries)"
            },
            opts.repeats
        );
    }
    let mut step = |what: &str| eprintln!("  running: {what}");
    let (mut rows, tuning) = match &gen {
        Some(g) => bench::gpu(g, &opts, &mut step)?,
        None => (Vec::new(), serde_json::Value::Null),
    };
    rows.extend(bench::cpu(&opts, &mut step)?);
    let (gm, gn, gk) = if a.quick {
        (1024, 1024, 256)
    } else {
        (4096, 4096, 256)
    };
    let numpy = if a.no_numpy {
        None
    } else {
        bench::numpy(gm, gn, gk)
    };
    if let Some((np_rng, np_gemm, version)) = &numpy {
        let cpu_gen = rows
            .iter()
            .find(|r| r.name.starts_with("deepinit normal"))
            .map_or(f64::NAN, |r| r.rate);
        let cpu_gemm = rows
            .iter()
            .find(|r| r.name.starts_with("gemm crate"))
            .map_or(f64::NAN, |r| r.rate);
        let mk =
            |name: String, size: String, rate: f64, unit: &'static str, ours: f64, what: &str| {
                bench::Row {
                    group: "numpy",
                    name,
                    size,
                    time: bench::Timing {
                        min_s: f64::NAN,
                        median_s: f64::NAN,
                        max_s: f64::NAN,
                        repeats: 3,
                        method: "cpu-wall-clock",
                    },
                    rate,
                    unit,
                    ratio: Some(ours / rate),
                    ratio_to: Some(format!("deepinit {what} / numpy")),
                }
            };
        rows.push(mk(
            format!("numpy {version} standard_normal f32, 1 thread"),
            "16M".into(),
            *np_rng,
            "Msamples/s",
            cpu_gen,
            "CPU backend",
        ));
        rows.push(mk(
            format!("numpy {version} float32 matmul (its BLAS)"),
            format!("{gm}x{gn}x{gk}"),
            *np_gemm,
            "GFLOP/s",
            cpu_gemm,
            "CPU gemm",
        ));
    }
    println!();
    print!("{}", bench::table(&rows));
    if !tuning.is_null() {
        println!("\ntuning: generation workgroup size {} (auto-tuned this run); GEMM tiles fixed at 64x64x16", tuning["generation_workgroup_size"]);
    }
    if numpy.is_none() && !a.no_numpy {
        println!("numpy comparison skipped: python3 with numpy not found");
    }
    if let Some(dest) = &json_out {
        let v = serde_json::json!({
            "device": device_info(ctx.as_ref()),
            "quick": a.quick,
            "repeats": opts.repeats,
            "tuning": tuning,
            "rows": rows,
        });
        let text =
            serde_json::to_string_pretty(&v).map_err(|e| Error::invalid("bench", e.to_string()))?;
        dest.write(text.as_bytes())?;
        println!("wrote {}", dest.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_adapters(d: &DeviceArgs, json: bool) -> Result<ExitCode> {
    let (list, chosen) = gpu::list_adapters(&request(d));
    if json {
        let v = serde_json::json!({ "adapters": list, "chosen": chosen });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::invalid("json", e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no GPU adapters found; install a Vulkan driver (Debian: mesa-vulkan-drivers) or use --backend cpu");
        return Ok(ExitCode::SUCCESS);
    }
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        println!(
            "{mark} [{i}] {} ({}, {}; driver {} {})",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "      max storage binding {} MiB, max buffer {} MiB, max workgroups/dim {}, max invocations/workgroup {}, int64 {}, timestamps {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.shader_int64,
            a.timestamp_query
        );
    }
    match chosen {
        Some(i) => println!("* = chosen (adapter {i})"),
        None => println!("no adapter matches the name filter"),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    deepinit::output::install_cleanup_handler();
    let result = match &cli.command {
        Some(Command::Init(a)) => run_init(a, &cli.device),
        Some(Command::Adapters { json }) => run_adapters(&cli.device, *json),
        Some(Command::Demo(a)) => run_demo(a, &cli.device),
        Some(Command::Bench(a)) => run_bench(a, &cli.device),
        Some(Command::Sweep(a)) => run_sweep(a, &cli.device),
        Some(Command::Forward(a)) => run_forward(a, &cli.device),
        None => run_demo(&DemoArgs::default(), &cli.device),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("deepinit: error: {e}");
            ExitCode::FAILURE
        }
    }
}
