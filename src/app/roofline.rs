//! The benchmark's rooflines, taken as the best the device does: every
//! variant of the fill kernel (store pattern x vector width x workgroup size)
//! and of the FMA kernel (independent chains x workgroup size) is timed, each
//! result checked, and the fastest kept, so a kernel's ratio is against the
//! device's own best, not against one arbitrary kernel.

use super::bench::{GpuTimer, Timing};
use crate::error::{Error, Result};
use crate::gpu::launch::{Batch, Launch};
use crate::gpu::GpuContext;
use serde::Serialize;

/// Workgroup sizes tried (those the device allows).
const WORKGROUP_SIZES: [u32; 3] = [64, 256, 1024];

/// One compiled variant.
struct Variant {
    /// Entry point.
    entry: &'static str,
    workgroup_size: u32,
    pipeline: wgpu::ComputePipeline,
    /// FMA variants: flops per iteration per invocation.
    flops_per_iter: f64,
    /// Fill variants: words written per invocation.
    words: u64,
}

/// What one variant measured (JSON: the benchmark's `tuning.roofline`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Candidate {
    /// Entry point in `shaders/bench/roofline*.wgsl`.
    pub variant: &'static str,
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// Median seconds of the timed runs.
    pub median_s: f64,
}

/// The best variant of a roofline: its timing, its name, and every candidate.
pub(crate) struct Best {
    /// The fastest variant's timing.
    pub time: Timing,
    /// `entry, wg N`.
    pub label: String,
    /// Flops per iteration per invocation of the winner (FMA only).
    pub flops_per_iter: f64,
    /// Every variant timed.
    pub candidates: Vec<Candidate>,
}

/// The compiled roofline variants of one device.
pub(crate) struct Roofline {
    fills: Vec<Variant>,
    fmas: Vec<Variant>,
}

impl Roofline {
    /// Compiles every variant the device's limits allow.
    pub(crate) fn new(ctx: &GpuContext) -> Result<Roofline> {
        let plain = crate::gpu::shaders::bench_module();
        let vec4 = crate::gpu::shaders::bench_vec4_module();
        let limits = ctx.limits();
        let max_wg = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x);
        let mut fills = Vec::new();
        let mut fmas = Vec::new();
        for wg in WORKGROUP_SIZES.into_iter().filter(|&w| w <= max_wg) {
            let c = [("WORKGROUP_SIZE", f64::from(wg))];
            let variant = |m, entry, flops_per_iter, words| -> Result<Variant> {
                Ok(Variant {
                    entry,
                    workgroup_size: wg,
                    pipeline: ctx.compute_pipeline(m, entry, &c)?,
                    flops_per_iter,
                    words,
                })
            };
            fills.push(variant(&plain, "fill", 0.0, 4)?);
            fills.push(variant(&plain, "fill_coalesced", 0.0, 4)?);
            fills.push(variant(&vec4, "fill_vec4", 0.0, 4)?);
            fills.push(variant(&vec4, "fill_vec4x4", 0.0, 16)?);
            if wg <= 256 {
                fmas.push(variant(&plain, "fma_peak", 64.0, 0)?);
                fmas.push(variant(&plain, "fma_peak4", 32.0, 0)?);
            }
        }
        Ok(Roofline { fills, fmas })
    }

    /// The fastest fill of `n` words (a multiple of 16) into `out`, each
    /// variant checked: the buffer is cleared first, then its first and last
    /// 4 words must hold `value ^ index`.
    pub(crate) fn best_fill(
        &self,
        ctx: &GpuContext,
        timer: &GpuTimer,
        reps: usize,
        n: u64,
        out: &wgpu::Buffer,
    ) -> Result<Best> {
        const VALUE: u32 = 0x5eed;
        let mut best: Option<(Timing, &Variant)> = None;
        let mut candidates = Vec::new();
        for v in &self.fills {
            let mut clear = Batch::default();
            clear.clear(out, 0, Some(4 * n));
            submit(ctx, clear)?;
            let groups = n.div_ceil(v.words).div_ceil(u64::from(v.workgroup_size));
            let t = timer.time(reps, launch(ctx, v, n as u32, VALUE, out, groups)?)?;
            let head = ctx.read_words(out, 4)?;
            let tail = ctx.read_words_at(out, n - 4, 4)?;
            let want = |from: u64| {
                (from..from + 4)
                    .map(|o| VALUE ^ o as u32)
                    .collect::<Vec<_>>()
            };
            if head != want(0) || tail != want(n - 4) {
                return Err(Error::internal(
                    "benchmark",
                    format!(
                        "the {} fill (wg {}) wrote wrong values",
                        v.entry, v.workgroup_size
                    ),
                ));
            }
            candidates.push(Candidate {
                variant: v.entry,
                workgroup_size: v.workgroup_size,
                median_s: t.median_s,
            });
            if best.as_ref().is_none_or(|(b, _)| t.median_s < b.median_s) {
                best = Some((t, v));
            }
        }
        finish(best, candidates)
    }

    /// The fastest FMA variant: each is timed once at the full `iters` (a
    /// shorter run ranked them differently on lavapipe: fixed costs weigh
    /// more there), the winner `reps` times; its result must be finite.
    /// `invocations` must be a multiple of 256.
    pub(crate) fn best_fma(
        &self,
        ctx: &GpuContext,
        timer: &GpuTimer,
        reps: usize,
        iters: u32,
        invocations: u64,
    ) -> Result<Best> {
        let out = super::bench::storage(ctx, 4 * invocations)?;
        let mut ranked: Option<(f64, &Variant)> = None;
        let mut candidates = Vec::new();
        for v in &self.fmas {
            let groups = invocations / u64::from(v.workgroup_size);
            let t = timer.time(1, launch(ctx, v, iters, 1, &out, groups)?)?;
            // Rank by flops per second, not by time: the variants differ in
            // flops per iteration.
            let rate = v.flops_per_iter / t.median_s;
            candidates.push(Candidate {
                variant: v.entry,
                workgroup_size: v.workgroup_size,
                median_s: t.median_s,
            });
            if ranked.as_ref().is_none_or(|(r, _)| rate > *r) {
                ranked = Some((rate, v));
            }
        }
        let Some((_, v)) = ranked else {
            return Err(Error::internal(
                "benchmark",
                "no FMA variant fits this device",
            ));
        };
        let groups = invocations / u64::from(v.workgroup_size);
        let t = timer.time(reps, launch(ctx, v, iters, 1, &out, groups)?)?;
        if !ctx
            .read_words(&out, 1)?
            .iter()
            .all(|&w| f32::from_bits(w).is_finite())
        {
            return Err(Error::internal(
                "benchmark",
                "the FMA kernel produced a non-finite value",
            ));
        }
        finish(Some((t, v)), candidates)
    }
}

fn launch(
    ctx: &GpuContext,
    v: &Variant,
    n: u32,
    value: u32,
    out: &wgpu::Buffer,
    groups: u64,
) -> Result<Launch> {
    Ok(Launch {
        pipeline: v.pipeline.clone(),
        layout: None,
        params: bytemuck::cast_slice(&[n, value, 0u32, 0u32]).to_vec(),
        buffers: vec![out.into()],
        groups: ctx.dispatch_2d(groups)?,
    })
}

fn submit(ctx: &GpuContext, batch: Batch) -> Result<()> {
    batch.submit(ctx)?;
    ctx.wait_idle("clearing a benchmark buffer")
}

fn finish(best: Option<(Timing, &Variant)>, candidates: Vec<Candidate>) -> Result<Best> {
    let Some((time, v)) = best else {
        return Err(Error::internal(
            "benchmark",
            "no roofline variant fits this device",
        ));
    };
    Ok(Best {
        label: format!(
            "best of {}: {}, wg {}",
            candidates.len(),
            v.entry,
            v.workgroup_size
        ),
        flops_per_iter: v.flops_per_iter,
        time,
        candidates,
    })
}
