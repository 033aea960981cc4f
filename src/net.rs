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
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::scheme::{FanMode, InitSpec, Scheme, Shape};
use serde::Serialize;

/// Tensor id of the bias of layer l: `BIAS_TENSOR | l`.
pub const BIAS_TENSOR: u32 = 0x4000_0000;
/// Tensor id of the network input.
pub const INPUT_TENSOR: u32 = 0x7FFF_FFF0;
/// Tensor id of the loss direction r.
pub const LOSS_TENSOR: u32 = 0x7FFF_FFF1;

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
    pub fn depth(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    /// The weight spec of layer `l` (1-based).
    pub fn weight_spec(&self, l: usize) -> Result<InitSpec> {
        let shape = Shape::new(vec![self.widths[l], self.widths[l - 1]])?;
        let mut s = InitSpec::new(self.scheme, shape);
        s.multiplier = self.multiplier;
        s.gain = self.gain;
        s.mode = self.mode;
        s.dist = self.dist;
        Ok(s)
    }

    /// Checks sizes and parameters; returns every layer's weight standard deviation.
    pub fn validate(&self) -> Result<Vec<f64>> {
        if self.depth() == 0 {
            return Err(Error::invalid(
                "depth",
                "0 (a network needs at least one layer)",
            ));
        }
        if self.depth() > 100_000 {
            return Err(Error::invalid(
                "depth",
                format!("{} (at most 100000)", self.depth()),
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
                "bias standard deviation",
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
    pub fn sigma_w2(&self) -> Result<Vec<f64>> {
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
    pub fn from_sums(
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

/// ||delta^T a||_F^2 = sum_{b,b'} G_delta[b,b'] G_a[b,b'] with Gram matrices
/// G = X X^T (batch x batch): exact in real arithmetic and B^2 n work instead
/// of the n^2 B of forming dW.
pub fn grad_norm_from_grams(g_delta: &[f32], g_a: &[f32]) -> f64 {
    g_delta
        .iter()
        .zip(g_a)
        .map(|(&d, &a)| f64::from(d) * f64::from(a))
        .sum::<f64>()
        .max(0.0)
        .sqrt()
}
