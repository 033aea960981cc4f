//! `deepinit sweep`: the variance multiplier as a hyperparameter.

use super::*;
use crate::act::Activation;
use crate::init::scheme::Scheme;
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub(crate) struct SweepArgs {
    /// relu, leaky_relu[:a], tanh, sigmoid, selu, gelu (tanh form), gelu_erf, linear.
    #[arg(long, default_value = "tanh", value_parser = Activation::parse)]
    act: Activation,
    /// Base scheme whose variance the multiplier scales (lecun: multiplier = sigma_w^2).
    #[arg(long, default_value = "lecun", value_parser = Scheme::parse)]
    scheme: Scheme,
    /// Multipliers: start:stop:step or a comma list.
    #[arg(long, default_value = "0.25:4:0.25")]
    multiplier: String,
    /// Depth.
    #[arg(long, default_value_t = 50, value_parser = num::usize_in(1, crate::net::MAX_DEPTH as u64))]
    depth: usize,
    /// Width of every layer.
    #[arg(long, default_value_t = 256, value_parser = num::int_in(1u64, 1 << 30))]
    width: u64,
    /// Batch (even: the inputs come in correlated pairs).
    #[arg(long, default_value_t = 64, value_parser = num::int_in(2u64, 1 << 30))]
    batch: u64,
    /// Bias standard deviation.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    bias_std: f64,
    /// Seed.
    #[arg(long, default_value_t = 0, value_parser = num::seed)]
    seed: u64,
    /// Skip the CPU reference of every multiplier's network.
    #[arg(long)]
    no_verify: bool,
    /// Deprecated: verification is now the default (use --no-verify to skip).
    #[arg(long, hide = true)]
    verify: bool,
    /// Directory for sweep.json, heatmap.{svg,png}, curves.{svg,png},
    /// histograms.{svg,png} (--force replaces files deepinit did not write).
    #[arg(long, default_value = "deepinit-sweep")]
    out_dir: PathBuf,
    /// The sweep report (the same as sweep.json) as JSON.
    #[command(flatten)]
    json: JsonArgs,
}

pub(crate) fn run_sweep(a: &SweepArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use crate::app::sweep;
    let act = a.act;
    let cfg = sweep::SweepConfig {
        act,
        scheme: a.scheme,
        multipliers: sweep::parse_grid(&a.multiplier)?,
        depth: a.depth,
        width: a.width,
        batch: a.batch,
        bias_std: a.bias_std,
        seed: a.seed,
        verify: !a.no_verify,
    };
    if a.verify {
        errln!(
            "deepinit: note: --verify is deprecated (verification is the default; --no-verify skips it)"
        );
    }
    if a.batch < 2 || !a.batch.is_multiple_of(2) {
        return Err(Error::invalid(
            "batch",
            format!(
                "{} (a sweep needs an even batch of at least 2: input pairs)",
                a.batch
            ),
        ));
    }
    let mut probe = crate::net::NetConfig::uniform(cfg.scheme, act, a.width, a.depth, a.batch);
    probe.bias_std = a.bias_std;
    probe.validate()?;
    crate::net::reference::check_host_memory(&probe)?;
    let mut outputs = a.json.file();
    outputs.extend(
        sweep::OUTPUT_FILES
            .iter()
            .chain([&crate::io::output::MANIFEST])
            .map(|f| (format!("the sweep's {f}"), a.out_dir.join(f))),
    );
    crate::io::output::check_distinct(&outputs)?;
    let json = a.json.open()?;
    let out = crate::io::output::OutputDir::check(&a.out_dir, &sweep::OUTPUT_FILES, a.json.force)?;
    let t = json.text();
    let backend = open_backend(d)?;
    say!(
        t,
        "deepinit sweep: {} / {} x multiplier, width {}, depth {}, bias std {}\n\
         batch {}: {} input pairs of correlation {}",
        act.name(),
        cfg.scheme.name(),
        a.width,
        a.depth,
        a.bias_std,
        a.batch,
        a.batch / 2,
        sweep::INPUT_CORRELATION
    );
    say!(t, "device: {}", backend.info().describe());
    say!(t);
    let report = sweep::run(&backend, &cfg, progress_steps("sweep"))?;
    t.styled(&crate::report::sweep::table(&report));
    let hist = sweep::histograms(&cfg, &report)?;
    for p in crate::report::sweep::write_outputs(&out, &report, &hist)? {
        say!(t, "wrote {}", p.display());
    }
    let runs: Vec<_> = report.points.iter().map(|p| p.run.clone()).collect();
    print_failures(&t, &runs);
    json.emit(&report, &t)?;
    let ok = exit_for(&runs) == ExitCode::SUCCESS && report.critical_match != Some(false);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
