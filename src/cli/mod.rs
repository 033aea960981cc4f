//! The command line: one module per command, the shared device options and
//! the helpers every command uses to open a device and report.

/// `println!` that never panics: see [`out`].
macro_rules! outln {
    () => {
        $crate::cli::out("\n")
    };
    ($($t:tt)*) => {
        $crate::cli::out(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `eprintln!` that never panics: see [`err`].
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::cli::err(&format!("{}\n", format_args!($($t)*)))
    };
}

mod adapters;
mod bench;
mod demo;
mod forward;
mod init;
mod inspect;
mod model;
mod num;
mod signals;
mod sweep;

pub(crate) use adapters::run_adapters;
pub(crate) use bench::{run_bench, BenchArgs};
pub(crate) use demo::{run_demo, DemoArgs};
pub(crate) use forward::{run_forward, ForwardArgs};
pub(crate) use init::{run_init, InitArgs};
pub(crate) use inspect::{run_inspect, InspectArgs};
pub(crate) use model::{run_model, ModelArgs};
pub(crate) use signals::install_cleanup_handler;
pub(crate) use sweep::{run_sweep, SweepArgs};

use crate::backend::{Backend, Policy};
use crate::gpu::gemm::GemmVariant;
use crate::gpu::tune::TuneMode;
use crate::gpu::AdapterRequest;
use crate::{Error, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

/// The `deepinit` binary: parses the arguments, runs the command and turns
/// its outcome into the exit status documented in `main.rs`. The one place
/// in the crate that exits the process or installs a signal handler.
pub fn main() -> ExitCode {
    quiet_display_probes();
    // "-1" is a value (refused by its flag's range check with the range in
    // the message), not an unknown flag.
    let command = Cli::command()
        .allow_negative_numbers(true)
        .mut_subcommands(|c| c.allow_negative_numbers(true));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    install_cleanup_handler();
    let result = match &cli.command {
        Some(Command::Init(a)) => run_init(a, &cli.device),
        Some(Command::Adapters(a)) => run_adapters(a, &cli.device),
        Some(Command::Demo(a)) => run_demo(a, &cli.device),
        Some(Command::Bench(a)) => run_bench(a, &cli.device),
        Some(Command::Sweep(a)) => run_sweep(a, &cli.device),
        Some(Command::Forward(a)) => run_forward(a, &cli.device),
        Some(Command::Model(a)) => run_model(a, &cli.device),
        Some(Command::Inspect(a)) => run_inspect(a),
        None => run_demo(&DemoArgs::default(), &cli.device),
    };
    // Output that could not be written is a failure, whatever the command
    // concluded.
    match result.and_then(|code| stdout_error().map_or(Ok(code), Err)) {
        Ok(_) if stdout_closed() => ExitCode::from(141),
        Ok(code) => code,
        Err(e) => {
            err(&format!("deepinit: error: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

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
    /// A whole model's initial checkpoint as safetensors (a spec file or a
    /// preset), sharded across files and machines if asked.
    Model(ModelArgs),
    /// Per-tensor statistics of any safetensors checkpoint against its spec
    /// or the He/LeCun/Xavier rules.
    Inspect(InspectArgs),
    /// List the GPU adapters with their limits, and the one deepinit would use.
    Adapters(AdaptersArgs),
}

/// `--json [FILE]`: the report as JSON to FILE, or to stdout with `-` or no
/// value (then the text report goes to stderr).
#[derive(Args, Debug, Clone)]
pub(crate) struct JsonArgs {
    /// Write the report as JSON to FILE ('-' or no value: stdout, and the text
    /// goes to stderr).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub(crate) json: Option<std::path::PathBuf>,
    /// Replace output files that exist (never special files or directories).
    #[arg(long)]
    pub(crate) force: bool,
}

/// Where a command's JSON goes, validated before any work.
pub(crate) enum JsonOut {
    /// None requested.
    None,
    /// Standard output (the text report moves to stderr).
    Stdout,
    /// A file, under the no-clobber rules.
    File(crate::io::output::Destination),
}

impl JsonArgs {
    /// The JSON file named, if the report goes to a file, labelled for
    /// [`crate::io::output::check_distinct`].
    pub(crate) fn file(&self) -> Vec<(String, std::path::PathBuf)> {
        match &self.json {
            Some(p) if p.as_os_str() != "-" => vec![("the --json report".into(), p.clone())],
            _ => Vec::new(),
        }
    }

    /// Validates the destination (before any work starts).
    pub(crate) fn open(&self) -> Result<JsonOut> {
        Ok(match &self.json {
            None => JsonOut::None,
            Some(p) if p.as_os_str() == "-" || names_stdout(p) => JsonOut::Stdout,
            Some(p) => JsonOut::File(crate::io::output::Destination::check(p, self.force)?),
        })
    }
}

/// Whether `p` names the standard output itself (`/dev/stdout`, or the file
/// or pipe stdout is redirected to): the same device and inode.
#[cfg(unix)]
fn names_stdout(p: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    let (Ok(path), Ok(out)) = (std::fs::metadata(p), out) else {
        return false;
    };
    path.dev() == out.dev() && path.ino() == out.ino()
}

#[cfg(not(unix))]
fn names_stdout(_: &std::path::Path) -> bool {
    false
}

impl JsonOut {
    /// Where the text report goes.
    pub(crate) fn text(&self) -> Text {
        Text(matches!(self, JsonOut::Stdout))
    }

    /// Writes `value`; says where on the text stream.
    pub(crate) fn emit(&self, value: &impl serde::Serialize, text: &Text) -> Result<()> {
        let s = serde_json::to_string_pretty(value)
            .map_err(|e| Error::internal("report", e.to_string()))?;
        match self {
            JsonOut::None => {}
            JsonOut::Stdout => out(&format!("{s}\n")),
            JsonOut::File(d) => {
                d.write(s.as_bytes())?;
                text.line(format_args!("wrote {}", d.path().display()));
            }
        }
        Ok(())
    }
}

/// Where a command's human-readable report goes: stdout, or stderr when the
/// JSON report takes stdout.
pub(crate) struct Text(pub(crate) bool);

impl Text {
    /// One line.
    pub(crate) fn line(&self, s: impl std::fmt::Display) {
        self.raw(&format!("{s}\n"));
    }

    /// Text that ends its own lines.
    pub(crate) fn raw(&self, s: &str) {
        if self.0 {
            err(s);
        } else {
            out(s);
        }
    }

    /// Text whose verdict words were marked as written
    /// ([`crate::report::style`]): in colour on a terminal (see
    /// [`use_colour`]).
    pub(crate) fn styled(&self, s: &crate::report::style::Styled) {
        use std::io::IsTerminal;
        let tty = if self.0 {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let colour = use_colour(
            tty,
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        );
        if colour {
            self.raw(&s.ansi());
        } else {
            self.raw(s.plain());
        }
    }
}

/// The first error writing the standard output met (other than a closed
/// pipe); `main` reports it and fails.
static STDOUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);
/// Whether the standard output's reader went away (a closed pipe).
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes `s` to the standard output, never panicking. A closed pipe
/// (`deepinit ... | head -1`) drops this and all later output quietly: the
/// command still finishes its work (a checkpoint is still written
/// completely), and `main` then exits with status 141 (128 + SIGPIPE, what
/// a shell reports for a process a broken pipe stops). Any other error (a
/// full device) is kept for [`stdout_error`] and fails the command.
pub(crate) fn out(s: &str) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut failed = STDOUT_ERROR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if failed.is_some() {
        return;
    }
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Err(e) => *failed = Some(e),
    }
}

/// Whether the standard output's reader went away during the run.
pub(crate) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes `s` to the standard error; errors are ignored (there is nowhere
/// left to report them).
pub(crate) fn err(s: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|()| e.flush());
}

/// The error writing the standard output met, if any.
pub(crate) fn stdout_error() -> Option<Error> {
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .map(|source| Error::Io {
            path: "<standard output>".into(),
            source,
        })
}

/// Colour only on a terminal, never when `NO_COLOR` is set to anything
/// non-empty (no-color.org), nor on a `dumb` terminal.
pub(crate) fn use_colour(
    tty: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(use_colour(true, None, Some(OsStr::new("xterm"))));
        assert!(!use_colour(false, None, Some(OsStr::new("xterm"))));
        assert!(!use_colour(true, Some(OsStr::new("1")), None));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(use_colour(true, Some(OsStr::new("")), None));
        assert!(!use_colour(true, None, Some(OsStr::new("dumb"))));
    }
}

/// `say!(text, "format", args...)`: one line of the text report.
macro_rules! say {
    ($t:expr) => {
        $t.line("")
    };
    ($t:expr, $($arg:tt)*) => {
        $t.line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// `deepinit adapters` options.
#[derive(Args, Debug, Clone)]
pub(crate) struct AdaptersArgs {
    #[command(flatten)]
    pub(crate) json: JsonArgs,
}

/// The weight distribution (`--dist`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DistChoice {
    /// Box-Muller normal.
    #[value(alias = "gaussian")]
    Normal,
    /// Normal cut at +-2 sigma, rescaled to the target variance.
    #[value(alias = "truncated_normal")]
    Truncated,
    /// Uniform on +-sqrt(3) sigma.
    Uniform,
}

impl From<DistChoice> for crate::Dist {
    fn from(d: DistChoice) -> Self {
        match d {
            DistChoice::Normal => crate::Dist::Normal,
            DistChoice::Truncated => crate::Dist::Truncated,
            DistChoice::Uniform => crate::Dist::Uniform,
        }
    }
}

/// The fan a variance scheme divides by (`--mode`). The variants are named
/// as the values users type (`fan_in`, ...).
#[allow(clippy::enum_variant_names)]
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub(crate) enum ModeChoice {
    /// Inputs per output (keeps the forward signal).
    FanIn,
    /// Outputs per input (keeps the backward signal).
    FanOut,
    /// Their mean (Glorot's compromise).
    FanAvg,
}

impl From<ModeChoice> for crate::FanMode {
    fn from(m: ModeChoice) -> Self {
        match m {
            ModeChoice::FanIn => crate::FanMode::FanIn,
            ModeChoice::FanOut => crate::FanMode::FanOut,
            ModeChoice::FanAvg => crate::FanMode::FanAvg,
        }
    }
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
    /// Where to run.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        global = true,
        help_heading = "Device"
    )]
    pub(crate) backend: BackendChoice,
    /// Use the adapter whose name contains NAME (overrides WGPU_ADAPTER_NAME).
    #[arg(long, value_name = "NAME", global = true, help_heading = "Device")]
    adapter: Option<String>,
    /// Do not use native 64-bit integers in the Philox rounds even if available.
    #[arg(long, global = true, help_heading = "Device")]
    no_int64: bool,
    /// GEMM variant: `auto` times every variant on first use of a shape
    /// class and caches the fastest (see `deepinit adapters`); or one of
    /// tiled64, tiled128, tiled128wide, tiled64wide, direct, subgroup.
    /// Default: the
    /// DEEPINIT_GEMM environment variable, else auto.
    #[arg(long, value_name = "VARIANT", global = true, help_heading = "Device")]
    gemm: Option<String>,
    /// Time the GEMM variants again instead of using the tuning cache.
    #[arg(long, global = true, help_heading = "Device")]
    retune: bool,
}

pub(crate) fn request(d: &DeviceArgs) -> AdapterRequest {
    AdapterRequest {
        name: d.adapter.clone(),
        backends: None,
        disable_int64: d.no_int64,
    }
}

/// Keeps display-server probes out of a compute tool's stderr.
///
/// Mesa installs an implicit Vulkan layer, `VK_LAYER_MESA_device_select`, that
/// connects to the Wayland and X servers while devices are enumerated, to list
/// the display's GPU first. Where there is no display (servers, CI, ssh)
/// libwayland then prints `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.`, twice per run, though nothing failed. deepinit never
/// presents and ranks adapters itself (`--adapter` chooses), so it turns the
/// layer off with the layer's own documented switch, `NODEVICE_SELECT=1`,
/// unless the user set that variable or configures the layer
/// (`MESA_VK_DEVICE_SELECT`, `DRI_PRIME`). Called first in `main`, before any
/// thread exists, so no other thread can be reading the environment.
pub(crate) fn quiet_display_probes() {
    let configured = ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT", "DRI_PRIME"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !configured {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

impl From<BackendChoice> for Policy {
    fn from(b: BackendChoice) -> Self {
        match b {
            BackendChoice::Auto => Policy::Auto,
            BackendChoice::Gpu => Policy::Gpu,
            BackendChoice::Cpu => Policy::Cpu,
        }
    }
}

/// Opens the backend per the device flags, telling the user when the CPU
/// stands in for a missing adapter.
pub(crate) fn open_backend(d: &DeviceArgs) -> Result<Backend> {
    let mode = gemm_mode(d)?;
    let opened = Backend::open(d.backend.into(), &request(d))?;
    if let Some(e) = &opened.fell_back {
        errln!("deepinit: {e}; falling back to the CPU backend");
    }
    if let Some(g) = opened.backend.gpu() {
        g.gemm().set_mode(mode)?;
        g.gemm()
            .set_reporter(Box::new(|note| errln!("deepinit: {note}")))?;
    }
    Ok(opened.backend)
}

/// The GEMM tuning mode of `--gemm` / `DEEPINIT_GEMM` and `--retune`.
pub(crate) fn gemm_mode(d: &DeviceArgs) -> Result<TuneMode> {
    let env = std::env::var("DEEPINIT_GEMM")
        .ok()
        .filter(|v| !v.is_empty());
    let (what, value) = match (&d.gemm, env) {
        (Some(v), _) => ("--gemm", v.clone()),
        (None, Some(v)) => ("DEEPINIT_GEMM", v),
        (None, None) => ("--gemm", "auto".to_string()),
    };
    if value == "auto" {
        return Ok(TuneMode::auto(d.retune));
    }
    match GemmVariant::from_name(&value) {
        Some(v) if !d.retune => Ok(TuneMode::Fixed(v)),
        Some(_) => Err(Error::bad(
            what,
            &value,
            "--retune has nothing to tune when the variant is fixed",
        )
        .expecting("auto (the default) with --retune")),
        None => {
            let names: Vec<&str> = std::iter::once("auto")
                .chain(GemmVariant::ALL.map(GemmVariant::name))
                .collect();
            Err(Error::bad(
                what,
                &value,
                format!(
                    "no such GEMM variant{}",
                    crate::error::did_you_mean(&value, &names)
                ),
            )
            .expecting(format!("one of {}", names.join(", "))))
        }
    }
}

/// A counted-steps progress reporter for demo and sweep runs.
pub(crate) fn progress_steps(label: &str) -> impl FnMut(usize, usize, &str) {
    let p = crate::progress::Progress::new(label);
    move |done, total, step| p.step(done, total, step)
}

pub(crate) fn print_failures(t: &Text, runs: &[crate::experiment::RunReport]) {
    use crate::report::style::{Outcome, Styled};
    use std::fmt::Write;
    let mut s = Styled::new();
    for r in runs {
        for f in r.verdict.failures.iter().take(5) {
            let _ = write!(s, "  ");
            s.outcome(Outcome::Fail, 0);
            let _ = writeln!(s, " {} / {}: {f}", r.scheme, r.activation);
        }
    }
    t.styled(&s);
}

pub(crate) fn exit_for(runs: &[crate::experiment::RunReport]) -> ExitCode {
    if runs.iter().all(|r| r.verdict.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
