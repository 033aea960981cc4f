//! `deepinit sweep`: the variance multiplier as a hyperparameter. For every
//! multiplier on a grid, a deep forward + backward pass; per point the signal
//! and gradient gains and the correlation of input pairs after L layers; the
//! critical multiplier where the signal neither vanishes nor explodes, measured
//! and from theory; heatmaps and activation histograms.
//!
//! The weights are `scheme` (LeCun by default) times the multiplier, so with
//! equal widths the multiplier *is* sigma_w^2 = Var(W) fan_in: ReLU's critical
//! point is sigma_w^2 = 2 (He), tanh's without bias sigma_w^2 = 1.

use crate::act::Activation;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::experiment::{self, RunReport};
use crate::net::{NetConfig, INPUT_TENSOR};
use crate::plot;
use crate::scheme::Scheme;
use crate::theory::Quadrature;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;

/// Correlation of the input pairs (rows 2k and 2k+1) before the first layer.
pub const INPUT_CORRELATION: f64 = 0.5;

/// A sweep's settings.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Activation.
    pub act: Activation,
    /// Base scheme (its variance is multiplied).
    pub scheme: Scheme,
    /// Multipliers, ascending.
    pub multipliers: Vec<f64>,
    /// Depth.
    pub depth: usize,
    /// Width of every layer.
    pub width: u64,
    /// Batch (even: pairs of inputs).
    pub batch: u64,
    /// Bias standard deviation.
    pub bias_std: f64,
    /// Seed.
    pub seed: u64,
    /// Also run the CPU reference for every point.
    pub verify: bool,
}

/// Parses `start:stop:step` (inclusive, up to rounding) or a comma list.
pub fn parse_grid(s: &str) -> Result<Vec<f64>> {
    let bad = |m: &str| Error::bad("multiplier grid", s, m);
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| bad(&format!("'{t}' is not a number")))
    };
    let v: Vec<f64> = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        let [a, b, st] = parts[..] else {
            return Err(bad("expected start:stop:step"));
        };
        let (a, b, st) = (num(a)?, num(b)?, num(st)?);
        if !(st > 0.0 && st.is_finite() && a.is_finite() && b.is_finite()) || b < a {
            return Err(bad("need finite start <= stop and step > 0"));
        }
        let points = ((b - a) / st + 1e-9).floor() + 1.0;
        if points > 1000.0 {
            return Err(bad(&format!("{points:.0} points (at most 1000)")));
        }
        let n = points as usize;
        (0..n).map(|i| a + st * i as f64).collect()
    } else {
        s.split(',').map(num).collect::<Result<_>>()?
    };
    if v.len() > 1000 {
        return Err(bad(&format!("{} points (at most 1000)", v.len())));
    }
    if v.is_empty() || v.iter().any(|m| !(m.is_finite() && *m > 0.0)) {
        return Err(bad("every multiplier must be finite and > 0"));
    }
    if v.windows(2).any(|w| w[1] <= w[0]) {
        return Err(bad("multipliers must increase"));
    }
    Ok(v)
}

/// One multiplier's results.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// The multiplier.
    pub multiplier: f64,
    /// sigma_w^2 of layer 1.
    pub sigma_w2: f64,
    /// Var(a_L) / Var(x).
    pub signal_gain: f64,
    /// Var(delta_1) / Var(delta_L): > 1 gradients explode toward the input.
    pub grad_gain: f64,
    /// Per-layer gradient gain over the deep half ([`deep_grad_rate`]).
    pub grad_rate: f64,
    /// Mean correlation of the input pairs after L layers (INPUT_CORRELATION before).
    pub pair_correlation: f64,
    /// Theory: chi_1 at the fixed point q* (1 = edge of chaos).
    pub theory_chi1: f64,
    /// Theory: the fixed point q* of the variance map.
    pub theory_q_star: f64,
    /// The full run (per-layer statistics and checks).
    pub run: RunReport,
}

/// The sweep's result.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Activation.
    pub activation: String,
    /// Base scheme.
    pub scheme: String,
    /// Depth, width, batch, bias.
    pub depth: usize,
    /// Width.
    pub width: u64,
    /// Batch.
    pub batch: u64,
    /// Bias standard deviation.
    pub bias_std: f64,
    /// Input pair correlation.
    pub input_correlation: f64,
    /// Points.
    pub points: Vec<SweepPoint>,
    /// Critical multiplier from theory (chi_1 = 1 at q*), if in range.
    pub critical_theory: Option<f64>,
    /// Critical multiplier measured (gradient gain crosses 1), if in range.
    pub critical_measured: Option<f64>,
    /// Where the measured value may fall given the finite width and depth
    /// (see [`critical_interval`]).
    pub critical_interval: Option<(f64, f64)>,
    /// Measured inside the interval.
    pub critical_match: Option<bool>,
}

/// The fixed point q* of the variance map q -> s2 E[phi(sqrt(q) Z)^2] + b2 for
/// sigma_w^2 `s2` and bias variance `b2`, and chi_1 = s2 E[phi'^2] there.
/// q* is the largest root of g(q) = s2 E[phi^2](q) + b2 - q, found by bisection
/// in log q: 0 when g <= 0 already at q = 1e-12 (the signal dies, as for tanh
/// with s2 <= 1 and no bias; chi_1 is then its limit q -> 0+), infinite when g stays positive up to 1e30 (the
/// signal explodes; chi_1 is then taken at q = 1e6, exact for ReLU-like
/// activations whose chi_1 does not depend on q).
pub fn fixed_point(act: Activation, s2: f64, b2: f64) -> (f64, f64) {
    let quad = Quadrature::new();
    let g = |q: f64| s2 * quad.expect(q, |z| act.f(z).powi(2)) + b2 - q;
    let chi = |q: f64| s2 * quad.expect(q, |z| act.df(z).powi(2));
    let lo = 1e-12;
    if g(lo) <= 0.0 {
        // chi_1 in the limit q -> 0+ (at q = 0 exactly, ReLU's kink would give 0).
        return (0.0, chi(1e-24));
    }
    let mut hi = 1.0f64;
    while g(hi) > 0.0 {
        hi *= 2.0;
        if hi > 1e30 {
            return (f64::INFINITY, chi(1e6));
        }
    }
    let (mut a, mut b) = (lo.ln(), hi.ln());
    for _ in 0..200 {
        let mid = 0.5 * (a + b);
        if g(mid.exp()) > 0.0 {
            a = mid;
        } else {
            b = mid;
        }
    }
    let q = (0.5 * (a + b)).exp();
    (q, chi(q))
}

/// Solves chi_1(q*(m)) = 1 for m in [lo, hi] by bisection on log chi_1, if it
/// changes sign there. `s_of_m` maps a multiplier to sigma_w^2.
pub fn critical_theory(
    act: Activation,
    b2: f64,
    lo: f64,
    hi: f64,
    s_of_m: impl Fn(f64) -> f64,
) -> Option<f64> {
    let f = |m: f64| fixed_point(act, s_of_m(m), b2).1.ln();
    let (mut a, mut b) = (lo, hi);
    let (fa, fb) = (f(a), f(b));
    if !(fa.is_finite() && fb.is_finite()) || fa.signum() == fb.signum() {
        return None;
    }
    for _ in 0..60 {
        let mid = 0.5 * (a + b);
        if f(mid).signum() == fa.signum() {
            a = mid;
        } else {
            b = mid;
        }
    }
    Some(0.5 * (a + b))
}

/// Where the measured per-layer gradient gain `grad_rate` crosses 1 (first
/// upward crossing, linear in ln rate between grid points).
pub fn critical_measured(points: &[SweepPoint]) -> Option<f64> {
    points.windows(2).find_map(|w| {
        let (a, b) = (w[0].grad_rate.ln(), w[1].grad_rate.ln());
        (a.is_finite() && b.is_finite() && a < 0.0 && b >= 0.0)
            .then(|| w[0].multiplier + (w[1].multiplier - w[0].multiplier) * (-a) / (b - a))
    })
}

/// The per-layer backward gain of gradient variance over the deep half of
/// the network, `exp(mean ln(Var(delta_l) / Var(delta_{l+1})))` for
/// l in [L/2, L): there the signal has (nearly) reached its fixed point, so
/// this estimates chi_1(q*).
pub fn deep_grad_rate(r: &RunReport) -> f64 {
    let (from, to) = (r.depth / 2, r.depth); // 0-based layer indices from..to-1
    let (a, b) = (
        r.layers[from.max(1) - 1].grad_var,
        r.layers[to - 1].grad_var,
    );
    let h = (to - from.max(1)) as f64;
    if h < 1.0 {
        return f64::NAN;
    }
    ((a / b).ln() / h).exp()
}

/// The noise of ln `deep_grad_rate`: the increments' finite-width spread, at
/// most 5 / n per layer (ReLU's (K - 1) / n, the largest here), summed over
/// the h = L/2 layers of the deep half and divided by h.
pub fn rate_noise(depth: usize, width: u64) -> f64 {
    let h = (depth - depth / 2).max(1) as f64;
    (5.0 * h / width as f64).sqrt() / h
}

/// The interval the measured critical multiplier may fall in: the
/// multipliers m where the theory's |ln chi_1(q*(m))| <= 4 sigma (sigma =
/// [`rate_noise`]), i.e. where a finite network cannot tell its gradient gain
/// from 1 at 4 standard deviations, widened by a quarter of the grid step for
/// the interpolation. For ReLU (chi_1 = m s_base / 2) it is symmetric in ln m;
/// for tanh it is wide on the chaotic side, where chi_1(q*) rises slowly.
pub fn critical_interval(
    act: Activation,
    b2: f64,
    sigma: f64,
    step: f64,
    lo: f64,
    hi: f64,
    s_of_m: impl Fn(f64) -> f64,
) -> (f64, f64) {
    let f = |m: f64| fixed_point(act, s_of_m(m), b2).1.ln();
    let edge = |target: f64| -> f64 {
        // First m in [lo, hi] where f crosses target (f is increasing in m).
        let (mut a, mut b) = (lo, hi);
        if f(a) >= target {
            return lo;
        }
        if f(b) < target {
            return hi;
        }
        for _ in 0..60 {
            let mid = 0.5 * (a + b);
            if f(mid) < target {
                a = mid;
            } else {
                b = mid;
            }
        }
        0.5 * (a + b)
    };
    (
        edge(-4.0 * sigma) - step / 4.0,
        edge(4.0 * sigma) + step / 4.0,
    )
}

/// Inputs: N(0, 1) rows from the RNG, with row 2k+1 replaced by
/// `c x_2k + sqrt(1 - c^2) x_2k+1` so each pair has correlation c.
pub fn paired_inputs(batch: u64, width: u64, seed: u64) -> Result<Vec<f32>> {
    let n = batch * width;
    let mut x = crate::cpu::host_vec::<f32>(n)?;
    crate::cpu::fill(
        crate::dist::Dist::Normal,
        1.0,
        seed,
        INPUT_TENSOR,
        0,
        &mut x,
    );
    let (c, s) = (
        INPUT_CORRELATION as f32,
        (1.0 - INPUT_CORRELATION * INPUT_CORRELATION).sqrt() as f32,
    );
    let w = width as usize;
    for pair in x.chunks_exact_mut(2 * w) {
        let (a, b) = pair.split_at_mut(w);
        for (bb, &aa) in b.iter_mut().zip(a.iter()) {
            *bb = c * aa + s * *bb;
        }
    }
    Ok(x)
}

fn pair_correlation(gram: &[f64], batch: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for k in 0..batch / 2 {
        let (i, j) = (2 * k, 2 * k + 1);
        let c = gram[i * batch + j] / (gram[i * batch + i] * gram[j * batch + j]).sqrt();
        if c.is_finite() {
            sum += c;
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / f64::from(n)
    }
}

/// Runs the sweep; `progress(done, total, label)` before each point.
pub fn run(
    backend: &Backend,
    cfg: &SweepConfig,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<SweepReport> {
    if cfg.multipliers.is_empty() || cfg.multipliers.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::invalid(
            "multiplier grid",
            "needs at least one multiplier, increasing",
        ));
    }
    if cfg.batch < 2 || !cfg.batch.is_multiple_of(2) {
        return Err(Error::invalid(
            "batch",
            format!(
                "{} (a sweep needs an even batch of at least 2: input pairs)",
                cfg.batch
            ),
        ));
    }
    let x = paired_inputs(cfg.batch, cfg.width, cfg.seed)?;
    let b2 = cfg.bias_std * cfg.bias_std;
    let base = NetConfig {
        multiplier: 1.0,
        ..NetConfig::uniform(cfg.scheme, cfg.act, cfg.width, cfg.depth, cfg.batch)
    };
    let s_base = base.sigma_w2()?[0];
    let s_of_m = |m: f64| s_base * m;
    let mut points = Vec::with_capacity(cfg.multipliers.len());
    for (i, &m) in cfg.multipliers.iter().enumerate() {
        progress(i, cfg.multipliers.len(), &format!("multiplier {m:.4}"));
        let mut net = base.clone();
        net.multiplier = m;
        net.bias_std = cfg.bias_std;
        net.seed = cfg.seed;
        let r = experiment::run_with_input(backend, &net, Some(&x), cfg.verify)?;
        let last = &r.layers[r.depth - 1];
        let (q_star, chi) = fixed_point(cfg.act, s_of_m(m), b2);
        points.push(SweepPoint {
            multiplier: m,
            sigma_w2: r.sigma_w2,
            signal_gain: last.post_var / r.input_var,
            grad_gain: r.layers[0].grad_var / last.grad_var,
            grad_rate: deep_grad_rate(&r),
            pair_correlation: pair_correlation(&r.final_gram, cfg.batch as usize),
            theory_chi1: chi,
            theory_q_star: q_star,
            run: r,
        });
    }
    progress(cfg.multipliers.len(), cfg.multipliers.len(), "done");
    let (lo, hi) = (
        cfg.multipliers[0],
        cfg.multipliers[cfg.multipliers.len() - 1],
    );
    let critical_theory = critical_theory(cfg.act, b2, lo, hi, s_of_m);
    let critical_measured = critical_measured(&points);
    let step = if cfg.multipliers.len() > 1 {
        (hi - lo) / (cfg.multipliers.len() - 1) as f64
    } else {
        0.0
    };
    let sigma = rate_noise(cfg.depth, cfg.width);
    let critical_interval =
        critical_theory.map(|_| critical_interval(cfg.act, b2, sigma, step, lo, hi, s_of_m));
    let critical_match = match (critical_interval, critical_measured) {
        (Some((a, b)), Some(m)) => Some(a <= m && m <= b),
        _ => None,
    };
    Ok(SweepReport {
        activation: cfg.act.name(),
        scheme: cfg.scheme.name(),
        depth: cfg.depth,
        width: cfg.width,
        batch: cfg.batch,
        bias_std: cfg.bias_std,
        input_correlation: INPUT_CORRELATION,
        points,
        critical_theory,
        critical_measured,
        critical_interval,
        critical_match,
    })
}

/// The sweep's table.
pub fn table(r: &SweepReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>11} {:>8} {:>15} {:>17} {:>13} {:>10} {:>10} {:>10}  {:<8}vs theory",
        "multiplier",
        "sw^2",
        "Var(a_L)/Var(x)",
        "Var(d_1)/Var(d_L)",
        "deep d-rate",
        "corr_L",
        "q*",
        "chi1(q*)",
        "vs CPU"
    );
    for p in &r.points {
        let v = &p.run.verdict;
        let cpu = match v.cpu_match {
            None => "-",
            Some(true) => "ok",
            Some(false) => "FAIL",
        };
        let _ = writeln!(
            s,
            "{:>11.4} {:>8.4} {:>15.3e} {:>17.3e} {:>13.4} {:>10.4} {:>10.3e} {:>10.4}  {:<8}{}",
            p.multiplier,
            p.sigma_w2,
            p.signal_gain,
            p.grad_gain,
            p.grad_rate,
            p.pair_correlation,
            p.theory_q_star,
            p.theory_chi1,
            cpu,
            if v.theory_match { "ok" } else { "FAIL" }
        );
    }
    let fmt = |v: Option<f64>| v.map_or("not in range".to_string(), |m| format!("{m:.4}"));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "critical multiplier, theory (chi_1 = 1 at the fixed point q*):           {}",
        fmt(r.critical_theory)
    );
    let _ = writeln!(
        s,
        "critical multiplier, measured (deep-half gradient gain per layer = 1):  {}{}",
        fmt(r.critical_measured),
        match r.critical_match {
            Some(true) => format!("  (inside the finite-size interval {}: ok)", interval(r)),
            Some(false) => format!("  (outside the finite-size interval {}: FAIL)", interval(r)),
            None => String::new(),
        }
    );
    s
}

fn interval(r: &SweepReport) -> String {
    r.critical_interval
        .map_or("-".into(), |(a, b)| format!("[{a:.3}, {b:.3}]"))
}

/// Heatmaps of log10 Var(z_l) and log10 Var(delta_l) over (layer, multiplier),
/// with the theoretical critical multiplier as a line.
pub fn heatmap_svg(r: &SweepReport) -> String {
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
        "{} network, width {}, depth {}, bias std {}: log10 variance over layer and multiplier ({} x multiplier)",
        r.activation, r.width, r.depth, r.bias_std, r.scheme
    );
    plot::heatmaps_svg(
        &title,
        &[
            ("signal log10 Var(z_l)", grid(false)),
            ("gradient log10 Var(delta_l)", grid(true)),
        ],
        &ys,
        r.critical_theory,
    )
}

/// Var(z_l) and Var(delta_l) against depth for up to 6 multipliers spread over
/// the grid (measured solid, theory dashed).
pub fn curves_svg(r: &SweepReport) -> String {
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
            series.extend(crate::demo::variance_series(
                &p.run,
                grad,
                format!("multiplier {:.3}", p.multiplier),
                color,
                true,
            ));
        }
        panels.push(plot::Panel {
            title: if grad {
                "gradient Var(delta_l)".into()
            } else {
                "signal Var(z_l)".into()
            },
            x_label: "layer l".into(),
            y_label: if grad {
                "Var(delta_l)".into()
            } else {
                "Var(z_l)".into()
            },
            series,
        });
    }
    plot::log_plot_svg(
        &format!(
            "{}: variance vs depth for several multipliers",
            r.activation
        ),
        &panels,
        2,
    )
}

/// The files a sweep writes into its output directory.
pub const OUTPUT_FILES: [&str; 7] = [
    "sweep.json",
    "heatmap.svg",
    "heatmap.png",
    "curves.svg",
    "curves.png",
    "histograms.svg",
    "histograms.png",
];

/// Writes `sweep.json`, `heatmap.{svg,png}`, `curves.{svg,png}` and
/// `histograms.{svg,png}` into `out`; returns their paths.
pub fn write_outputs(
    out: &crate::output::OutputDir,
    r: &SweepReport,
    histograms: &[plot::Histogram],
) -> Result<Vec<PathBuf>> {
    let text = serde_json::to_string_pretty(r)
        .map_err(|e| Error::internal("sweep report", e.to_string()))?;
    let title = format!(
        "{}: histograms of the activations a_l (CPU reference of the same networks; Glorot & Bengio's picture)",
        r.activation
    );
    let mut files = vec![(OUTPUT_FILES[0], text.into_bytes())];
    for (i, svg) in [
        heatmap_svg(r),
        curves_svg(r),
        plot::histograms_svg(&title, histograms),
    ]
    .into_iter()
    .enumerate()
    {
        let png = plot::svg_to_png(&svg)?;
        files.push((OUTPUT_FILES[1 + 2 * i], svg.into_bytes()));
        files.push((OUTPUT_FILES[2 + 2 * i], png));
    }
    out.write(&files)
}

/// Histograms of a_l at layers 1, L/2 and L for the smallest, the critical
/// (closest grid point) and the largest multiplier, computed by the CPU
/// reference of the same networks (same weights, same inputs).
pub fn histograms(cfg: &SweepConfig, r: &SweepReport) -> Result<Vec<plot::Histogram>> {
    if cfg.multipliers.is_empty() {
        return Err(Error::invalid(
            "multiplier grid",
            "needs at least one multiplier",
        ));
    }
    let x = paired_inputs(cfg.batch, cfg.width, cfg.seed)?;
    let crit = r
        .critical_theory
        .unwrap_or(cfg.multipliers[cfg.multipliers.len() / 2]);
    let nearest = *cfg
        .multipliers
        .iter()
        .min_by(|a, b| (*a - crit).abs().total_cmp(&(*b - crit).abs()))
        .unwrap_or(&crit);
    let mut ms = vec![
        cfg.multipliers[0],
        nearest,
        cfg.multipliers[cfg.multipliers.len() - 1],
    ];
    ms.dedup();
    let layers = [1, cfg.depth.div_ceil(2), cfg.depth];
    let bounded = matches!(cfg.act, Activation::Tanh | Activation::Sigmoid);
    let mut out = Vec::new();
    for m in ms {
        let mut net = NetConfig::uniform(cfg.scheme, cfg.act, cfg.width, cfg.depth, cfg.batch);
        net.multiplier = m;
        net.bias_std = cfg.bias_std;
        net.seed = cfg.seed;
        let mut found = Vec::new();
        crate::reference::run_observed(
            &net,
            Some(&x),
            &crate::net::Fault::default(),
            None,
            &mut |l, a| {
                if layers.contains(&l) && !found.iter().any(|h: &plot::Histogram| h.layer == l) {
                    found.push(plot::Histogram::of(a, l, m, bounded));
                }
            },
        )?;
        out.extend(found);
    }
    Ok(out)
}
