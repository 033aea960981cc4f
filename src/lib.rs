//! # deepinit
//!
//! Reproducible, verified neural-network weight initialization on the GPU.
//!
//! Weights are drawn from Philox4x32-10 ([`rng::philox`]) through exact
//! integer to float conversions and Box-Muller, uniform or truncated-normal
//! mappings ([`rng::dist`]), scaled by the variance rule of a scheme
//! ([`init::scheme`]). The same mapping runs as WGSL compute shaders ([`gpu`])
//! and on the CPU ([`rng::cpu`]); the value of element `e` of tensor `t` under
//! seed `s` depends only on `(s, t, e)`. [`init::tensor::draw`] generates a
//! tensor on a [`backend::Backend`], streams it through statistics ([`stats`])
//! and the CPU reference, and writes it as `.npy` ([`io`]); [`model`] writes a
//! whole model's tensors as sharded safetensors checkpoints and inspects any
//! checkpoint. Deep networks run,
//! are checked against the CPU reference and the mean-field theory in [`net`];
//! [`app`] holds the demo, sweep and benchmark orchestration and [`report`]
//! their pictures.
//!
//! The library never panics on bad input: every fallible call returns
//! [`Error`], whose message says what to do next.

#![warn(missing_docs)]

pub mod app;
pub mod backend;
pub mod error;
pub mod gpu;
pub mod init;
pub mod io;
pub mod model;
pub mod net;
pub mod progress;
pub mod report;
pub mod rng;
pub mod stats;
pub mod tfm;

pub use error::{Error, Result};
pub use init::scheme::{FanMode, InitSpec, Scheme, Shape};
pub use rng::dist::Dist;
