//! Whole-model initial checkpoints: a [`spec`] of named tensors (from a
//! file or a [`preset`]), laid out into safetensors shards ([`plan`]),
//! generated and written ([`write`](mod@write)), and checked ([`inspect`]).

pub mod emit;
pub mod hf;
pub mod inspect;
pub mod plan;
pub mod preset;
pub mod spec;
pub mod write;

pub use spec::{tensor_id, ModelSpec, Rule, Split, TensorSpec};
