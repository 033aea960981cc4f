//! `deepinit demo` (the default command): the lecture as an experiment.

use super::*;
use crate::Result;
use clap::{Args, Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SizeChoice {
    /// Width 256, depth 50, batch 64: ~20 s on a 2-core CPU through lavapipe.
    Default,
    /// Width 4096, depth 100, batch 128: for real GPUs.
    Big,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    /// Network size.
    #[arg(long, value_enum, default_value = "default")]
    size: SizeChoice,
    /// Directory for report.json and variance.{svg,png}.
    #[arg(long, default_value = "deepinit-out")]
    out_dir: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 0, value_parser = num::seed)]
    seed: u64,
    /// Skip the CPU reference (GPU only).
    #[arg(long)]
    no_verify: bool,
    /// Replace files in --out-dir that deepinit did not write (its own
    /// results there are always replaced while unchanged).
    #[arg(long)]
    force: bool,
    /// Show a transformer instead: a shipped preset (gpt2, llama-3.2-1b, ...)
    /// or a config.json, under five inits side by side (transformer.json,
    /// transformer.{svg,png}).
    #[arg(long, value_name = "PRESET|CONFIG", conflicts_with = "size")]
    model: Option<String>,
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

pub(crate) fn run_demo(a: &DemoArgs, d: &DeviceArgs) -> Result<ExitCode> {
    if let Some(m) = &a.model {
        return run_model_demo(a, m, d);
    }
    let size = match a.size {
        SizeChoice::Default => crate::app::demo::Size::DEFAULT,
        SizeChoice::Big => crate::app::demo::Size::BIG,
    };
    let out =
        crate::io::output::OutputDir::check(&a.out_dir, &crate::app::demo::OUTPUT_FILES, a.force)?;
    let backend = open_backend(d)?;
    outln!(
        "deepinit demo: does the signal keep its scale through {} layers of width {}? (batch {}, seed {})",
        size.depth, size.width, size.batch, a.seed
    );
    outln!("device: {}", backend.info().describe());
    outln!();
    let runs = crate::app::demo::run(&backend, size, a.seed, !a.no_verify, progress_steps("demo"))?;
    Text(false).styled(&crate::report::demo::table(&runs));
    let report = crate::app::demo::Report {
        device: backend.info(),
        config: serde_json::json!({
            "size": format!("{:?}", a.size).to_lowercase(),
            "width": size.width, "depth": size.depth, "batch": size.batch, "seed": a.seed,
            "schemes": crate::app::demo::SCHEMES.map(|s| s.name()),
            "activations": crate::app::demo::ACTIVATIONS.map(|a| a.name()),
            "verify": !a.no_verify,
        }),
        runs,
    };
    outln!("sw^2 = Var(W) * fan_in. ReLU keeps Var(z) when sw^2 = 2 (He) and scales it by sw^2/2");
    outln!("per layer; tanh keeps a signal near sw^2 = 1. Far from that, the signal vanishes or");
    outln!("explodes. To find the multiplier for an activation and depth:");
    outln!(
        "  deepinit sweep --act relu --depth {}   (or --act tanh)",
        size.depth
    );
    print_failures(&Text(false), &report.runs);
    outln!();
    for p in crate::report::demo::write_outputs(&out, &report)? {
        outln!("wrote {}", p.display());
    }
    Ok(exit_for(&report.runs))
}

/// `demo --model`: one transformer under several inits.
fn run_model_demo(a: &DemoArgs, name: &str, d: &DeviceArgs) -> Result<ExitCode> {
    use crate::app::transformer as tdemo;
    let path = std::path::Path::new(name);
    let (config, preset) = if path.exists() {
        (Some(path), None)
    } else {
        (None, Some(name))
    };
    let named = super::model::named(config, preset, None, "reference")?;
    let source = match config {
        Some(p) => format!("config {}", p.display()),
        None => format!("preset {name}"),
    };
    let Some(hf) = named.hf else {
        return Err(crate::Error::invalid(
            "model",
            "demo --model shows a transformer; an mlp preset is the plain demo (omit --model)",
        ));
    };
    crate::tfm::TfmConfig::from_hf(&hf)?;
    let out = crate::io::output::OutputDir::check(&a.out_dir, &tdemo::OUTPUT_FILES, a.force)?;
    let backend = open_backend(d)?;
    outln!(
        "deepinit demo: does the signal keep its scale through {} ({source})? {} x {} random tokens, seed {}",
        hf.class, tdemo::BATCH, tdemo::SEQ, a.seed
    );
    outln!("device: {}", backend.info().describe());
    outln!();
    let reports = tdemo::run(
        &backend,
        &hf,
        &source,
        a.seed,
        !a.no_verify,
        progress_steps("demo"),
    )?;
    Text(false).styled(&crate::report::transformer::summary_table(&reports));
    outln!();
    outln!("Var(x_0): the stream after the embeddings; Var(x_L): after the last block; entropy:");
    outln!("the last block's attention entropy over ln(keys) (1: uniform). Per block and init:");
    outln!("  deepinit forward --preset NAME --init INIT");
    outln!();
    let pass = reports.iter().all(|r| r.pass());
    for p in crate::report::transformer::write_outputs(&out, &reports)? {
        outln!("wrote {}", p.display());
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
