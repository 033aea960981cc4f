//! Runs the Philox block function on the device for arbitrary counters and
//! keys (`shaders/kat.wgsl`), to check the WGSL Philox against the Random123
//! known-answer vectors and the CPU implementation.

use super::context::GpuContext;
use super::launch::{Batch, Launch};
use crate::error::{Error, Result};
use crate::gpu::shaders::{self, MulHi};
use wgpu::util::DeviceExt;

/// `philox4x32_10(ctr, key)` for each input, computed by the device with the
/// chosen multiply variant.
pub fn philox_blocks(
    ctx: &GpuContext,
    mulhi: MulHi,
    inputs: &[([u32; 4], [u32; 2])],
) -> Result<Vec<[u32; 4]>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    if mulhi == MulHi::Int64 && !ctx.int64() {
        return Err(Error::invalid(
            "kernel variant",
            "this device has no SHADER_INT64",
        ));
    }
    let words: Vec<u32> = inputs
        .iter()
        .flat_map(|(c, k)| c.iter().chain(k.iter()).copied())
        .collect();
    let out_bytes = 16 * inputs.len() as u64;
    let m = shaders::kat_module(mulhi);
    let pipeline = ctx.compute_pipeline(&m, "philox_kat", &[])?;
    let (input, output) = ctx.scoped("setting up the Philox KAT kernel", || {
        let input = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kat in"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let output = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("kat out"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        (input, output)
    })?;
    let groups = u32::try_from(inputs.len().div_ceil(64))
        .ok()
        .filter(|&g| g <= ctx.limits().max_compute_workgroups_per_dimension)
        .ok_or_else(|| Error::internal("KAT inputs", "too many for one dispatch"))?;
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kat") });
    Batch::from(Launch {
        pipeline,
        layout: None,
        params: Vec::new(),
        buffers: vec![(&input).into(), (&output).into()],
        groups: (groups, 1),
    })
    .record(ctx, &mut enc)?;
    ctx.queue().submit([enc.finish()]);
    let words = ctx.read_words(&output, out_bytes / 4)?;
    Ok(words
        .chunks_exact(4)
        .map(|w| [w[0], w[1], w[2], w[3]])
        .collect())
}
