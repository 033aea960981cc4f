//! Deep networks and what deepinit knows about them: the configuration and
//! per-layer statistics ([`config`]), activations ([`act`]) and the exact
//! device arithmetic they are written in ([`arith`]), the CPU backend's pass
//! ([`reference`](mod@reference)), the CPU mirror of the device's pass that
//! verifies it bit for bit ([`mirror`]), the mean-field theory ([`theory`]),
//! and [`experiment`], which runs a network on a backend and judges it.

pub mod act;
pub mod arith;
pub mod config;
pub mod critical;
pub mod experiment;
pub mod mirror;
pub mod reference;
pub mod theory;

pub use config::{
    centred_mean_sq, gram_summary, Fault, LayerStats, NetConfig, NetStats, TensorStats,
    BIAS_TENSOR, INPUT_TENSOR, LOSS_TENSOR, MAX_DEPTH,
};
