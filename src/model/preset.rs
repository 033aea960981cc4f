//! Named models: `mlp:WIDTHxDEPTH`, and the published configs deepinit
//! ships ([`super::hf::SHIPPED`]: GPT-2 small to XL, Llama 2 7B, Llama 3 8B,
//! Llama 3.2 1B, Mistral 7B, Qwen2.5 0.5B, BERT base), which read exactly as
//! `--config` reads their `config.json`.
//!
//! - `mlp:WIDTHxDEPTH`: `layers.{i}.weight` `[W, W]` (He, for ReLU) and
//!   `layers.{i}.bias` (zeros); column-parallel (rows split).

use super::hf::{self, HfModel, InitRule};
use super::spec::{Layout, ModelSpec, Split, TensorSpec, TpSplit};
use crate::error::{Error, Result};
use crate::init::scheme::Scheme;

/// Preset names for help texts and errors.
pub const NAMES: &[&str] = &[
    "mlp:WIDTHxDEPTH",
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
    "llama-7b",
    "llama-3-8b",
    "llama-3.2-1b",
    "mistral-7b",
    "qwen2-0.5b",
    "bert-base",
];

/// What a preset names.
#[derive(Debug, Clone)]
pub(crate) enum Preset {
    /// A plain spec (the MLP).
    Spec(ModelSpec),
    /// A shipped Hugging Face config.
    Hf(HfModel),
}

/// Resolves a preset name.
pub(crate) fn resolve(name: &str) -> Result<Preset> {
    if let Some(m) = hf::shipped(name) {
        return Ok(Preset::Hf(m?));
    }
    match name.trim().to_ascii_lowercase().strip_prefix("mlp:") {
        Some(dims) => {
            let spec = ModelSpec {
                seed: 0,
                tensors: mlp(name, dims)?,
                tied: Default::default(),
            };
            spec.validate()?;
            Ok(Preset::Spec(spec))
        }
        None => Err(Error::choice("preset", name, NAMES)),
    }
}

/// The preset called `name` with its reference rules and `seed`.
pub fn preset(name: &str, seed: u64) -> Result<ModelSpec> {
    let mut spec = match resolve(name)? {
        Preset::Spec(s) => s,
        Preset::Hf(m) => m.spec(InitRule::Reference, seed)?,
    };
    spec.seed = seed;
    Ok(spec)
}

/// The comment `--print-spec` puts above a spec; `source` says where the
/// spec came from (`preset gpt2`, `spec model.toml`).
pub(crate) fn describe(source: &str) -> String {
    format!(
        "deepinit model spec, from {source}.\n\
         Edit it and pass it back with --spec FILE. Keys: init (he, lecun, xavier,\n\
         naive:STD, zeros, ones, constant with value), mode, gain, multiplier, dist,\n\
         groups, layout (out_in | in_out), split (rows | cols), split_parts,\n\
         split_unit, zero_rows, note; [tied] names weights shared, not stored.\n\
         A --spec run writes no config.json: copy the config beside the checkpoint."
    )
}

fn mlp(name: &str, dims: &str) -> Result<Vec<TensorSpec>> {
    let bad = || {
        Error::bad(
            "preset",
            name,
            "expected mlp:WIDTHxDEPTH with both at least 1",
        )
    };
    let (w, d) = dims.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, d): (u64, u64) = (w.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if w == 0 || d == 0 || d > 100_000 || w > 1 << 24 {
        return Err(bad());
    }
    Ok((0..d)
        .flat_map(|i| {
            [
                TensorSpec::draw(
                    format!("layers.{i}.weight"),
                    &[w, w],
                    Scheme::HE,
                    Layout::OutIn,
                )
                .split(TpSplit::plain(Split::Rows)),
                TensorSpec::constant(format!("layers.{i}.bias"), &[w], 0.0),
            ]
        })
        .collect())
}
