//! `deepinit inspect`: per-tensor statistics of any safetensors checkpoint,
//! judged against a spec (given, or the one a deepinit checkpoint records)
//! or against the standard rules.

use super::*;
use crate::model::inspect::{self, Report, TensorVerdict};
use crate::report::style::{sci_or_dash, Outcome, Styled};
use clap::Args;
use std::fmt::Write;
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
    t.styled(&render(&report));
    json.emit(&report, &t)?;
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn render(r: &Report) -> Styled {
    let mut s = Styled::new();
    let _ = writeln!(
        s,
        "deepinit inspect: {} file(s), {} tensors; reference: {}",
        r.files.len(),
        r.tensors.len(),
        r.reference
            .as_deref()
            .unwrap_or("none (closest standard rule shown)")
    );
    if let Some(n) = &r.config_note {
        let _ = writeln!(s, "note: {n}");
    }
    let dtypes: std::collections::BTreeSet<String> =
        r.tensors.iter().map(|t| t.dtype.to_string()).collect();
    let _ = writeln!(
        s,
        "dtype: {}; std columns: what He, LeCun and Xavier give for the fans ([out, in] layout)\n",
        dtypes.into_iter().collect::<Vec<_>>().join(", ")
    );
    // Names are never cut (grep finds every one): the column is as wide as
    // the longest.
    let nw = r
        .tensors
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(
        s,
        "{:<nw$} {:>12} {:>9} {:>8} {:>8} {:>8} {:>8}  check",
        "tensor", "shape", "mean", "std", "he", "lecun", "xavier"
    );
    for t in &r.tensors {
        let shape = t
            .shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let _ = write!(
            s,
            "{:<nw$} {:>12} {:>9} {:>8} {:>8} {:>8} {:>8}  ",
            t.name,
            shape,
            t.mean.map_or("-".into(), |m| format!("{m:+.1e}")),
            sci_or_dash(t.std),
            sci_or_dash(t.rule_std.map(|r| r.he)),
            sci_or_dash(t.rule_std.map(|r| r.lecun)),
            sci_or_dash(t.rule_std.map(|r| r.xavier)),
        );
        match t.verdict {
            TensorVerdict::Info => {
                let _ = write!(s, "{}", t.note);
            }
            v => {
                s.outcome(Outcome::of(v == TensorVerdict::Pass), 0);
            }
        }
        let _ = writeln!(s);
    }
    let failed: Vec<_> = r
        .tensors
        .iter()
        .filter(|t| t.verdict == TensorVerdict::Fail)
        .collect();
    if r.reference.is_none() && !failed.is_empty() {
        let _ = write!(s, "\nverdict: ");
        s.verdict(false);
        let _ = writeln!(s);
        for t in &failed {
            let _ = writeln!(s, "  - {}: {}", t.name, t.note);
        }
    }
    if r.reference.is_some() {
        let judged = r
            .tensors
            .iter()
            .filter(|t| t.verdict != TensorVerdict::Info)
            .count();
        let _ = write!(
            s,
            "\n{judged} tensors judged at alpha {} each; verdict: ",
            r.alpha
        );
        s.verdict(r.pass);
        let _ = writeln!(s);
        for t in failed {
            let _ = writeln!(s, "  - {}: {}", t.name, t.note);
        }
        for m in &r.missing {
            let _ = writeln!(s, "  - {m}: in the reference, in no file");
        }
        for t in r
            .tensors
            .iter()
            .filter(|t| t.verdict == TensorVerdict::Info)
        {
            let _ = writeln!(s, "  - {}: {} (not judged)", t.name, t.note);
        }
    }
    s
}
