//! # deepinit
//!
//! Reproducible, verified neural-network weight initialization on the GPU.
//!
//! ```toml
//! [dependencies]
//! # The core: no command line, pictures, TOML or signal handling.
//! deepinit = { version = "0.1", default-features = false }
//! ```
//!
//! ```
//! use deepinit::{AdapterRequest, Backend, InitSpec, Policy, Scheme, Shape};
//!
//! // A device: the GPU where wgpu finds one, else the CPU backend.
//! let backend = Backend::open(Policy::Auto, &AdapterRequest::default())?.backend;
//! // He weights for a 256 -> 128 linear layer ([out, in], as PyTorch stores it).
//! let spec = InitSpec::new(Scheme::HE, Shape::new(vec![128, 256])?);
//! let w: Vec<f32> = deepinit::generate(&spec, 0, 0, &backend)?;
//! // The same values, checked: moments and a KS test against N(0, 2/256),
//! // and on a GPU every word against the CPU reference.
//! let (checked, report) = deepinit::generate_verified(&spec, 0, 0, &backend)?;
//! assert!(report.verdict.pass && checked == w);
//! # Ok::<(), deepinit::Error>(())
//! ```
//!
//! The entry points ([`generate`], [`generate_into`], [`generate_with`],
//! [`generate_verified`], [`Checkpoint`], [`run_network`]) are in [`api`].
//!
//! Weights are drawn from Philox4x32-10 ([`rng::philox`]) through exact
//! integer programs for the normal, truncated and uniform mappings
//! ([`rng::dist`], [`rng::fixed`]), scaled by the variance rule of a scheme
//! ([`init::scheme`]). The same mapping runs as WGSL compute shaders ([`gpu`])
//! and on the CPU ([`rng::cpu`]); the value of element `e` of tensor `t` under
//! seed `s` depends only on `(s, t, e)`, and every [`Backend`] gives the same
//! bits. [`tensor::draw`] generates a tensor, streams it through
//! statistics ([`stats`]) and the CPU reference, and writes it as `.npy`
//! ([`io`]); [`model`] writes a whole model's tensors as sharded safetensors
//! checkpoints and inspects any checkpoint. Deep MLPs run and are checked
//! against a CPU mirror and mean-field theory in [`net`], transformers in
//! [`tfm`].
//!
//! # Features
//!
//! - `cli` (default): the `deepinit` command line, with the demo, sweep and
//!   benchmark orchestration (`app`) and their tables and pictures
//!   (`report`); pulls in clap, resvg, signal-hook and `toml`.
//! - `toml` (with `cli`): TOML model specs; JSON specs need nothing.
//!
//! The library never panics on bad input and never exits the process: every
//! fallible call returns [`Error`], whose message says what to do next.
//! Without the `cli` feature it never starts programs either (the
//! benchmarks in `app` run python3 for their numpy and PyTorch baselines).

#![warn(missing_docs)]
// The crate-internal helpers that only the command line calls (output
// directories, progress lines, the tuner's reporting) are unused without
// it; dead code is checked in the default build, where `cli` is part of
// the crate and nothing internal goes unused.
#![cfg_attr(not(feature = "cli"), allow(dead_code))]

pub mod act;
pub mod api;
// The command line's own modules (`cli`, and the orchestration and output of
// its demo, sweep and bench): public for the binary and the tests, not part
// of the library's API, so not documented as if they were.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod app;
pub mod backend;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod error;
pub mod experiment;
pub mod gpu;
pub mod init;
pub mod io;
pub mod model;
pub mod net;
pub mod progress;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod report;
pub mod rng;
pub mod stats;
pub mod tensor;
pub mod tfm;

pub use act::Activation;
pub use api::{generate, generate_into, generate_verified, generate_with, run_network, Checkpoint};
pub use backend::{Backend, Policy};
pub use error::{Error, Result};
pub use gpu::AdapterRequest;
pub use init::scheme::{FanMode, InitSpec, Scheme, Shape};
pub use io::dtype::DType;
pub use model::hf::{HfModel, InitRule};
pub use model::ModelSpec;
pub use net::NetConfig;
pub use rng::dist::Dist;

/// `FromStr` for the user-facing types that have a `parse` returning
/// [`Result`]: `"he".parse::<Scheme>()`, `"bf16".parse::<DType>()`, ...
macro_rules! from_str_by_parse {
    ($($t:ty),* $(,)?) => {$(
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                <$t>::parse(s)
            }
        }
    )*};
}

from_str_by_parse!(Scheme, Shape, FanMode, Activation, DType, InitRule);

impl std::str::FromStr for Dist {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Dist::parse(s).ok_or_else(|| Error::choice("dist", s, &["normal", "truncated", "uniform"]))
    }
}

impl std::str::FromStr for gpu::gemm::GemmVariant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            let names = Self::ALL.map(Self::name);
            Error::choice("gemm variant", s, &names)
        })
    }
}
