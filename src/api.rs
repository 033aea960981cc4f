//! The one-call entry points: generate a tensor (into a new vector, a
//! caller's buffer or a sink), generate and verify it, write a checkpoint,
//! run a verified deep pass. Each validates its inputs before any work and
//! returns [`Error`] instead of panicking.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::experiment::{self, RunReport};
use crate::gpu::{GenOptions, GenRequest, Kernel};
use crate::init::scheme::InitSpec;
use crate::io::dtype::DType;
use crate::model::hf::{HfModel, InitRule};
use crate::model::plan::{Plan, TensorParallel};
use crate::model::write::{self, Targets};
use crate::model::ModelSpec;
use crate::net::NetConfig;
use crate::tensor::{self, DrawOptions};
use std::path::Path;

/// The whole tensor's request: every element of tensor `tensor_id` under
/// `seed`, at the spec's scale.
fn request(spec: &InitSpec, seed: u64, tensor_id: u32) -> Result<GenRequest> {
    let target = spec.target()?;
    Ok(GenRequest {
        kernel: Kernel::Dist(spec.dist()),
        seed,
        tensor_id,
        start: 0,
        count: spec.shape().numel(),
        scale: spec.dist().kernel_scale(target.std),
    })
}

/// Streams the tensor `spec` describes to `sink(offset, values)`, chunk by
/// chunk in element order (memory stays one chunk whatever the size).
///
/// Element `e` depends only on `(seed, tensor_id, e)`: every backend gives
/// the same bits.
///
/// ```
/// use deepinit::{Backend, InitSpec, Scheme, Shape};
/// let spec = InitSpec::new(Scheme::HE, Shape::new(vec![64, 1000])?);
/// let (mut n, mut sum_sq) = (0u64, 0f64);
/// deepinit::generate_with(&spec, 7, 0, &Backend::Cpu, |_offset, values| {
///     n += values.len() as u64;
///     sum_sq += values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
///     Ok(())
/// })?;
/// assert_eq!(n, 64_000);
/// // He: Var = 2 / fan_in = 0.002, within a few standard errors.
/// assert!((sum_sq / n as f64 - 0.002).abs() < 0.0001);
/// # Ok::<(), deepinit::Error>(())
/// ```
pub fn generate_with(
    spec: &InitSpec,
    seed: u64,
    tensor_id: u32,
    backend: &Backend,
    sink: impl FnMut(u64, &[f32]) -> Result<()>,
) -> Result<()> {
    let req = request(spec, seed, tensor_id)?;
    backend.generate(&req, &GenOptions::default(), sink)?;
    Ok(())
}

/// Fills `out` (exactly the tensor's element count) with the tensor `spec`
/// describes: [`generate_with`] into a caller's buffer.
///
/// ```
/// use deepinit::{Backend, Dist, InitSpec, Scheme, Shape};
/// let spec = InitSpec::new(Scheme::LECUN, Shape::new(vec![16, 48])?).with_dist(Dist::Uniform);
/// let mut w = vec![0f32; 16 * 48];
/// deepinit::generate_into(&spec, 0, 3, &Backend::Cpu, &mut w)?;
/// // Uniform with Var = 1/48: every value within sqrt(3/48) = 0.25.
/// assert!(w.iter().all(|v| v.abs() <= 0.25) && w.iter().any(|&v| v != 0.0));
/// // A buffer of the wrong size is refused, not truncated.
/// assert!(deepinit::generate_into(&spec, 0, 3, &Backend::Cpu, &mut w[1..]).is_err());
/// # Ok::<(), deepinit::Error>(())
/// ```
pub fn generate_into(
    spec: &InitSpec,
    seed: u64,
    tensor_id: u32,
    backend: &Backend,
    out: &mut [f32],
) -> Result<()> {
    let n = spec.shape().numel();
    if out.len() as u64 != n {
        return Err(Error::invalid(
            "buffer",
            format!(
                "holds {} values; the tensor {} has {n}",
                out.len(),
                spec.shape()
            ),
        ));
    }
    generate_with(spec, seed, tensor_id, backend, |off, values| {
        let at = off as usize;
        out[at..at + values.len()].copy_from_slice(values);
        Ok(())
    })
}

/// The tensor `spec` describes, as a new vector in row-major order
/// (PyTorch's `[out, in]` for a linear layer's weight).
///
/// ```
/// use deepinit::{Backend, InitSpec, Scheme, Shape};
/// let spec = InitSpec::new(Scheme::HE, Shape::new(vec![256, 256])?);
/// let a = deepinit::generate(&spec, 42, 0, &Backend::Cpu)?;
/// assert_eq!(a.len(), 65_536);
/// // The same (seed, tensor) is the same tensor; another tensor id is not.
/// assert_eq!(a, deepinit::generate(&spec, 42, 0, &Backend::Cpu)?);
/// assert_ne!(a, deepinit::generate(&spec, 42, 1, &Backend::Cpu)?);
/// # Ok::<(), deepinit::Error>(())
/// ```
pub fn generate(spec: &InitSpec, seed: u64, tensor_id: u32, backend: &Backend) -> Result<Vec<f32>> {
    request(spec, seed, tensor_id)?;
    let n = usize::try_from(spec.shape().numel())
        .map_err(|_| Error::invalid("shape", "more elements than this machine can address"))?;
    let mut out = crate::io::host::host_vec::<f32>(n as u64)?;
    generate_into(spec, seed, tensor_id, backend, &mut out)?;
    Ok(out)
}

/// The tensor and its verification: the sample's mean, variance and
/// Kolmogorov-Smirnov tests against the analytic distribution and, on a
/// GPU, every raw word and value against the CPU reference.
/// `report.verdict` says what passed and lists what failed. The comparison
/// with the CPU is exact; the three statistical tests are each designed for
/// a false-alarm rate of 10^-3, so about one correct tensor in 300 fails
/// one of them: judge a failure by `report.verdict.failures`.
///
/// ```
/// use deepinit::{AdapterRequest, Backend, InitSpec, Policy, Scheme, Shape};
/// // The GPU where there is one, else the CPU.
/// let backend = Backend::open(Policy::Auto, &AdapterRequest::default())?.backend;
/// let spec = InitSpec::new(Scheme::HE, Shape::new(vec![512, 512])?);
/// let (w, report) = deepinit::generate_verified(&spec, 0, 0, &backend)?;
/// assert!(report.verdict.pass && w.len() == 512 * 512);
/// # Ok::<(), deepinit::Error>(())
/// ```
pub fn generate_verified(
    spec: &InitSpec,
    seed: u64,
    tensor_id: u32,
    backend: &Backend,
) -> Result<(Vec<f32>, tensor::Report)> {
    request(spec, seed, tensor_id)?;
    let mut values = crate::io::host::host_vec::<f32>(spec.shape().numel())?;
    let opts = DrawOptions {
        seed,
        tensor_id,
        ..DrawOptions::default()
    };
    let report = tensor::draw_with(spec, backend, &opts, |off, chunk| {
        let at = off as usize;
        values[at..at + chunk.len()].copy_from_slice(chunk);
        Ok(())
    })?;
    Ok((values, report))
}

/// A checkpoint to write: a model (a spec, a Hugging Face config or a
/// shipped preset), its element type and shard count.
///
/// ```
/// use deepinit::{Backend, Checkpoint, DType};
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path().join("ckpt");
/// // Any spec works too (`Checkpoint::from_spec`), or a Hugging Face config
/// // (`Checkpoint::from_config`), which also writes its config.json.
/// let report = Checkpoint::preset("mlp:64x2", 0)?
///     .dtype(DType::Bf16)
///     .write(&dir, &Backend::Cpu)?;
/// assert!(dir.join("model.safetensors").is_file());
/// assert_eq!(report.parameters, 64 * 64 * 2 + 64 * 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint {
    spec: ModelSpec,
    hf: Option<HfModel>,
    dtype: DType,
    shards: usize,
    force: bool,
}

impl Checkpoint {
    /// The model a spec describes (no `config.json` is written).
    pub fn from_spec(spec: ModelSpec) -> Checkpoint {
        Checkpoint {
            spec,
            hf: None,
            dtype: DType::F32,
            shards: 1,
            force: false,
        }
    }

    /// A Hugging Face model under `init` and `seed`: the transformers
    /// class's tensors, plus the `config.json` and `generation_config.json`
    /// that `from_pretrained` reads.
    pub fn from_config(model: HfModel, init: InitRule, seed: u64) -> Result<Checkpoint> {
        let mut c = Checkpoint::from_spec(model.spec(init, seed)?);
        c.hf = Some(model);
        Ok(c)
    }

    /// A shipped preset (`gpt2`, `llama-3.2-1b`, `mlp:WIDTHxDEPTH`, ...) under
    /// its reference init.
    pub fn preset(name: &str, seed: u64) -> Result<Checkpoint> {
        match crate::model::hf::shipped(name) {
            Some(model) => Checkpoint::from_config(model?, InitRule::Reference, seed),
            None => Ok(Checkpoint::from_spec(crate::model::preset::preset(
                name, seed,
            )?)),
        }
    }

    /// The element type (default f32).
    pub fn dtype(mut self, dtype: DType) -> Checkpoint {
        self.dtype = dtype;
        self
    }

    /// The number of shard files (default 1).
    pub fn shards(mut self, shards: usize) -> Checkpoint {
        self.shards = shards;
        self
    }

    /// Replace existing files (default: refuse them).
    pub fn force(mut self, force: bool) -> Checkpoint {
        self.force = force;
        self
    }

    /// The spec that will be written.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Writes every shard (and the index, and the config files of a Hugging
    /// Face model) into `dir`, created if missing: all files appear
    /// together or none does.
    pub fn write(&self, dir: &Path, backend: &Backend) -> Result<write::Report> {
        let plan = Plan::new(
            &self.spec,
            self.dtype,
            self.shards,
            TensorParallel::default(),
        )?;
        let mut extra = Vec::new();
        if let Some(m) = &self.hf {
            extra.push(("config.json".to_string(), m.config_json(self.dtype)));
            if let Some(g) = m.generation_config_json() {
                extra.push(("generation_config.json".to_string(), g));
            }
        }
        let all: Vec<usize> = (0..plan.shards.len()).collect();
        let targets = Targets::check(dir, &self.spec, &plan, &all, extra, self.force)?;
        write::write(&self.spec, &plan, targets, backend, None)
    }
}

/// A deep MLP pass at init, forward and backward, with per-layer
/// statistics; on a GPU, every statistic compared word for word with the
/// CPU mirror of the device's arithmetic, and the layers against mean-field
/// theory. `report.verdict` says what passed.
///
/// ```
/// use deepinit::{Activation, Backend, NetConfig, Scheme};
/// let cfg = NetConfig::uniform(Scheme::HE, Activation::Relu, 64, 10, 32);
/// let report = deepinit::run_network(&cfg, &Backend::Cpu)?;
/// assert_eq!(report.layers.len(), 10);
/// assert!(report.verdict.passed());
/// # Ok::<(), deepinit::Error>(())
/// ```
pub fn run_network(cfg: &NetConfig, backend: &Backend) -> Result<RunReport> {
    experiment::run(backend, cfg, true)
}
