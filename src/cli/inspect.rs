//! `deepinit inspect`: per-tensor statistics of any safetensors checkpoint,
//! judged against a spec (given, or the one a deepinit checkpoint records)
//! or against the standard rules.

use super::*;
use crate::model::inspect;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub(crate) struct InspectArgs {
    /// A .safetensors file, or a checkpoint directory (sharded or not).
    #[arg(value_name = "FILE_OR_DIR")]
    path: PathBuf,
    /// Judge against this spec (TOML or JSON) instead of the recorded one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["preset", "config"])]
    spec: Option<PathBuf>,
    /// Judge against a preset (see `deepinit model --help`).
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    preset: Option<String>,
    /// Judge against a Hugging Face config.json's family rules (by default
    /// the config.json beside the checkpoint is read when it records no spec).
    #[arg(long, value_name = "FILE|DIR")]
    config: Option<PathBuf>,
    /// The rule a --config or --preset is judged by: reference, lecun, he,
    /// lecun-unscaled, he-unscaled, naive:STD.
    #[arg(long, value_name = "RULE", default_value = "reference")]
    init: String,
    /// False-alarm rate of each test.
    #[arg(long, default_value_t = 1e-3, value_parser = num::real_between(0.0, 0.5))]
    alpha: f64,
    #[command(flatten)]
    json: JsonArgs,
}

pub(crate) fn run_inspect(a: &InspectArgs) -> Result<ExitCode> {
    if !(a.alpha > 0.0 && a.alpha < 0.5) {
        return Err(Error::bad("alpha", a.alpha, "must be between 0 and 0.5"));
    }
    let reference = match (&a.spec, &a.preset, &a.config) {
        (None, None, None) => {
            if a.init != "reference" {
                return Err(Error::invalid("init", "--init needs --config or --preset"));
            }
            None
        }
        _ => {
            let n = super::model::named(
                a.config.as_deref(),
                a.preset.as_deref(),
                a.spec.as_deref(),
                &a.init,
            )?;
            Some((n.spec, n.what, n.hf.is_some()))
        }
    };
    let json = a.json.open()?;
    let progress = crate::progress::Progress::new("reading the checkpoint");
    let report = inspect::inspect(
        &a.path,
        reference
            .as_ref()
            .map(|(spec, source, hf)| inspect::Against {
                spec,
                source,
                hf: *hf,
            }),
        a.alpha,
        Some(&progress),
    )?;
    progress.finish();
    let t = json.text();
    t.styled(&crate::report::inspect::render(&report));
    json.emit(&report, &t)?;
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
