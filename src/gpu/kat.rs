//! Runs the Philox block function on the device for arbitrary counters and
//! keys (`shaders/rng/kat.wgsl`), to check the WGSL Philox against the Random123
//! known-answer vectors and the CPU implementation; and the integer program of
//! the normal and truncated mappings on every 24-bit input.

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
    check_variant(ctx, mulhi)?;
    let words: Vec<u32> = inputs
        .iter()
        .flat_map(|(c, k)| c.iter().chain(k.iter()).copied())
        .collect();
    let run = KatRun {
        entry: "philox_kat",
        input: &words,
        out_words: 4 * inputs.len() as u64,
        invocations: inputs.len() as u64,
        workgroup: 64,
    };
    let words = run_kat(ctx, mulhi, run)?;
    Ok(words
        .chunks_exact(4)
        .map(|w| [w[0], w[1], w[2], w[3]])
        .collect())
}

fn check_variant(ctx: &GpuContext, mulhi: MulHi) -> Result<()> {
    if mulhi == MulHi::Int64 && !ctx.int64() {
        return Err(Error::invalid(
            "kernel variant",
            "this device has no SHADER_INT64",
        ));
    }
    Ok(())
}

/// The odd multiplier (a bijection mod 2^24) that pairs each radius input of
/// [`unit_values`] with a different angle input (`PERMUTE` in `rng/kat.wgsl`).
pub const UNIT_KAT_PERMUTE: u32 = 0x9E37_79B1;

/// For every k in 0 .. 2^24, the device's `(r cos, r sin, truncated)` unit
/// value bits: [`crate::rng::fixed::normal_pair_bits`] of the words `k << 8`
/// and `(k * UNIT_KAT_PERMUTE mod 2^24) << 8` (every radius input and every
/// angle input once) and [`crate::rng::fixed::truncated_bits`] of `k << 8`, on
/// the device, in four launches.
pub fn unit_values(ctx: &GpuContext, mulhi: MulHi) -> Result<Vec<[u32; 3]>> {
    check_variant(ctx, mulhi)?;
    const PART: u32 = 1 << 22;
    let mut all = Vec::with_capacity(1 << 24);
    for part in 0..4u32 {
        let run = KatRun {
            entry: "unit_kat",
            input: &[part * PART],
            out_words: 3 * u64::from(PART),
            invocations: u64::from(PART),
            workgroup: 256,
        };
        let words = run_kat(ctx, mulhi, run)?;
        all.extend(words.chunks_exact(3).map(|w| [w[0], w[1], w[2]]));
    }
    Ok(all)
}

/// What one known-answer launch runs: the entry point, its input words, the
/// words it writes, and its invocations and workgroup size.
struct KatRun<'a> {
    entry: &'a str,
    input: &'a [u32],
    out_words: u64,
    invocations: u64,
    workgroup: u64,
}

/// Runs one known-answer kernel and reads its output back.
fn run_kat(ctx: &GpuContext, mulhi: MulHi, run: KatRun<'_>) -> Result<Vec<u32>> {
    let KatRun {
        entry,
        input: words,
        out_words,
        invocations,
        workgroup: wg,
    } = run;
    let out_bytes = 4 * out_words;
    let m = shaders::kat_module(mulhi);
    let pipeline = ctx.compute_pipeline(&m, entry, &[])?;
    let (input, output) = ctx.scoped("setting up the Philox KAT kernel", || {
        let input = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kat in"),
                contents: bytemuck::cast_slice(words),
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
    let groups = u32::try_from(invocations.div_ceil(wg))
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
    ctx.read_words(&output, out_words)
}
