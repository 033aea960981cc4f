//! The sweep's text table and its pictures (heatmap, curves).

use crate::app::sweep::SweepReport;
use crate::report::plot;
use crate::report::style::{Outcome, Sci, Styled};
use std::fmt::Write;

/// The sweep's table, at most 100 columns wide.
pub(crate) fn table(r: &SweepReport) -> Styled {
    let mut s = Styled::new();
    let _ = writeln!(
        s,
        "{:>8}{:>8}{:>10}{:>10}{:>8}{:>8}{:>10}{:>9}  {:<7}theory",
        "mult", "sw^2", "a_L / x", "d_1 / d_L", "d-rate", "corr_L", "q*", "chi1(q*)", "CPU"
    );
    for p in &r.points {
        let v = &p.run.verdict;
        let _ = write!(
            s,
            "{:>8.3}{:>8.3}{:>10}{:>10}{:>8.4}{:>8.4}{:>10}{:>9.4}  ",
            p.multiplier,
            p.sigma_w2,
            Sci(p.signal_gain),
            Sci(p.grad_gain),
            p.grad_rate,
            p.pair_correlation,
            Sci(p.theory_q_star),
            p.theory_chi1,
        );
        s.outcome(Outcome::of_opt(v.cpu_match), 7)
            .outcome(crate::report::forward::theory_outcome(v), 0);
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "(a_L / x: Var(a_L) / Var(x); d_1 / d_L: gradient variance gain; d-rate: its per-layer gain\n\
         over the deep half; corr_L: output correlation of input pairs; q*, chi1: mean-field theory)"
    );
    let fmt = |v: Option<f64>| v.map_or("not in range".to_string(), |m| format!("{m:.4}"));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "critical multiplier, theory (chi_1 = 1 at the fixed point q*):   {}",
        fmt(r.critical_theory)
    );
    let _ = writeln!(
        s,
        "critical multiplier, measured (deep-half gradient gain = 1):     {}",
        fmt(r.critical_measured),
    );
    if let Some(ok) = r.critical_match {
        let _ = write!(
            s,
            "  {} the finite-size interval {}: ",
            if ok { "inside" } else { "outside" },
            interval(r),
        );
        s.outcome(Outcome::of(ok), 0);
        let _ = writeln!(s);
    }
    s
}

fn interval(r: &SweepReport) -> String {
    r.critical_interval
        .map_or("-".into(), |(a, b)| format!("[{a:.3}, {b:.3}]"))
}

/// Heatmaps of log10 Var(z_l) and log10 Var(delta_l) over (layer, multiplier),
/// with the theoretical critical multiplier as a line.
pub(crate) fn heatmap_svg(r: &SweepReport) -> String {
    let ys: Vec<f64> = r.points.iter().map(|p| p.multiplier).collect();
    let grid = |grad: bool| -> Vec<Vec<f64>> {
        r.points
            .iter()
            .map(|p| {
                p.run
                    .layers
                    .iter()
                    .map(|l| {
                        let v = if grad { l.grad_var } else { l.pre_var };
                        if l.nonfinite > 0 || v.is_nan() || v <= 0.0 {
                            f64::NAN
                        } else {
                            v.log10()
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let title = format!(
        "{} MLP, width {}, depth {}, bias std {}: variance per layer as the weight variance is \
         scaled ({} x multiplier); blue vanishes, red explodes",
        r.activation, r.width, r.depth, r.bias_std, r.scheme
    );
    let mut markers = Vec::new();
    if let Some(m) = r.critical_theory {
        markers.push(plot::Marker {
            at: m,
            label: format!("theory: critical {m:.3}"),
            dashed: true,
        });
    }
    if let Some(m) = r.critical_measured {
        markers.push(plot::Marker {
            at: m,
            label: format!("measured: critical {m:.3}"),
            dashed: false,
        });
    }
    plot::heatmaps_svg(
        &title,
        &[
            ("signal Var(z_l), forward", grid(false)),
            ("gradient Var(delta_l), backward", grid(true)),
        ],
        &ys,
        &markers,
    )
}

/// Var(z_l) and Var(delta_l) against depth for up to 6 multipliers spread over
/// the grid (measured solid, theory dashed).
pub(crate) fn curves_svg(r: &SweepReport) -> String {
    let n = r.points.len();
    let picks: Vec<usize> = if n <= 6 {
        (0..n).collect()
    } else {
        (0..6).map(|i| i * (n - 1) / 5).collect()
    };
    let mut panels = Vec::new();
    for grad in [false, true] {
        let mut series = Vec::new();
        for (ci, &i) in picks.iter().enumerate() {
            let p = &r.points[i];
            let color = plot::color(ci);
            series.extend(crate::report::demo::variance_series(
                &p.run,
                grad,
                format!("multiplier {:.3}", p.multiplier),
                color,
                true,
            ));
        }
        panels.push(plot::Panel {
            title: if grad {
                "gradient Var(delta_l), backward from the loss".into()
            } else {
                "signal Var(z_l), forward from the input".into()
            },
            x_label: "layer l".into(),
            y_label: if grad {
                "Var(delta_l) (log scale)".into()
            } else {
                "Var(z_l) (log scale)".into()
            },
            series,
            y_window: Some(crate::report::demo::VARIANCE_WINDOW),
        });
    }
    plot::log_plot_svg(
        &format!(
            "{} MLP, width {}, depth {}: variance per layer at {} multipliers of {} (solid: \
             measured, dashed: theory)",
            r.activation,
            r.width,
            r.depth,
            picks.len(),
            r.scheme
        ),
        &panels,
        2,
    )
}

/// Writes `sweep.json`, `heatmap.{svg,png}`, `curves.{svg,png}` and
/// `histograms.{svg,png}` into `out`; returns their paths.
pub fn write_outputs(
    out: &crate::io::output::OutputDir,
    r: &crate::app::sweep::SweepReport,
    histograms: &[crate::app::histogram::Histogram],
) -> crate::Result<Vec<std::path::PathBuf>> {
    let text = serde_json::to_string_pretty(r)
        .map_err(|e| crate::Error::internal("sweep report", e.to_string()))?;
    let title = format!(
        "{} MLP, width {}, depth {}: how the activations a_l spread layer by layer (CPU reference of \
         the same networks; Glorot & Bengio's picture)",
        r.activation, r.width, r.depth
    );
    let mut files = vec![(crate::app::sweep::OUTPUT_FILES[0], text.into_bytes())];
    for (i, svg) in [
        heatmap_svg(r),
        curves_svg(r),
        super::plot::histograms_svg(&title, histograms),
    ]
    .into_iter()
    .enumerate()
    {
        let png = super::plot::svg_to_png(&svg)?;
        files.push((crate::app::sweep::OUTPUT_FILES[1 + 2 * i], svg.into_bytes()));
        files.push((crate::app::sweep::OUTPUT_FILES[2 + 2 * i], png));
    }
    out.write(&files)
}
