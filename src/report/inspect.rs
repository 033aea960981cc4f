//! `deepinit inspect`'s table: per tensor its statistics, the standard
//! rules' std for its fans, and its check; then the verdict.

use crate::model::inspect::{Report, TensorVerdict};
use crate::report::style::{sci_or_dash, Outcome, Styled};
use std::fmt::Write;

/// `deepinit inspect`'s table and verdict.
pub(crate) fn render(r: &Report) -> Styled {
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
