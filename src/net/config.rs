//! A deep multilayer perceptron: its configuration, its tensors' ids in the
//! RNG, and the per-layer statistics both backends report.
//!
//! Layer l (1..=L): `z_l = a_{l-1} W_l^T + b_l`, `a_l = phi(z_l)`, with
//! activations stored row-major `[batch, width]` and `W_l` in PyTorch's
//! `[n_l, n_{l-1}]` layout drawn from the scheme (tensor id `l`). The loss is
//! `<r, a_L>` with `r ~ N(0, 1)`, so `delta_L = r * phi'(z_L)` and
//! `delta_l = (delta_{l+1} W_{l+1}) * phi'(z_l)`; the weight gradient is
//! `dW_l = delta_l^T a_{l-1}`.

use crate::act::Activation;
use crate::error::{Error, Result};
use crate::init::scheme::{FanMode, InitSpec, Scheme, Shape};
use crate::rng::dist::Dist;
use serde::Serialize;

/// Tensor id of the bias of layer l: `BIAS_TENSOR | l`.
pub const BIAS_TENSOR: u32 = 0x4000_0000;
/// Tensor id of the network input.
pub const INPUT_TENSOR: u32 = 0x7FFF_FFF0;
/// Tensor id of the loss direction r.
pub const LOSS_TENSOR: u32 = 0x7FFF_FFF1;

/// A defect injected into the backend under test (never into the CPU
/// reference or the theory), so that tests can check that the verdicts catch
/// real errors. Not for production use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fault {
    /// Multiply the weights of layer `.0` by `.1` (layer 0: every layer), in
    /// both passes.
    pub weight_scale: Option<(usize, f64)>,
    /// Leave one 64 x 64 output tile of layer `.0`'s pre-activations (rows and
    /// columns from 0) at zero, as if the GEMM had skipped it.
    pub skip_tile: Option<usize>,
    /// Add one ULP to weight `.1` (row-major) of layer `.0`, in both passes.
    pub weight_ulp: Option<(usize, u64)>,
    /// Add one ULP to activation `.1` (row-major over batch x width) of layer `.0`.
    pub act_ulp: Option<(usize, u64)>,
}

impl Fault {
    /// The factor on layer `l`'s weights (1 without a fault there).
    pub(crate) fn weight_factor(&self, l: usize) -> f64 {
        match self.weight_scale {
            Some((k, f)) if k == 0 || k == l => f,
            _ => 1.0,
        }
    }

    /// The activation of layer `l` that gets one ULP added, if any.
    pub(crate) fn act_flip(&self, l: usize) -> Option<u64> {
        self.act_ulp.filter(|&(k, _)| k == l).map(|(_, e)| e)
    }

    /// `(rows, cols)` of the skipped tile at layer `l`, clipped to `batch x width`.
    pub(crate) fn tile(&self, l: usize, batch: u64, width: u64) -> Option<(u64, u64)> {
        (self.skip_tile == Some(l)).then(|| (batch.min(64), width.min(64)))
    }
}

/// The deepest network deepinit runs.
pub const MAX_DEPTH: usize = 100_000;

/// Everything that defines one network run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Weight scheme.
    pub scheme: Scheme,
    /// Variance multiplier.
    pub multiplier: f64,
    /// Gain override (scale = gain^2).
    pub gain: Option<f64>,
    /// Fan mode override.
    pub mode: Option<FanMode>,
    /// Weight distribution.
    pub dist: Dist,
    /// Nonlinearity.
    pub act: Activation,
    /// Widths n_0 (input) .. n_L.
    pub widths: Vec<u64>,
    /// Batch size B.
    pub batch: u64,
    /// Bias standard deviation (0 = no bias).
    pub bias_std: f64,
    /// Seed.
    pub seed: u64,
}

impl NetConfig {
    /// An MLP of `depth` layers of width `width` (input width too).
    pub fn uniform(
        scheme: Scheme,
        act: Activation,
        width: u64,
        depth: usize,
        batch: u64,
    ) -> NetConfig {
        NetConfig {
            scheme,
            multiplier: 1.0,
            gain: None,
            mode: None,
            dist: Dist::Normal,
            act,
            widths: vec![width; depth + 1],
            batch,
            bias_std: 0.0,
            seed: 0,
        }
    }

    /// Number of layers L.
    pub(crate) fn depth(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    /// The weight spec of layer `l` (1-based).
    pub(crate) fn weight_spec(&self, l: usize) -> Result<InitSpec> {
        let shape = Shape::new(vec![self.widths[l], self.widths[l - 1]])?;
        Ok(InitSpec::new(self.scheme, shape)
            .with_multiplier(self.multiplier)?
            .with_gain(self.gain)?
            .with_mode(self.mode)
            .with_dist(self.dist))
    }

    /// Checks sizes and parameters; returns every layer's weight standard deviation.
    pub fn validate(&self) -> Result<Vec<f64>> {
        if self.depth() == 0 {
            return Err(Error::invalid(
                "depth",
                "0 (a network needs at least one layer)",
            ));
        }
        if self.depth() > MAX_DEPTH {
            return Err(Error::invalid(
                "depth",
                format!("{}; reduce the depth (at most {MAX_DEPTH})", self.depth()),
            ));
        }
        if self.batch == 0 {
            return Err(Error::invalid("batch", "0 (must be at least 1)"));
        }
        if let Some(i) = self.widths.iter().position(|&w| w == 0) {
            return Err(Error::invalid(
                "width",
                format!("width of layer {i} is 0 (must be at least 1)"),
            ));
        }
        if !(self.bias_std.is_finite() && self.bias_std >= 0.0) {
            return Err(Error::invalid(
                "bias-std",
                format!("{} (must be finite and >= 0)", self.bias_std),
            ));
        }
        for &w in &self.widths {
            if self
                .batch
                .checked_mul(w)
                .is_none_or(|n| n > u64::from(u32::MAX) / 4)
            {
                return Err(Error::LimitExceeded {
                    what: "activation tensor (batch x width elements)".into(),
                    got: self.batch.saturating_mul(w),
                    max: u64::from(u32::MAX) / 4,
                    hint: String::new(),
                });
            }
        }
        (1..=self.depth())
            .map(|l| Ok(self.weight_spec(l)?.target()?.std))
            .collect()
    }

    /// `s_l = Var(W_l) * fan_in_l` per layer (sigma_w^2 of the mean-field theory).
    pub(crate) fn sigma_w2(&self) -> Result<Vec<f64>> {
        let stds = self.validate()?;
        Ok(stds
            .iter()
            .enumerate()
            .map(|(i, s)| s * s * self.widths[i] as f64)
            .collect())
    }
}

/// Statistics of one tensor (all `batch x width` entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TensorStats {
    /// Finite entries.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Unbiased variance.
    pub var: f64,
    /// Mean of squares.
    pub mean_sq: f64,
    /// Fraction of entries exactly 0.
    pub zero_frac: f64,
    /// Fraction saturated (|tanh| > 0.99, sigmoid within 0.01 of 0 or 1).
    pub saturated_frac: f64,
    /// NaN / Inf entries.
    pub nonfinite: u64,
}

impl TensorStats {
    /// From sums in f64.
    pub(crate) fn from_sums(
        count: u64,
        sum: f64,
        sum_sq: f64,
        zeros: u64,
        saturated: u64,
        nonfinite: u64,
    ) -> TensorStats {
        let total = (count + nonfinite).max(1) as f64;
        let n = count.max(1) as f64;
        let mean = sum / n;
        let mean_sq = sum_sq / n;
        let var = if count > 1 {
            ((mean_sq - mean * mean) * n / (n - 1.0)).max(0.0)
        } else {
            0.0
        };
        TensorStats {
            count,
            mean,
            var,
            mean_sq,
            zero_frac: zeros as f64 / total,
            saturated_frac: saturated as f64 / total,
            nonfinite,
        }
    }
}

/// What a backend measures for one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LayerStats {
    /// Layer index l (1-based).
    pub layer: usize,
    /// z_l.
    pub pre: TensorStats,
    /// a_l.
    pub post: TensorStats,
    /// Fraction of units zero for the whole batch.
    pub dead_frac: f64,
    /// delta_l.
    pub grad: TensorStats,
    /// Frobenius norm of dW_l = delta_l^T a_{l-1}.
    pub grad_w_norm: f64,
    /// `||P G_a P||_F^2 / tr(P G_a)^2` of the layer's input a_{l-1}, with
    /// `G_a = a a^T` over the batch and `P = I - 1 1^T / B` removing the batch
    /// mean: 1/(B-1) for orthogonal deviations, 1 when one direction
    /// dominates. It sets how much the layer's random weights can move its
    /// measured variance (see `theory::weight_test`).
    pub input_concentration: f64,
    /// `tr(P G_a) / (B n_{l-1})`: the mean square of a_{l-1}'s deviations from
    /// its batch mean.
    pub input_centred_mean_sq: f64,
    /// Mean over the units of z_l of the squared batch mean of that unit.
    pub pre_unit_mean_sq: f64,
    /// An upper bound on `W = tr(G_a^2 G_delta) tr(G_delta) / tr(G_a G_delta)^2`,
    /// between 1 and B: how coherently one changed entry of delta_l moves
    /// ||dW_l||^2 (B when the inputs are identical).
    pub grad_w_coherence: f64,
}

/// `tr(P G P) / (B n)` for a Gram matrix `g` (B x B) of B rows of length `n`:
/// the mean square of the rows' deviations from their mean.
pub fn centred_mean_sq(g: &[f32], batch: usize, n: u64) -> f64 {
    let b = batch;
    if b < 2 || n == 0 {
        return 0.0;
    }
    let tr: f64 = (0..b).map(|i| f64::from(g[i * b + i])).sum();
    let all: f64 = g.iter().map(|&v| f64::from(v)).sum();
    ((tr - all / b as f64) / (b as f64 * n as f64)).max(0.0)
}

/// What the Gram matrices of one layer give: `||dW||_F`, the input
/// concentration and the gradient coherence of [`LayerStats`].
pub fn gram_summary(g_delta: &[f32], g_a: &[f32], batch: usize) -> (f64, f64, f64) {
    let norm2: f64 = g_delta
        .iter()
        .zip(g_a)
        .map(|(&d, &a)| f64::from(d) * f64::from(a))
        .sum::<f64>()
        .max(0.0);
    let b = batch;
    let trace = |g: &[f32]| (0..b).map(|i| f64::from(g[i * b + i])).sum::<f64>();
    let tr_d = trace(g_delta);
    // P G_a P: subtract row and column means, add back the grand mean.
    let bf = b as f64;
    let row: Vec<f64> = (0..b)
        .map(|i| {
            g_a[i * b..(i + 1) * b]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / bf
        })
        .collect();
    let grand = row.iter().sum::<f64>() / bf;
    let (mut frob_c, mut tr_c) = (0.0f64, 0.0f64);
    for i in 0..b {
        for j in 0..b {
            let c = f64::from(g_a[i * b + j]) - row[i] - row[j] + grand;
            frob_c += c * c;
            if i == j {
                tr_c += c;
            }
        }
    }
    let concentration = if tr_c > 0.0 && b > 1 {
        (frob_c / (tr_c * tr_c)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    // tr(G_a^2 G_delta) <= lambda_max(G_a) tr(G_a G_delta) for PSD matrices,
    // and lambda_max <= the largest absolute row sum (Gershgorin).
    let lambda = (0..b)
        .map(|i| {
            g_a[i * b..(i + 1) * b]
                .iter()
                .map(|&v| f64::from(v).abs())
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let coherence = if norm2 > 0.0 && tr_d > 0.0 {
        (lambda * tr_d / norm2).clamp(1.0, b as f64)
    } else {
        b.max(1) as f64
    };
    (norm2.sqrt(), concentration, coherence)
}

/// A whole run on one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetStats {
    /// Statistics of the input a_0.
    pub input: TensorStats,
    /// Layers 1..=L.
    pub layers: Vec<LayerStats>,
    /// Gram matrix of the last layer's activations (batch x batch, row-major):
    /// the similarity of the inputs after L layers.
    pub final_gram: Vec<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}
