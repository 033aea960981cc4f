//! `deepinit init`: one tensor, generated, verified, optionally written.

use super::*;
use crate::gpu::{self, GenOptions};
use crate::init::scheme::{self, InitSpec, Scheme, Shape};
use crate::tensor::{self, DrawOptions};
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub(crate) struct InitArgs {
    /// he|kaiming, lecun, xavier|glorot, or naive:STD.
    #[arg(long, default_value = "he", value_parser = Scheme::parse)]
    scheme: Scheme,
    /// Weight shape, [out, in] or [out, in/groups, k...], e.g. 4096x4096 or 64x3x3x3.
    #[arg(long, default_value = "4096x4096", value_parser = Shape::parse)]
    shape: Shape,
    /// Weight distribution.
    #[arg(long, value_enum, default_value = "normal")]
    dist: DistChoice,
    /// Seed (the Philox key).
    #[arg(long, default_value_t = 0, value_parser = num::seed)]
    seed: u64,
    /// Tensor id (Philox counter word 2), e.g. the layer index.
    #[arg(long, default_value_t = 0, value_parser = num::int_in(0u32, u32::MAX))]
    tensor_id: u32,
    /// The fan to divide by (overrides the scheme's).
    #[arg(long, value_enum)]
    mode: Option<ModeChoice>,
    /// Gain: a number or an activation (relu, tanh, leaky_relu[:a], selu, ...);
    /// the variance numerator becomes gain^2.
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<String>,
    /// Variance multiplier (the tunable hyperparameter).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    multiplier: f64,
    /// Convolution groups.
    #[arg(long, default_value_t = 1, value_parser = num::int_in(1u64, u64::MAX))]
    groups: u64,
    /// Generate only rows A:B (dimension 0) of the tensor: bit for bit that
    /// slice of the whole (tensor-parallel layouts).
    #[arg(long, value_name = "A:B")]
    rows: Option<String>,
    /// Generate only columns C:D of a 2-D tensor (with --rows: a block).
    #[arg(long, value_name = "C:D")]
    cols: Option<String>,
    /// Write the tensor to this .npy file (atomically; --force replaces it).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArgs,
    /// Skip the comparison with the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Elements per GPU chunk, 1..=2^32 (default: one storage binding, at
    /// most 256 MiB).
    #[arg(long, value_parser = num::int_in(1u64, 1 << 32))]
    chunk_elems: Option<u64>,
    /// GPU workgroup size (power of two, 32..=1024), with one-word stores.
    /// Default: the store and workgroup size tuned for this device and
    /// distribution (cached; see `deepinit adapters`), or 256 when tuning is
    /// off (`--gemm VARIANT`).
    #[arg(long, value_parser = num::int_in(32u32, 1024))]
    workgroup_size: Option<u32>,
}

impl InitArgs {
    fn spec(&self) -> Result<InitSpec> {
        let spec = InitSpec::new(self.scheme, self.shape.clone())
            .with_dist(self.dist.into())
            .with_multiplier(self.multiplier)?
            .with_groups(self.groups)?
            .with_mode(self.mode.map(Into::into))
            .with_gain(self.gain.as_deref().map(scheme::gain).transpose()?)?;
        spec.target()?; // validate everything before touching a device
        if let Some(wg) = self.workgroup_size {
            gpu::generate::check_workgroup_size(wg, gpu::generate::MAX_WORKGROUP_SIZE)?;
        }
        Ok(spec)
    }
}

pub(crate) fn run_init(a: &InitArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let spec = a.spec()?;
    let mut outputs = a.json.file();
    outputs.extend(
        a.out
            .iter()
            .map(|p| ("the --out tensor".to_string(), p.clone())),
    );
    crate::io::output::check_distinct(&outputs)?;
    let out = a
        .out
        .as_deref()
        .map(|p| crate::io::output::Destination::check(p, a.json.force))
        .transpose()?;
    let json = a.json.open()?;
    let block = match (&a.rows, &a.cols) {
        (None, None) => None,
        (r, c) => Some(crate::tensor::Block::parse(
            &spec.shape().0,
            r.as_deref(),
            c.as_deref(),
        )?),
    };
    let elements = block.as_ref().map_or(spec.shape().numel(), |b| b.len());
    if a.out.is_none() {
        // Without --out the tensor is only checked, never kept; refuse what no
        // one could hold in memory rather than stream it for hours.
        let bytes = elements.saturating_mul(4);
        if let Some(mem) = crate::io::host::host_memory_bytes() {
            if bytes > mem {
                return Err(Error::LimitExceeded {
                    what: "tensor (bytes)".into(),
                    got: bytes,
                    max: mem,
                    hint: " of host memory; pass --out FILE to stream it to disk".into(),
                });
            }
        }
    }
    let backend = open_backend(d)?;
    let gen = GenOptions {
        chunk_elems: a.chunk_elems,
        ..GenOptions::default()
    };
    let gen = match (a.workgroup_size, backend.gpu()) {
        (Some(wg), _) => GenOptions {
            workgroup_size: wg,
            ..gen
        },
        (None, Some(g)) => g
            .gemm()
            .generation_for(g.generator(), gpu::Kernel::Dist(spec.dist()), elements)?
            .apply(gen),
        (None, None) => gen,
    };
    let opts = DrawOptions {
        seed: a.seed,
        tensor_id: a.tensor_id,
        gen,
        verify: !a.no_verify,
        block,
        out,
        progress: Some(std::sync::Arc::new(crate::progress::Progress::new(
            &format!("generating {} ({elements} elements)", spec.shape()),
        ))),
        ..DrawOptions::default()
    };
    let report = tensor::draw(&spec, &backend, &opts)?;
    let t = json.text();
    t.styled(&crate::report::init::render(&report, &spec));
    json.emit(&report, &t)?;
    Ok(if report.verdict.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
