//! Timing of device work and host work: a warm-up run, then `repeats` runs;
//! min / median / max. On the GPU each run is one submission bracketed by
//! timestamps written into the command encoder where the adapter supports
//! them (`gpu-timestamps`), else the wall clock from submission to completion
//! (`wall-clock`, which includes the submission overhead).

use super::launch::Batch;
use super::GpuContext;
use crate::error::Result;
use serde::Serialize;
use std::time::Instant;

/// Min / median / max of repeated runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Timing {
    /// Fastest run, seconds.
    pub min_s: f64,
    /// Median run, seconds.
    pub median_s: f64,
    /// Slowest run, seconds.
    pub max_s: f64,
    /// Runs after the warm-up.
    pub repeats: usize,
    /// `gpu-timestamps`, `wall-clock` or `cpu-wall-clock`.
    pub method: &'static str,
}

impl Timing {
    pub(crate) fn of(mut v: Vec<f64>, method: &'static str) -> Timing {
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1);
        Timing {
            min_s: v.first().copied().unwrap_or(f64::NAN),
            median_s: v.get(n / 2).copied().unwrap_or(f64::NAN),
            max_s: v.last().copied().unwrap_or(f64::NAN),
            repeats: v.len(),
            method,
        }
    }
}

/// Times batches of device work.
pub(crate) struct GpuTimer<'a> {
    ctx: &'a GpuContext,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl<'a> GpuTimer<'a> {
    /// A timer on `ctx` (with timestamp queries where the device has them).
    pub(crate) fn new(ctx: &'a GpuContext) -> Self {
        let queries = ctx.timestamps().then(|| {
            let qs = ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let buf = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (qs, buf)
        });
        Self { ctx, queries }
    }

    /// Times `work` (built once, one submission per run) after one warm-up run.
    pub(crate) fn time(&self, repeats: usize, work: impl Into<Batch>) -> Result<Timing> {
        let work = work.into().build(self.ctx)?;
        let mut times = Vec::with_capacity(repeats);
        for rep in 0..=repeats {
            let mut enc =
                self.ctx
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("bench"),
                    });
            if let Some((qs, _)) = &self.queries {
                enc.write_timestamp(qs, 0);
            }
            work.record(&mut enc);
            if let Some((qs, buf)) = &self.queries {
                enc.write_timestamp(qs, 1);
                enc.resolve_query_set(qs, 0..2, buf, 0);
            }
            let t = Instant::now();
            self.ctx.queue().submit([enc.finish()]);
            self.ctx.wait_idle("running a benchmark")?;
            let wall = t.elapsed().as_secs_f64();
            let secs = match &self.queries {
                Some((_, buf)) => {
                    let b = self.ctx.read_buffer(buf, 16)?;
                    let t0 = u64::from_le_bytes(b[0..8].try_into().unwrap_or_default());
                    let t1 = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
                    let s = t1.saturating_sub(t0) as f64
                        * f64::from(self.ctx.queue().get_timestamp_period())
                        * 1e-9;
                    // A driver that returns garbage timestamps: fall back to the wall clock.
                    if s > 0.0 && s <= wall * 1.5 {
                        s
                    } else {
                        wall
                    }
                }
                None => wall,
            };
            if rep > 0 {
                times.push(secs);
            }
        }
        Ok(Timing::of(
            times,
            if self.queries.is_some() {
                "gpu-timestamps"
            } else {
                "wall-clock"
            },
        ))
    }
}

/// Times host work the same way.
pub(crate) fn time_cpu(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    let mut times = Vec::with_capacity(repeats);
    for rep in 0..=repeats {
        let t = Instant::now();
        f()?;
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(Timing::of(times, "cpu-wall-clock"))
}
