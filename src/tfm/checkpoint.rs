//! `forward --model DIR`: the pass on a checkpoint's own weights (a
//! directory with `config.json` and `model.safetensors` or shards with their
//! index, as `deepinit model` and transformers write them).

use super::{Model, Names, TfmConfig, Weights};
use crate::error::{Error, Result};
use crate::io::safetensors::Float;
use crate::model::hf;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Tensors by name: shape and values.
type Stored = HashMap<String, (Vec<u64>, Vec<f32>)>;

/// Reads every tensor of the safetensors files of `dir` as f32.
fn read_all(dir: &Path) -> Result<Stored> {
    let (files, _) = crate::model::inspect::files_of(dir)?;
    let mut out = HashMap::new();
    for path in files {
        let header = crate::io::safetensors::read_header(&path)?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::open(&path).map_err(io)?;
        for e in &header.tensors {
            let float = Float::of(e.dtype).ok_or_else(|| {
                Error::path(
                    &path,
                    format!("tensor '{}' has dtype {}, not a float", e.name, e.dtype),
                )
            })?;
            let mut bytes = crate::io::host::host_vec::<u8>(e.end - e.begin)?;
            f.seek(SeekFrom::Start(header.data_start + e.begin))
                .map_err(io)?;
            f.read_exact(&mut bytes).map_err(io)?;
            let mut vals = Vec::new();
            float.decode_into(&bytes, &mut vals);
            if out
                .insert(e.name.clone(), (e.shape.clone(), vals))
                .is_some()
            {
                return Err(Error::path(
                    &path,
                    format!("tensor '{}' appears twice in the checkpoint", e.name),
                ));
            }
        }
    }
    Ok(out)
}

/// The checkpoint's name for `name`: itself, or with the class's prefix
/// (`transformer.`, `model.`) added or removed, as checkpoints saved from
/// the base class name them.
fn find<'a>(stored: &'a Stored, name: &str) -> Option<&'a (Vec<u64>, Vec<f32>)> {
    stored.get(name).or_else(|| {
        ["transformer.", "model."].iter().find_map(|p| {
            name.strip_prefix(p)
                .and_then(|n| stored.get(n))
                .or_else(|| stored.get(&format!("{p}{name}")))
        })
    })
}

impl Model {
    /// The model of the checkpoint in `dir` (its `config.json`), with the
    /// checkpoint's values for every tensor the class has. Missing tensors,
    /// wrong shapes and non-finite values are refused with the tensor named.
    pub fn from_checkpoint(dir: &Path) -> Result<Model> {
        if !dir.is_dir() {
            return Err(Error::path(
                dir,
                "--model takes a checkpoint directory (config.json and .safetensors files)",
            ));
        }
        let m = hf::read(dir)?;
        let cfg = TfmConfig::from_hf(&m)?;
        let spec = m.spec(hf::InitRule::Reference, 0)?;
        let stored = read_all(dir)?;
        let mut values = HashMap::new();
        for t in &spec.tensors {
            let (shape, v) = find(&stored, &t.name).ok_or_else(|| {
                Error::path(
                    dir,
                    format!(
                        "the checkpoint has no tensor '{}' (a {} needs it)",
                        t.name, m.class
                    ),
                )
            })?;
            if shape != &t.shape.0 {
                return Err(Error::path(
                    dir,
                    format!(
                        "tensor '{}' has shape {shape:?}, the config says {:?}",
                        t.name, t.shape.0
                    ),
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::path(
                    dir,
                    format!("tensor '{}' holds NaN or infinite values", t.name),
                ));
            }
            values.insert(t.name.clone(), v.clone());
        }
        let weights = Weights::from_values(&spec, values)?;
        let names = Names::of(&cfg, &weights);
        Ok(Model {
            cfg,
            names,
            weights,
            init: format!("checkpoint {}", dir.display()),
            seed: 0,
            drawn: false,
            direction: super::Direction::Loss,
        })
    }
}
