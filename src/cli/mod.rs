//! The command line: one module per command, the shared device options and
//! the helpers every command uses to open a device and report.

mod adapters;
mod bench;
mod demo;
mod forward;
mod init;
mod sweep;

pub(crate) use adapters::run_adapters;
pub(crate) use bench::{run_bench, BenchArgs};
pub(crate) use demo::{run_demo, DemoArgs};
pub(crate) use forward::{run_forward, ForwardArgs};
pub(crate) use init::{run_init, InitArgs};
pub(crate) use sweep::{run_sweep, SweepArgs};

use clap::{Args, Parser, Subcommand, ValueEnum};
use deepinit::backend::DeviceInfo;
use deepinit::gpu::{AdapterRequest, Generator, GpuContext};
use deepinit::{Error, Result};
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
pub(crate) enum BackendChoice {
    /// The GPU if an adapter exists, else the CPU (with a notice).
    Auto,
    /// A wgpu adapter is required.
    Gpu,
    /// The multi-threaded CPU reference.
    Cpu,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DeviceArgs {
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

pub(crate) fn request(d: &DeviceArgs) -> AdapterRequest {
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
pub(crate) fn open_device(d: &DeviceArgs) -> Result<Option<GpuContext>> {
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

pub(crate) fn ok(pass: bool) -> &'static str {
    if pass {
        "ok"
    } else {
        "FAIL"
    }
}

pub(crate) fn thousands(n: u64) -> String {
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

/// A one-line progress bar on stderr (redrawn in place on a terminal).
pub(crate) fn progress_bar() -> impl FnMut(usize, usize, &str) {
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

/// The "device:" line of every text report.
pub(crate) fn describe(ctx: Option<&GpuContext>) -> String {
    DeviceInfo::of(ctx).describe()
}

pub(crate) fn print_failures(runs: &[deepinit::experiment::RunReport]) {
    for r in runs {
        for f in r.verdict.failures.iter().take(5) {
            println!("  FAIL {} / {}: {f}", r.scheme, r.activation);
        }
    }
}

pub(crate) fn exit_for(runs: &[deepinit::experiment::RunReport]) -> ExitCode {
    if runs.iter().all(|r| r.verdict.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// Opens the device per --backend, compiles the network kernels for `act`
/// there, and runs `f` with the device (and the GPU context, if any).
pub(crate) fn with_network_device<T>(
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
