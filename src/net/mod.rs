//! Deep networks and what deepinit knows about them: the configuration and
//! per-layer statistics ([`config`]), activations ([`act`]), the f64-accumulating
//! CPU reference ([`reference`](mod@reference)), the mean-field theory ([`theory`]), the
//! derived GPU-vs-CPU tolerances ([`tolerance`]), and [`experiment`], which
//! runs a network on a backend and judges it.

pub mod act;
pub mod config;
pub mod critical;
pub mod experiment;
pub mod reference;
pub mod theory;
pub mod tolerance;

pub use config::{
    centred_mean_sq, gram_summary, Fault, LayerStats, NetConfig, NetStats, TensorStats,
    BIAS_TENSOR, INPUT_TENSOR, LOSS_TENSOR, MAX_DEPTH,
};
