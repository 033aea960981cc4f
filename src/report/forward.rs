//! The forward command's per-layer table and verdict lines.

use crate::experiment::{RunReport, RunVerdict};
use std::fmt::Write;

/// The per-layer table (every layer up to 20, else about 12 of them), at
/// most 100 columns wide.
pub(crate) fn layers_table(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>6}{:>6}{:>6}  {:<13}theory",
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
        let _ = writeln!(
            s,
            "{:>5}{:>9.2e}{:>9.2e}{:>9.2e}{:>9.2e}{:>9.2e}{:>9.2e}{:>6.3}{:>6.3}{:>6.3}  {:<13}{}",
            l.layer,
            l.pre_var,
            l.theory_pre_var,
            l.post_var,
            l.grad_var,
            l.theory_grad_var,
            l.grad_w_norm,
            l.chi1,
            l.dead_frac,
            l.saturated_frac,
            l.cpu_check,
            l.theory_check
        );
    }
    let _ = writeln!(
        s,
        "(d = delta, the gradient w.r.t. z; |dW|_F the weight gradient's norm; dead, sat: fractions)"
    );
    s
}

/// The verdict lines: the CPU reference, then theory and the weight test.
pub(crate) fn verdict_lines(v: &RunVerdict, not_compared: &str) -> String {
    let cpu = match v.cpu_match {
        None => not_compared.to_string(),
        Some(true) => format!(
            "bit-identical ({} layers, {} words compared, {} arithmetic)",
            v.compared_layers,
            v.compared_words,
            v.arithmetic.as_deref().unwrap_or("?")
        ),
        Some(false) => match &v.first_difference {
            Some(d) => format!(
                "DIFFERS from layer {}: {} ({} layers, {} words compared)",
                d.layer, d.statistic, v.compared_layers, v.compared_words
            ),
            None => format!(
                "NOT VERIFIED: {}",
                v.arithmetic.as_deref().unwrap_or("no arithmetic class")
            ),
        },
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
        None => format!(
            "weight test n/a: {}",
            v.weight_test_na.as_deref().unwrap_or("not run")
        ),
    };
    let mut s = String::new();
    let _ = writeln!(s, "verdict: CPU mirror {cpu}");
    // Coverage first: "match" only when most layers were checked.
    let theory = match (v.theory_match, v.theory_layers) {
        (false, _) => "DEVIATES".to_string(),
        (true, 0) => "not checked on any layer (all n/a)".to_string(),
        (true, k) if 2 * k < v.layers => format!("no deviation on the {k} checked layers"),
        (true, _) => "match".to_string(),
    };
    let _ = writeln!(
        s,
        "         theory {theory} ({} of {} layers checked, the rest n/a); {weights}",
        v.theory_layers, v.layers
    );
    if let Some(l) = v.overflow_at {
        let _ = writeln!(s, "the signal overflowed f32 at layer {l}");
    }
    s
}
