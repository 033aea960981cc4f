//! `deepinit demo --model`: one transformer at init under several inits side
//! by side -- its own (transformers' `_init_weights`), the same std without
//! GPT-2's residual scaling, LeCun with and without depth scaling, and He
//! without -- each pass verified against the CPU mirror and the theory.

use crate::backend::Backend;
use crate::error::Result;
use crate::model::hf::{HfModel, InitRule};
use crate::tfm::run::TfmReport;
use crate::tfm::{Model, Tokens};

/// The inits compared, in plot order.
pub const INITS: [&str; 5] = [
    "reference",
    "naive:0.02",
    "lecun",
    "lecun-unscaled",
    "he-unscaled",
];

/// Sequences and tokens per sequence of the demo's passes.
pub(crate) const BATCH: u64 = 2;
/// See [`BATCH`].
pub(crate) const SEQ: u64 = 64;

/// Runs `m` under every init of [`INITS`] on the same random tokens.
pub(crate) fn run(
    backend: &Backend,
    m: &HfModel,
    source: &str,
    seed: u64,
    verify: bool,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<TfmReport>> {
    let cfg = crate::tfm::TfmConfig::from_hf(m)?;
    let seq = if cfg.positions > 0 {
        SEQ.min(cfg.positions)
    } else {
        SEQ
    };
    let tokens = Tokens::random(&cfg, BATCH, seq, seed)?;
    let mut out = Vec::new();
    for (i, name) in INITS.iter().enumerate() {
        progress(i, INITS.len(), name);
        let model = Model::new(m, InitRule::parse(name)?, seed)?;
        out.push(crate::tfm::run::run(
            backend, &model, source, &tokens, verify, true, None,
        )?);
    }
    progress(INITS.len(), INITS.len(), "done");
    Ok(out)
}

/// The files `demo --model` writes into its output directory.
pub const OUTPUT_FILES: [&str; 3] = ["transformer.json", "transformer.svg", "transformer.png"];
