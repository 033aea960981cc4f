//! The default run: the lecture as an experiment. Schemes he, xavier, lecun,
//! naive:0.01 and naive:1.0 crossed with relu and tanh, each a deep forward +
//! backward pass checked against the CPU reference and the theory; a compact
//! table, `report.json` and a plot of variance vs depth.

use crate::act::Activation;
use crate::backend::Backend;
use crate::error::Result;
use crate::experiment::{self, RunReport};
use crate::init::scheme::Scheme;
use crate::net::NetConfig;
use serde::Serialize;

/// The demo's schemes, in table order.
pub(crate) const SCHEMES: [Scheme; 5] = [
    Scheme::HE,
    Scheme::XAVIER,
    Scheme::LECUN,
    Scheme::Naive { std: 0.01 },
    Scheme::Naive { std: 1.0 },
];
/// The demo's activations.
pub(crate) const ACTIVATIONS: [Activation; 2] = [Activation::Relu, Activation::Tanh];

/// Network size of a demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Size {
    /// Width of every layer (and the input).
    pub width: u64,
    /// Depth.
    pub depth: usize,
    /// Batch.
    pub batch: u64,
}

impl Size {
    /// About 10-20 s on a 2-core CPU through lavapipe, GPU and CPU reference together.
    pub(crate) const DEFAULT: Size = Size {
        width: 256,
        depth: 50,
        batch: 64,
    };
    /// Layers of 4096, depth 100: for real GPUs.
    pub(crate) const BIG: Size = Size {
        width: 4096,
        depth: 100,
        batch: 128,
    };
}

/// The whole `report.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Device.
    pub device: crate::backend::DeviceInfo,
    /// Configuration.
    pub config: serde_json::Value,
    /// Runs.
    pub runs: Vec<RunReport>,
}

/// Runs the grid, calling `progress(done, total, label)` before each run.
pub(crate) fn run(
    backend: &Backend,
    size: Size,
    seed: u64,
    verify: bool,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<RunReport>> {
    let total = SCHEMES.len() * ACTIVATIONS.len();
    let mut runs = Vec::with_capacity(total);
    for act in ACTIVATIONS {
        for scheme in SCHEMES {
            progress(
                runs.len(),
                total,
                &format!("{} / {}", scheme.name(), act.name()),
            );
            let mut cfg = NetConfig::uniform(scheme, act, size.width, size.depth, size.batch);
            cfg.seed = seed;
            runs.push(experiment::run(backend, &cfg, verify)?);
        }
    }
    progress(total, total, "done");
    Ok(runs)
}

/// The files the demo writes into its output directory.
pub(crate) const OUTPUT_FILES: [&str; 3] = ["report.json", "variance.svg", "variance.png"];
