//! What a first run costs: the default `demo` on a new device handle (its
//! own generator, tuner and pipelines, on the adapter the benchmark already
//! opened, so opening the adapter and probing its arithmetic are not
//! counted) with an empty, in-memory tuning cache: under `--gemm auto`
//! every GEMM shape class and generation kernel it uses is timed, within
//! the tuner's per-process budget, and every pipeline is compiled. Then the
//! same demo again on that handle, warm. Both are timed in the same run, so
//! their ratio is the overhead a user sees once per device.

use crate::app::bench::{BenchOptions, Row};
use crate::app::demo::{self, Size};
use crate::backend::{Backend, Gpu};
use crate::gpu::timer::{time_cpu, Timing};
use crate::gpu::tune::TuneMode;
use crate::gpu::GpuContext;
use crate::Result;
use std::time::Instant;

/// The demo's first run against its warm runs on `ctx`'s device.
///
/// The first run is measured once (a second "first" run would need a
/// second fresh device); the warm runs `opts.repeats` times after one
/// untimed run.
///
/// `mode` is the run's GEMM choice: `Auto` tunes from an empty cache (its
/// file is never read or written here); a fixed variant leaves only the
/// pipelines' compilation to the first run.
pub(crate) fn rows(
    ctx: &GpuContext,
    opts: &BenchOptions,
    seed: u64,
    mode: &TuneMode,
) -> Result<Vec<Row>> {
    let gpu = Gpu::new(ctx)?;
    let (mode, how) = match mode {
        TuneMode::Auto { .. } => (
            TuneMode::Auto {
                cache: None,
                retune: false,
            },
            "new pipelines, empty tuning cache".to_string(),
        ),
        TuneMode::Fixed(v) => (
            TuneMode::Fixed(*v),
            format!("new pipelines; GEMM fixed to {}", v.name()),
        ),
    };
    gpu.gemm().set_mode(mode)?;
    let backend = Backend::Gpu(gpu);
    let size = Size::DEFAULT;
    let run = || demo::run(&backend, size, seed, true, |_, _, _| {}).map(|_| ());
    let start = Instant::now();
    run()?;
    let first = start.elapsed().as_secs_f64();
    let warm = time_cpu(opts.repeats, run)?;
    let what = format!(
        "{} networks of width {}, depth {}, batch {}",
        demo::SCHEMES.len() * demo::ACTIVATIONS.len(),
        size.width,
        size.depth,
        size.batch
    );
    Ok(vec![
        Row {
            group: "demo",
            name: format!("first run ({how})"),
            size: what.clone(),
            rate: first,
            unit: "s/run",
            time: Timing::of(vec![first], "cpu-wall-clock"),
            ratio: Some(first / warm.median_s),
            ratio_to: Some("warm".into()),
            key: None,
        },
        Row {
            group: "demo",
            name: "warm (same handle)".into(),
            size: what,
            rate: warm.median_s,
            unit: "s/run",
            time: warm,
            ratio: None,
            ratio_to: None,
            key: None,
        },
    ])
}
