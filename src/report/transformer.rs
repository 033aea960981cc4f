//! The transformer pass's per-block table and verdict lines.

use crate::tfm::run::TfmReport;
use std::fmt::Write;

/// The per-block table: each block's norm output, branches and stream, the
/// branch-to-stream ratios and attention's entropy (every block up to 24,
/// else about 16 of them).
pub fn blocks_table(r: &TfmReport) -> String {
    let s = &r.stats;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>6}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}{:>8}{:>9}{:>7}",
        "block",
        "Var(ln)",
        "Var(attn)",
        "Var(x)",
        "Var(mlp)",
        "Var(x)",
        "attn/x",
        "mlp/x",
        "entropy",
        "max p"
    );
    let _ = writeln!(
        t,
        "{:>6}{:>10}{:>10}{:>10.3e}",
        "embed", "", "", s.embed.var
    );
    let n = s.blocks.len();
    let step = if n <= 24 { 1 } else { n.div_ceil(16) };
    let mut before = s.embed.var;
    for b in &s.blocks {
        let (attn_ratio, mlp_ratio) = (b.attn.var / before, b.mlp.var / b.mid.var);
        before = b.out.var;
        if !(b.block == 1 || (b.block as usize).is_multiple_of(step) || b.block as usize == n) {
            continue;
        }
        let _ = writeln!(
            t,
            "{:>6}{:>10.3e}{:>10.3e}{:>10.3e}{:>10.3e}{:>10.3e}{:>8.2}{:>8.2}{:>9.3}{:>7.3}",
            b.block,
            b.norm.var,
            b.attn.var,
            b.mid.var,
            b.mlp.var,
            b.out.var,
            attn_ratio,
            mlp_ratio,
            b.entropy_ratio,
            b.max_prob
        );
    }
    t
}

/// The summary and verdict lines.
pub fn verdict_lines(r: &TfmReport) -> String {
    let s = &r.stats;
    let mut t = String::new();
    if let Some(last) = s.blocks.last() {
        let _ = writeln!(
            t,
            "residual stream: Var {:.3e} after the embeddings -> {:.3e} after block {} (x{:.3}); \
             final norm output Var {:.3e}",
            s.embed.var,
            last.out.var,
            last.block,
            last.out.var / s.embed.var,
            s.final_norm.var
        );
    }
    if let Some(l) = &s.logits {
        let _ = writeln!(t, "logits: std {:.4}, mean {:+.2e}", l.var.sqrt(), l.mean);
    }
    if !r.mlp_checks.is_empty() {
        let inside = r.mlp_checks.iter().filter(|c| c.pass).count();
        let worst = r
            .mlp_checks
            .iter()
            .map(|c| (c.measured - c.predicted).abs() / (c.band / 6.0))
            .fold(0.0f64, f64::max);
        let _ = writeln!(
            t,
            "MLP branch E[y^2] vs mean field (I s2^2 E[phi(z)^2]): {inside} of {} blocks within 6 sigma (largest |z| {worst:.2}){}",
            r.mlp_checks.len(),
            if inside == r.mlp_checks.len() { "" } else { ": FAIL" }
        );
    }
    if let Some(c) = &r.loss_check {
        let verdict = if !c.applies {
            "no verdict: logits std >= 1, outside the small-logit prediction".to_string()
        } else if c.pass {
            "PASS".into()
        } else {
            "FAIL".into()
        };
        let _ = writeln!(
            t,
            "loss at init {:.4} over {} next tokens (ln V = {:.4}); predicted ln V + s^2/2 = {:.4} +- {:.4}: {verdict}",
            c.measured, s.loss_rows, c.ln_vocab, c.predicted, c.band
        );
    }
    match (&r.verify, &r.not_compared) {
        (Some(v), _) if v.comparison.identical() => {
            let _ = writeln!(
                t,
                "CPU mirror ({}): identical, {} words (every statistics record, attention sum and loss term)",
                v.class, v.comparison.words
            );
        }
        (Some(v), _) => {
            let c = &v.comparison;
            let first = c.first.as_ref().map_or(String::new(), |(part, i, d, m)| {
                format!("; first in the {part}, word {i}: device {d:#010x}, CPU {m:#010x}")
            });
            let _ = writeln!(
                t,
                "CPU mirror ({}): FAIL, {} of {} words differ{first}",
                v.class, c.differing, c.words
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(t, "CPU mirror: not compared ({why})");
        }
        (None, None) => {}
    }
    let _ = writeln!(t, "verdict: {}", if r.pass() { "PASS" } else { "FAIL" });
    t
}
