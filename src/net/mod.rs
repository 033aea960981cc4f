//! Deep networks and what deepinit knows about them: the configuration and
//! per-layer statistics ([`config`]), the pass on the device ([`device`],
//! with its [`kernels`]; activations are [`crate::act`]), the CPU backend's pass
//! ([`reference`](mod@reference)), the CPU mirror of the device's pass that
//! verifies it bit for bit ([`mirror`]), the mean-field theory ([`theory`]),
//! ([`crate::experiment`] runs a network on a backend and judges it).

pub mod config;
pub mod critical;
pub mod device;
pub mod kernels;
pub mod mirror;
pub mod reference;
pub mod theory;

pub use config::{
    centred_mean_sq, gram_summary, Fault, LayerStats, NetConfig, NetStats, TensorStats,
    BIAS_TENSOR, INPUT_TENSOR, LOSS_TENSOR, MAX_DEPTH,
};
