//! # deepinit
//!
//! Reproducible, verified neural-network weight initialization on the GPU.
//!
//! Weights are drawn from Philox4x32-10 ([`philox`]) through exact integer to
//! float conversions and Box-Muller, uniform or truncated-normal mappings
//! ([`dist`]), scaled by the variance rule of a [`scheme`]. The same mapping
//! runs as WGSL compute shaders ([`gpu`]) and on the CPU ([`cpu`]); the value of
//! element `e` of tensor `t` under seed `s` depends only on `(s, t, e)`.
//! [`tensor::draw`] generates a tensor, streams it through statistics
//! ([`stats`]) and the CPU reference, and writes it as `.npy` ([`npy`]).
//!
//! The library never panics on bad input: every fallible call returns
//! [`Error`], whose message says what to do next.

#![warn(missing_docs)]

pub mod act;
pub mod backend;
pub mod bench;
pub mod cpu;
pub mod demo;
pub mod dist;
pub mod error;
pub mod experiment;
pub mod gpu;
pub mod net;
pub mod npy;
pub mod output;
pub mod philox;
pub mod plot;
pub mod progress;
pub mod reference;
pub mod scheme;
pub mod shaders;
pub mod stats;
pub mod sweep;
pub mod tensor;
pub mod theory;
pub mod tolerance;

pub use dist::Dist;
pub use error::{Error, Result};
pub use scheme::{FanMode, InitSpec, Scheme, Shape};
