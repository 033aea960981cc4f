//! On-device f32 -> bf16 / f16 packing for checkpoints (`shaders/io/pack.wgsl`):
//! the exact integer rounding of [`crate::io::dtype`], two values per word.

use super::context::GpuContext;
use super::launch::{Binding, Launch};
use super::layout::PackParams;
use super::shaders;
use crate::error::{Error, Result};
use crate::io::dtype::DType;

const WORKGROUP: u32 = 256;

/// The two packing pipelines of one context (built once, on first use).
pub struct Packer {
    ctx: GpuContext,
    bf16: wgpu::ComputePipeline,
    f16: wgpu::ComputePipeline,
}

impl Packer {
    /// Compiles both pipelines.
    pub fn new(ctx: &GpuContext) -> Result<Packer> {
        let m = shaders::pack_module();
        let constants = [("WORKGROUP_SIZE", f64::from(WORKGROUP))];
        Ok(Packer {
            ctx: ctx.clone(),
            bf16: ctx.compute_pipeline(&m, "pack_bf16", &constants)?,
            f16: ctx.compute_pipeline(&m, "pack_f16", &constants)?,
        })
    }

    /// The launch that packs the first `count` f32 values of `src` into
    /// `(count + 1) / 2` words of `dst` (element `2i` in the low half).
    pub fn launch(
        &self,
        dtype: DType,
        count: u64,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<Launch> {
        let pipeline = match dtype {
            DType::Bf16 => &self.bf16,
            DType::F16 => &self.f16,
            DType::F32 => return Err(Error::internal("pack", "f32 needs no packing")),
        };
        let words = count.div_ceil(2);
        if count == 0
            || count > u64::from(u32::MAX)
            || count * 4 > src.size()
            || words * 4 > dst.size()
        {
            return Err(Error::internal(
                "pack",
                format!("{count} values do not fit the buffers"),
            ));
        }
        let params = PackParams {
            count: count as u32,
            _pad: [0; 3],
        };
        Ok(Launch {
            pipeline: pipeline.clone(),
            layout: None,
            params: bytemuck::bytes_of(&params).to_vec(),
            buffers: vec![
                Binding::prefix(src, count * 4),
                Binding::prefix(dst, words * 4),
            ],
            groups: self.ctx.dispatch_2d(words.div_ceil(u64::from(WORKGROUP)))?,
        })
    }
}
