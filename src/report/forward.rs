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

/// The theory column of the demo's and sweep's tables: every checked layer
/// and the weight test; `n/a` when neither ran.
pub(crate) fn theory_outcome(v: &RunVerdict) -> Outcome {
    if v.theory_layers == 0 && v.weight_test.is_none() {
        Outcome::NotRun
    } else {
        Outcome::of(v.theory_match)
    }
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
    // The layers against the theory (the weight test has its own line).
    // Coverage first: "matches" only when most layers were checked.
    let _ = write!(s, "theory: ");
    let (checked, deviating) = (v.theory_layers, v.theory_deviations);
    s.outcome(
        if checked == 0 {
            Outcome::NotRun
        } else {
            Outcome::of(deviating == 0)
        },
        0,
    );
    let _ = writeln!(
        s,
        ", {} ({checked} of {} layers checked, the rest n/a)",
        match (deviating, checked) {
            (0, 0) => "not checked on any layer".to_string(),
            (0, k) if 2 * k < v.layers => format!("no deviation on the {k} checked layers"),
            (0, _) => "matches".to_string(),
            (d, _) => format!("deviates on {d} layers"),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::theory::WeightTest;

    fn verdict() -> RunVerdict {
        RunVerdict {
            cpu_match: Some(true),
            theory_match: true,
            arithmetic: Some("two-rounding fma".into()),
            compared_layers: 3,
            compared_words: 99,
            first_difference: None,
            theory_layers: 3,
            theory_deviations: 0,
            layers: 3,
            overflow_at: None,
            weight_test: Some(WeightTest {
                layers: 3,
                mean_excess: 0.001,
                std_error: 0.002,
                z: 0.5,
                critical: 3.29,
                pass: true,
            }),
            weight_test_na: None,
            failures: Vec::new(),
        }
    }

    /// The words each line starts with, after its name.
    fn words(s: &Styled) -> Vec<String> {
        s.plain()
            .lines()
            .map(|l| {
                let (_, rest) = l.split_once(": ").unwrap_or(("", l));
                rest.split([',', ' ']).next().unwrap_or("").to_string()
            })
            .collect()
    }

    #[test]
    fn each_check_says_ok_fail_or_na_by_what_ran() {
        assert_eq!(
            words(&verdict_lines(&verdict(), "-")),
            ["ok", "ok", "ok", "PASS"]
        );
        // Nothing compared, no layer checked, no weight test: n/a, not ok.
        let mut v = verdict();
        (v.cpu_match, v.theory_layers, v.weight_test) = (None, 0, None);
        assert_eq!(
            words(&verdict_lines(&v, "not compared")),
            ["n/a", "n/a", "n/a", "PASS"]
        );
        assert_eq!(theory_outcome(&v), Outcome::NotRun);
        // Only the weight test failed: the layers still match the theory.
        let mut v = verdict();
        v.theory_match = false;
        if let Some(w) = &mut v.weight_test {
            w.pass = false;
        }
        let lines = verdict_lines(&v, "-");
        assert_eq!(words(&lines), ["ok", "ok", "FAIL", "FAIL"]);
        assert_eq!(theory_outcome(&v), Outcome::Fail);
        // A deviating layer, and a mismatch located.
        let mut v = verdict();
        (v.theory_match, v.theory_deviations, v.cpu_match) = (false, 2, Some(false));
        let lines = verdict_lines(&v, "-");
        assert_eq!(words(&lines), ["FAIL", "FAIL", "ok", "FAIL"]);
        assert!(
            lines.plain().contains("deviates on 2 layers"),
            "{}",
            lines.plain()
        );
        // The failing words, and only they, are marked red.
        assert_eq!(lines.ansi().matches("\x1b[1;31mFAIL\x1b[0m").count(), 3);
    }
}
