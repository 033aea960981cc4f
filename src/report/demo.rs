//! The demo's text table and its variance picture.

use crate::experiment::RunReport;
use crate::report::plot::{self, Panel, Series};
use crate::report::style::{Outcome, Sci, Styled};
use std::fmt::Write;

/// Layers shown in the table: 1, L/2, L (distinct, in order).
pub(crate) fn shown_layers(depth: usize) -> Vec<usize> {
    let mut v = vec![1, depth.div_ceil(2), depth];
    v.retain(|&l| l >= 1);
    v.dedup();
    v
}

/// The demo's table, one block per activation, at most 100 columns wide.
pub(crate) fn table(runs: &[RunReport]) -> Styled {
    let mut s = Styled::new();
    for act in crate::app::demo::ACTIVATIONS.map(|a| a.name()) {
        let rs: Vec<&RunReport> = runs.iter().filter(|r| r.activation == act).collect();
        let Some(first) = rs.first() else { continue };
        let layers = shown_layers(first.depth);
        let _ = writeln!(
            s,
            "{act}: width {}, depth {}, batch {}",
            first.width, first.depth, first.batch
        );
        let mut head = format!("{:<11}{:>7}", "scheme", "sw^2");
        for l in &layers {
            head.push_str(&format!("{:>9}", format!("a, l={l}")));
        }
        head.push_str(&format!(
            "{:>10}{:>9}{:>10}  {:<10}{:<7}{}",
            "z, l=L", "theory", "delta,l=1", "signal", "CPU", "theory"
        ));
        let _ = writeln!(s, "{head}");
        for r in rs {
            row(&mut s, r, &layers);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "Columns: Var(a_l), Var(z_L) measured and in theory, Var(delta_1); CPU: every statistic of \
         every\nlayer bit-identical to the CPU mirror (n/a: not compared); theory: mean-field checks."
    );
    s
}

/// One run's row of the demo table.
fn row(s: &mut Styled, r: &RunReport, layers: &[usize]) {
    let _ = write!(s, "{:<11}{:>7.3}", r.scheme, r.sigma_w2);
    // After an overflow the f32 network carries inf/NaN (which ReLU then
    // maps to 0): show the overflow, not the meaningless numbers. The
    // backward pass crosses every layer, so all gradients are affected.
    let over = r.verdict.overflow_at;
    let shown = |l: &crate::experiment::LayerReport, v: f64, grad: bool| {
        if over.is_some_and(|o| grad || l.layer >= o) {
            "overflow".to_string()
        } else {
            Sci(v).to_string()
        }
    };
    for &l in layers {
        let lr = &r.layers[l - 1];
        let _ = write!(s, "{:>9}", shown(lr, lr.post_var, false));
    }
    let last = &r.layers[r.depth - 1];
    let _ = write!(
        s,
        "{:>10}{:>9}{:>10}  {:<10}",
        shown(last, last.pre_var, false),
        Sci(last.theory_pre_var),
        shown(&r.layers[0], r.layers[0].grad_var, true),
        r.fate().name(),
    );
    s.outcome(Outcome::of_opt(r.verdict.cpu_match), 7)
        .outcome(crate::report::forward::theory_outcome(&r.verdict), 0);
    let _ = writeln!(s);
}

/// A run's Var(z_l) (or Var(delta_l) when `grad`) against depth: the measured
/// line (solid, labelled) and the theory (dashed, same colour). With
/// `mask_overflow`, measured points of layers holding non-finite values are
/// left out (they average only what survived).
pub(crate) fn variance_series(
    r: &RunReport,
    grad: bool,
    label: String,
    color: String,
    mask_overflow: bool,
) -> [Series; 2] {
    let points = |theory: bool| -> Vec<(f64, f64)> {
        r.layers
            .iter()
            .map(|l| {
                let v = match (grad, theory) {
                    (false, false) => l.pre_var,
                    (false, true) => l.theory_pre_var,
                    (true, false) => l.grad_var,
                    (true, true) => l.theory_grad_var,
                };
                let masked = mask_overflow && !theory && l.nonfinite > 0;
                (l.layer as f64, if masked { f64::NAN } else { v })
            })
            .collect()
    };
    let note = r
        .verdict
        .overflow_at
        .map(|l| format!("f32 overflow at layer {l}"));
    [
        Series {
            label,
            color: color.clone(),
            dashed: false,
            points: points(false),
            note,
        },
        Series {
            label: String::new(),
            color,
            dashed: true,
            points: points(true),
            note: None,
        },
    ]
}

/// The decades the variance plots show: wide enough for a healthy network
/// (variance 1, give or take a few factors per layer), narrow enough that
/// "flat at 1" and "halving each layer" look different. Lines beyond it end
/// in a labelled arrow.
pub(crate) const VARIANCE_WINDOW: (f64, f64) = (-20.0, 20.0);

/// Adds a scheme's two lines to a panel, or, when its measured line equals
/// one already there (Xavier and LeCun at equal widths draw the same
/// weights), names it beside that one ("xavier = lecun") instead of hiding a
/// line under another.
fn add_or_merge(series: &mut Vec<Series>, new: [Series; 2]) {
    let [measured, theory] = new;
    let drawable = measured
        .points
        .iter()
        .any(|&(_, y)| y.is_finite() && y > 0.0);
    if let Some(same) = series
        .iter_mut()
        .find(|s| drawable && !s.dashed && s.points == measured.points)
    {
        same.label = format!("{} = {}", same.label, measured.label);
        return;
    }
    series.push(measured);
    series.push(theory);
}

/// Variance vs depth: one panel per activation for the forward signal
/// Var(z_l) and one for the gradient Var(delta_l); one colour per scheme;
/// theory dashed.
pub(crate) fn variance_svg(runs: &[RunReport]) -> String {
    let mut acts: Vec<String> = Vec::new();
    for r in runs {
        if !acts.contains(&r.activation) {
            acts.push(r.activation.clone());
        }
    }
    let mut schemes: Vec<String> = Vec::new();
    for r in runs {
        if !schemes.contains(&r.scheme) {
            schemes.push(r.scheme.clone());
        }
    }
    let mut panels = Vec::new();
    for grad in [false, true] {
        for act in &acts {
            let mut series = Vec::new();
            for r in runs.iter().filter(|r| &r.activation == act) {
                let c = plot::color(schemes.iter().position(|s| s == &r.scheme).unwrap_or(0));
                add_or_merge(
                    &mut series,
                    variance_series(r, grad, r.scheme.clone(), c, false),
                );
            }
            panels.push(Panel {
                title: format!(
                    "{act}: {}",
                    if grad {
                        "gradient Var(delta_l), backward from the loss"
                    } else {
                        "signal Var(z_l), forward from the input"
                    }
                ),
                x_label: "layer l".into(),
                y_label: if grad {
                    "Var(delta_l) (log scale)".into()
                } else {
                    "Var(z_l) (log scale)".into()
                },
                series,
                y_window: Some(VARIANCE_WINDOW),
            });
        }
    }
    let net = runs.first().map_or(String::new(), |r| {
        format!(
            "MLP width {}, depth {}, batch {}: ",
            r.width, r.depth, r.batch
        )
    });
    plot::log_plot_svg(
        &format!(
            "{net}which initialization keeps the variance near 1? (solid: measured, dashed: \
             mean-field theory)"
        ),
        &panels,
        acts.len(),
    )
}

/// Writes `report.json` and `variance.{svg,png}` into `out`; returns their paths.
pub(crate) fn write_outputs(
    out: &crate::io::output::OutputDir,
    report: &crate::app::demo::Report,
) -> crate::Result<Vec<std::path::PathBuf>> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| crate::Error::internal("report", e.to_string()))?;
    let svg = variance_svg(&report.runs);
    let png = super::plot::svg_to_png(&svg)?;
    out.write(&[
        (crate::app::demo::OUTPUT_FILES[0], text.into_bytes()),
        (crate::app::demo::OUTPUT_FILES[1], svg.into_bytes()),
        (crate::app::demo::OUTPUT_FILES[2], png),
    ])
}
