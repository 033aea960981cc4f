//! The transformer pass's per-block table and verdict lines.

use crate::report::style::{Outcome, Sci, Styled};
use crate::tfm::run::TfmReport;
use std::fmt::Write;

/// The per-block table: each block's norm output, branches and stream, the
/// branch-to-stream ratios, attention's entropy, and with the backward pass
/// the loss gradient's norm at the block's input and the largest weight
/// gradient's norm (every block up to 24, else about 16 of them). At most
/// 100 columns.
pub(crate) fn blocks_table(r: &TfmReport) -> String {
    let s = &r.stats;
    let grads = s.grads.as_ref();
    let mut t = String::new();
    let _ = write!(
        t,
        "{:>5}{:>10}{:>10}{:>10}{:>10}{:>10}{:>7}{:>7}{:>8}",
        "block",
        "Var(ln)",
        "Var(attn)",
        "Var(x)",
        "Var(mlp)",
        "Var(x)",
        "attn/x",
        "mlp/x",
        "entropy"
    );
    if grads.is_some() {
        let _ = write!(t, "{:>9}{:>9}", "|dL/dx|", "max|dW|");
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:>5}{:>10}{:>10}{:>10}",
        "embed",
        "",
        "",
        Sci(s.embed.var)
    );
    let n = s.blocks.len();
    let step = if n <= 24 { 1 } else { n.div_ceil(16) };
    let mut before = s.embed.var;
    for (i, b) in s.blocks.iter().enumerate() {
        let mlp_in = if s.post_norm { &b.norm } else { &b.mid };
        let (attn_ratio, mlp_ratio) = (b.attn.var / before, b.mlp.var / mlp_in.var);
        before = s.stream_after(b).var;
        if !(b.block == 1 || (b.block as usize).is_multiple_of(step) || b.block as usize == n) {
            continue;
        }
        let _ = write!(
            t,
            "{:>5}{:>10}{:>10}{:>10}{:>10}{:>10}{:>7.2}{:>7.2}{:>8.3}",
            b.block,
            Sci(b.norm.var),
            Sci(b.attn.var),
            Sci(b.mid.var),
            Sci(b.mlp.var),
            Sci(b.out.var),
            attn_ratio,
            mlp_ratio,
            b.entropy_ratio,
        );
        if let Some(g) = grads.and_then(|g| g.blocks.get(i)) {
            let max = g.weights.iter().map(|w| w.norm).fold(0.0f64, f64::max);
            let _ = write!(t, "{:>9}{:>9}", Sci(g.stream_in), Sci(max));
        }
        let _ = writeln!(t);
    }
    t
}

/// The summary and verdict lines.
pub(crate) fn verdict_lines(r: &TfmReport) -> Styled {
    let s = &r.stats;
    let mut t = Styled::new();
    if let Some(last) = s.blocks.last() {
        let _ = writeln!(
            t,
            "residual stream: Var {:.3e} after the embeddings -> {:.3e} after block {} (x{:.3}); \
             final norm output Var {:.3e}",
            s.embed.var,
            s.stream_after(last).var,
            last.block,
            s.stream_after(last).var / s.embed.var,
            s.final_norm.var
        );
        if s.post_norm {
            let top = s
                .blocks
                .iter()
                .map(|b| b.mid.var.max(b.out.var))
                .fold(0.0, f64::max);
            let _ = writeln!(
                t,
                "post-norm: the stream is each LayerNorm's output; the Var(x) columns are the \
                 sums before the norms (largest {top:.3e})"
            );
        }
    }
    if let Some(l) = &s.logits {
        let _ = writeln!(t, "logits: std {:.4}, mean {:+.2e}", l.var.sqrt(), l.mean);
    }
    if let (Some(g), Some(first)) = (&s.grads, s.grads.as_ref().and_then(|g| g.blocks.first())) {
        let _ = writeln!(
            t,
            "{} gradient: ||dL/dx|| {:.3e} after the last block -> {:.3e} entering block 1 (x{:.3}){}",
            if r.direction == Some(crate::tfm::Direction::Loss) {
                "loss"
            } else {
                "random-direction"
            },
            g.stream_out,
            first.stream_in,
            first.stream_in / g.stream_out,
            g.head.map_or(String::new(), |h| format!("; ||dL/dW|| of the head {h:.3e}"))
        );
        if let Some(tw) = &g.transform {
            let _ = writeln!(
                t,
                "masked-LM head: ||dL/dW|| of the transform {:.3e} (bias {}){}",
                tw.norm,
                tw.bias.map_or("-".to_string(), |b| format!("{b:.3e}")),
                g.head_bias.map_or(String::new(), |b| format!(
                    "; of the decoder's bias {b:.3e}"
                ))
            );
        }
        if let Some(tg) = &g.tied {
            let _ = writeln!(
                t,
                "tied table {}: ||dL/dW|| {:.3e} (lookup {:.3e}, head {:.3e}, cross term {:+.3e})",
                tg.name, tg.norm, tg.lookup, tg.head, tg.cross
            );
        }
    }
    if !r.mlp_checks.is_empty() {
        let inside = r.mlp_checks.iter().filter(|c| c.pass).count();
        let worst = r
            .mlp_checks
            .iter()
            .map(|c| (c.measured - c.predicted).abs() / (c.band / 6.0))
            .fold(0.0f64, f64::max);
        let _ = write!(t, "MLP branch E[y^2] vs mean field (I s2^2 E[phi(z)^2]): ");
        t.outcome(Outcome::of(inside == r.mlp_checks.len()), 0);
        let _ = writeln!(
            t,
            ", {inside} of {} blocks within 6 sigma (largest |z| {worst:.2})",
            r.mlp_checks.len(),
        );
    }
    if !r.norm_checks.is_empty() {
        let inside = r.norm_checks.iter().filter(|c| c.pass).count();
        let short = r
            .norm_checks
            .iter()
            .max_by(|a, b| (1.0 - a.measured).total_cmp(&(1.0 - b.measured)));
        let _ = write!(t, "norm outputs E[y^2] vs mean of v/(v + eps) over rows: ");
        t.outcome(Outcome::of(inside == r.norm_checks.len()), 0);
        let _ = write!(
            t,
            ", {inside} of {} norms within rounding",
            r.norm_checks.len()
        );
        if let Some(c) = short {
            let _ = write!(
                t,
                " (furthest below 1: {} at {:.6}, rows' variances {:.3e} .. {:.3e})",
                c.norm, c.measured, c.row_var.0, c.row_var.1
            );
        }
        let _ = writeln!(t);
    }
    if let Some(c) = &r.loss_check {
        let _ = write!(t, "loss at init: ");
        t.outcome(
            if c.applies {
                Outcome::of(c.pass)
            } else {
                Outcome::NotRun
            },
            0,
        );
        let _ = writeln!(
            t,
            ", {:.4} over {} {} (ln V = {:.4}); predicted ln V + s^2/2 = {:.4} +- {:.4}{}",
            c.measured,
            s.loss_rows,
            if r.class.ends_with("ForMaskedLM") {
                "tokens (labels = input ids)"
            } else {
                "next tokens"
            },
            c.ln_vocab,
            c.predicted,
            c.band,
            if c.applies {
                ""
            } else {
                " (logits std >= 1: outside the small-logit prediction)"
            }
        );
    }
    match (&r.verify, &r.not_compared) {
        (Some(v), _) if v.comparison.identical() => {
            let _ = write!(t, "CPU mirror ({}): ", v.class);
            t.outcome(Outcome::Ok, 0);
            let _ = writeln!(
                t,
                ", identical, {} words (every statistics record, attention sum, loss term and norm row variance)",
                v.comparison.words
            );
        }
        (Some(v), _) => {
            let c = &v.comparison;
            let first = c.first.as_ref().map_or(String::new(), |(part, i, d, m)| {
                format!("; first in the {part}, word {i}: device {d:#010x}, CPU {m:#010x}")
            });
            let _ = write!(t, "CPU mirror ({}): ", v.class);
            t.outcome(Outcome::Fail, 0);
            let _ = writeln!(t, ", {} of {} words differ{first}", c.differing, c.words);
        }
        (None, Some(why)) => {
            let _ = write!(t, "CPU mirror: ");
            t.outcome(Outcome::NotRun, 0);
            let _ = writeln!(t, ", not compared ({why})");
        }
        (None, None) => {}
    }
    let _ = write!(t, "verdict: ");
    t.verdict(r.pass());
    let _ = writeln!(t);
    t
}

/// The picture: the residual stream's variance after each block (block 0:
/// the embeddings), the attention and MLP branches' variances (the MLP's
/// mean-field prediction dashed), attention's entropy relative to uniform,
/// and with the backward pass the loss gradient entering each block and the
/// MLP output projection's weight gradient, one colour per init.
pub(crate) fn variance_svg(reports: &[TfmReport]) -> String {
    use super::plot::{color, log_plot_svg, Panel, Series};
    let line = |label: &str, c: &str, dashed: bool, points: Vec<(f64, f64)>| Series {
        label: label.to_string(),
        color: c.to_string(),
        dashed,
        points,
        note: None,
    };
    let mut panels: Vec<Panel> = [
        "residual stream Var(x) after each block",
        "attention branch Var (before its addition)",
        "MLP branch E[y^2] (dashed: mean field)",
        "attention entropy / ln(keys)",
        "loss gradient ||dL/dx|| entering each block",
        "||dL/dW|| of each block's MLP output projection",
    ]
    .iter()
    .map(|t| Panel {
        title: t.to_string(),
        x_label: "block".into(),
        y_label: String::new(),
        series: Vec::new(),
        y_window: None,
    })
    .collect();
    for (i, r) in reports.iter().enumerate() {
        let c = color(i);
        let b = &r.stats.blocks;
        let stream = std::iter::once((0.0, r.stats.embed.var))
            .chain(
                b.iter()
                    .map(|x| (x.block as f64, r.stats.stream_after(x).var)),
            )
            .collect();
        panels[0].series.push(line(&r.init, &c, false, stream));
        let at = |f: &dyn Fn(&crate::tfm::BlockStats) -> f64| -> Vec<(f64, f64)> {
            b.iter().map(|x| (x.block as f64, f(x))).collect()
        };
        panels[1]
            .series
            .push(line(&r.init, &c, false, at(&|x| x.attn.var)));
        panels[2]
            .series
            .push(line(&r.init, &c, false, at(&|x| x.mlp.mean_sq)));
        panels[2].series.push(line(
            "",
            &c,
            true,
            r.mlp_checks
                .iter()
                .map(|m| (m.block as f64, m.predicted))
                .collect(),
        ));
        panels[3]
            .series
            .push(line(&r.init, &c, false, at(&|x| x.entropy_ratio)));
        if let Some(g) = &r.stats.grads {
            let pts = g
                .blocks
                .iter()
                .map(|b| (b.block as f64, b.stream_in))
                .chain(std::iter::once((g.blocks.len() as f64 + 1.0, g.stream_out)))
                .collect();
            panels[4].series.push(line(&r.init, &c, false, pts));
            let pts = g
                .blocks
                .iter()
                .map(|b| {
                    (
                        b.block as f64,
                        b.weights.last().map_or(f64::NAN, |w| w.norm),
                    )
                })
                .collect();
            panels[5].series.push(line(&r.init, &c, false, pts));
        }
    }
    let title = reports.first().map_or(String::new(), |r| {
        format!(
            "{} at init ({} blocks, width {}; {} x {} tokens): the signal per block under each init",
            r.class, r.layers, r.hidden, r.batch, r.seq
        )
    });
    panels.retain(|p| !p.series.is_empty());
    log_plot_svg(&title, &panels, 2)
}

/// One line per init: the stream's growth, the largest branch/stream ratio,
/// attention's entropy in the last block, the loss, and the checks.
pub(crate) fn summary_table(reports: &[TfmReport]) -> Styled {
    let mut t = Styled::new();
    let _ = writeln!(
        t,
        "{:<16}{:>11}{:>11}{:>9}{:>9}{:>9}{:>8}  {:<7}{:<12}{:<12}loss",
        "init",
        "Var(x_0)",
        "Var(x_L)",
        "growth",
        "entropy",
        "loss",
        "ln V",
        "mirror",
        "MLP",
        "norms"
    );
    for r in reports {
        let s = &r.stats;
        let last = s.blocks.last();
        let end = last.map_or(s.embed.var, |b| s.stream_after(b).var);
        let _ = write!(
            t,
            "{:<16}{:>11}{:>11}{:>9.1}{:>9.3}{:>9.3}{:>8.3}  ",
            r.init,
            Sci(s.embed.var),
            Sci(end),
            end / s.embed.var,
            last.map_or(f64::NAN, |b| b.entropy_ratio),
            s.loss.unwrap_or(f64::NAN),
            (r.vocab as f64).ln(),
        );
        t.outcome(
            Outcome::of_opt(r.verify.as_ref().map(|v| v.comparison.identical())),
            7,
        );
        // How many of a kind of check passed, as "ok 12/12".
        let mut checks = |pass: &[bool]| {
            let inside = pass.iter().filter(|&&p| p).count();
            t.outcome(
                if pass.is_empty() {
                    Outcome::NotRun
                } else {
                    Outcome::of(inside == pass.len())
                },
                5,
            );
            let count = format!("{inside}/{}", pass.len());
            let _ = write!(t, "{:<7}", if pass.is_empty() { "" } else { &count });
        };
        checks(&r.mlp_checks.iter().map(|c| c.pass).collect::<Vec<_>>());
        checks(&r.norm_checks.iter().map(|c| c.pass).collect::<Vec<_>>());
        t.outcome(
            match &r.loss_check {
                Some(c) if c.applies => Outcome::of(c.pass),
                _ => Outcome::NotRun,
            },
            0,
        );
        let _ = writeln!(t);
    }
    let _ = writeln!(
        t,
        "(mirror: every word equal to the CPU mirror; MLP: blocks whose MLP branch is within\n\
         its mean-field band; norms: norms whose output's mean square is the mean of v/(v + eps)\n\
         over its input rows within rounding; loss: within its band of ln V + s^2/2, n/a where\n\
         the logits' std is 1 or more or there is no head)"
    );
    t
}

/// Writes the reports and the picture into `out`; returns their paths.
pub(crate) fn write_outputs(
    out: &crate::io::output::OutputDir,
    reports: &[crate::tfm::run::TfmReport],
) -> crate::Result<Vec<std::path::PathBuf>> {
    let text = serde_json::to_string_pretty(reports)
        .map_err(|e| crate::Error::internal("report", e.to_string()))?;
    let svg = variance_svg(reports);
    let png = super::plot::svg_to_png(&svg)?;
    out.write(&[
        (crate::app::transformer::OUTPUT_FILES[0], text.into_bytes()),
        (crate::app::transformer::OUTPUT_FILES[1], svg.into_bytes()),
        (crate::app::transformer::OUTPUT_FILES[2], png),
    ])
}
