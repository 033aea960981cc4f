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
use crate::app::histogram::Histogram;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::experiment::{self, RunReport};
use crate::init::scheme::Scheme;
use crate::net::critical;
use crate::net::{NetConfig, INPUT_TENSOR};
use serde::Serialize;

/// Correlation of the input pairs (rows 2k and 2k+1) before the first layer.
pub(crate) const INPUT_CORRELATION: f64 = 0.5;

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
    /// (see [`critical_interval`](crate::net::critical::critical_interval)).
    pub critical_interval: Option<(f64, f64)>,
    /// Measured inside the interval.
    pub critical_match: Option<bool>,
}

/// Where the measured per-layer gradient gain `grad_rate` crosses 1 (first
/// upward crossing, linear in ln rate between grid points).
pub(crate) fn critical_measured(points: &[SweepPoint]) -> Option<f64> {
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

/// Inputs: N(0, 1) rows from the RNG, with row 2k+1 replaced by
/// `c x_2k + sqrt(1 - c^2) x_2k+1` so each pair has correlation c.
pub(crate) fn paired_inputs(batch: u64, width: u64, seed: u64) -> Result<Vec<f32>> {
    let n = batch * width;
    let mut x = crate::io::host::host_vec::<f32>(n)?;
    crate::rng::cpu::fill(
        crate::rng::dist::Dist::Normal,
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
        let (q_star, chi) = critical::fixed_point(cfg.act, s_of_m(m), b2);
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
    let critical_theory = critical::critical_theory(cfg.act, b2, lo, hi, s_of_m);
    let critical_measured = critical_measured(&points);
    let step = if cfg.multipliers.len() > 1 {
        (hi - lo) / (cfg.multipliers.len() - 1) as f64
    } else {
        0.0
    };
    let sigma = critical::rate_noise(cfg.depth, cfg.width);
    let critical_interval = critical_theory
        .map(|_| critical::critical_interval(cfg.act, b2, sigma, step, lo, hi, s_of_m));
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

/// The axis of the stable network's first layer: +-4 rms of its non-zero
/// values (the lower end at 0 when none is negative, as for ReLU).
fn stable_axis(a: &[f32]) -> (f64, f64) {
    let finite = || {
        a.iter()
            .map(|&v| f64::from(v))
            .filter(|v| v.is_finite() && *v != 0.0)
    };
    let n = finite().count().max(1) as f64;
    let rms = (finite().map(|v| v * v).sum::<f64>() / n).sqrt();
    let rms = if rms > 0.0 { rms } else { 1.0 };
    let lo = if finite().any(|v| v < 0.0) {
        -4.0 * rms
    } else {
        0.0
    };
    (lo, 4.0 * rms)
}

/// Histograms of a_l at layers 1, L/2 and L for the smallest, the critical
/// (closest grid point) and the largest multiplier, computed by the CPU
/// reference of the same networks (same weights, same inputs).
pub fn histograms(cfg: &SweepConfig, r: &SweepReport) -> Result<Vec<Histogram>> {
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
    // The critical network first: its layer-1 activations set the axis
    // every panel shares (tanh and sigmoid: their whole range).
    let mut ms = vec![
        nearest,
        cfg.multipliers[0],
        cfg.multipliers[cfg.multipliers.len() - 1],
    ];
    ms.dedup();
    ms.sort_by(f64::total_cmp);
    ms.dedup();
    ms.sort_by_key(|&m| m != nearest);
    let layers = [1, cfg.depth.div_ceil(2), cfg.depth];
    let split_zeros = cfg.act.kink().is_some() && cfg.act.f(-1.0) == 0.0;
    let mut axis = match cfg.act {
        Activation::Tanh => Some((-1.0, 1.0)),
        Activation::Sigmoid => Some((0.0, 1.0)),
        _ => None,
    };
    let mut out = Vec::new();
    for m in ms {
        let mut net = NetConfig::uniform(cfg.scheme, cfg.act, cfg.width, cfg.depth, cfg.batch);
        net.multiplier = m;
        net.bias_std = cfg.bias_std;
        net.seed = cfg.seed;
        let mut found: Vec<Histogram> = Vec::new();
        crate::net::reference::run_observed(
            &net,
            Some(&x),
            &crate::net::Fault::default(),
            None,
            &mut |l, a| {
                if !layers.contains(&l) || found.iter().any(|h| h.layer == l) {
                    return;
                }
                let range = *axis.get_or_insert_with(|| stable_axis(a));
                found.push(Histogram::of(a, l, m, range, split_zeros));
            },
        )?;
        out.extend(found);
    }
    out.sort_by(|a, b| {
        a.multiplier
            .total_cmp(&b.multiplier)
            .then(a.layer.cmp(&b.layer))
    });
    Ok(out)
}
