//! The forward command's per-layer table and verdict lines.

use crate::experiment::{CpuStatus, RunReport, RunVerdict, TheoryStatus};
use crate::report::style::{Outcome, Sci, Styled};
use std::fmt::Write;

impl From<CpuStatus> for Outcome {
    fn from(c: CpuStatus) -> Outcome {
        match c {
            CpuStatus::Match => Outcome::Ok,
            CpuStatus::Mismatch => Outcome::Fail,
            CpuStatus::NotCompared => Outcome::NotRun,
        }
    }
}

impl From<TheoryStatus> for Outcome {
    fn from(t: TheoryStatus) -> Outcome {
        match t {
            TheoryStatus::Match => Outcome::Ok,
            TheoryStatus::Deviates => Outcome::Fail,
            TheoryStatus::NotApplicable => Outcome::NotRun,
        }
    }
}

/// The per-layer table (every layer up to 20, else about 12 of them), at
/// most 100 columns wide.
pub(crate) fn layers_table(r: &RunReport) -> Styled {
    let mut s = Styled::new();
    let _ = writeln!(
        s,
        "{:>5}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>6}{:>6}{:>6}  {:<6}theory",
        "layer",
        "Var(z)",
        "theory",
        "Var(a)",
        "Var(d)",
        "theory",
        "|dW|_F",
        "chi1",
        "dead",
        "sat",
        "CPU",
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
        let _ = write!(
            s,
            "{:>5}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>6.3}{:>6.3}{:>6.3}  ",
            l.layer,
            Sci(l.pre_var),
            Sci(l.theory_pre_var),
            Sci(l.post_var),
            Sci(l.grad_var),
            Sci(l.theory_grad_var),
            Sci(l.grad_w_norm),
            l.chi1,
            l.dead_frac,
            l.saturated_frac,
        );
        s.outcome(l.cpu_check.into(), 6)
            .outcome(l.theory_check.into(), 0);
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "(d = delta, the gradient w.r.t. z; |dW|_F the weight gradient's norm; dead, sat: fractions)"
    );
    s
}

/// The verdict lines: the CPU reference, then theory and the weight test,
/// each `name: ok|FAIL|n/a, what was found`.
pub(crate) fn verdict_lines(v: &RunVerdict, not_compared: &str) -> Styled {
    let mut s = Styled::new();
    let _ = write!(s, "CPU mirror: ");
    s.outcome(Outcome::of_opt(v.cpu_match), 0);
    let _ = match (v.cpu_match, &v.first_difference) {
        (None, _) => writeln!(s, ", {not_compared}"),
        (Some(true), _) => writeln!(
            s,
            ", bit-identical ({} layers, {} words compared, {} arithmetic)",
            v.compared_layers,
            v.compared_words,
            v.arithmetic.as_deref().unwrap_or("?")
        ),
        (Some(false), Some(d)) => writeln!(
            s,
            ", differs from layer {}: {} ({} layers, {} words compared)",
            d.layer, d.statistic, v.compared_layers, v.compared_words
        ),
        (Some(false), None) => writeln!(
            s,
            ", not verified: {}",
            v.arithmetic.as_deref().unwrap_or("no arithmetic class")
        ),
    };
    // Coverage first: "matches" only when most layers were checked.
    let _ = write!(s, "theory: ");
    s.outcome(Outcome::of(v.theory_match), 0);
    let _ = writeln!(
        s,
        ", {} ({} of {} layers checked, the rest n/a)",
        match (v.theory_match, v.theory_layers) {
            (false, _) => "deviates".to_string(),
            (true, 0) => "not checked on any layer".to_string(),
            (true, k) if 2 * k < v.layers => format!("no deviation on the {k} checked layers"),
            (true, _) => "matches".to_string(),
        },
        v.theory_layers,
        v.layers
    );
    let _ = write!(s, "weight test: ");
    match &v.weight_test {
        Some(w) => {
            s.outcome(Outcome::of(w.pass), 0);
            let _ = writeln!(
                s,
                ", variance {:+.2}% +- {:.2}% (|T| {:.2} vs {:.2})",
                100.0 * w.mean_excess,
                100.0 * w.std_error,
                w.z.abs(),
                w.critical,
            );
        }
        None => {
            s.outcome(Outcome::NotRun, 0);
            let _ = writeln!(s, ", {}", v.weight_test_na.as_deref().unwrap_or("not run"));
        }
    }
    if let Some(l) = v.overflow_at {
        let _ = writeln!(s, "the signal overflowed f32 at layer {l}");
    }
    let _ = write!(s, "verdict: ");
    s.verdict(v.passed());
    let _ = writeln!(s);
    s
}
