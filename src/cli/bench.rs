//! `deepinit bench`: throughput against the device's own rooflines.

use super::*;
use crate::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Small sizes and few repeats: a smoke run (under a minute on lavapipe).
    #[arg(long)]
    quick: bool,
    /// Timed runs after the warm-up, 1..=1000 (default 5, 2 with --quick).
    #[arg(long, value_parser = num::int_in(1u32, 1000))]
    repeats: Option<u32>,
    /// The results as JSON.
    #[command(flatten)]
    json: JsonArgs,
    /// Skip the numpy comparison even if python3 with numpy is available.
    #[arg(long)]
    no_numpy: bool,
}

pub(crate) fn run_bench(a: &BenchArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use crate::app::bench;
    let opts = bench::BenchOptions {
        quick: a.quick,
        repeats: a.repeats.unwrap_or(if a.quick { 2 } else { 5 }) as usize,
    };
    let json_out = a.json.open()?;
    let t = json_out.text();
    let backend = open_backend(d)?;
    say!(
        t,
        "deepinit bench{}\ndevice: {}",
        if a.quick { " --quick" } else { "" },
        backend.info().describe()
    );
    if let Some(c) = backend.gpu().map(|g| g.context()) {
        say!(
            t,
            "driver: {} {}\ntiming: {}; repeats: {} after a warm-up (median shown)",
            c.adapter().driver,
            c.adapter().driver_info,
            if c.timestamps() {
                "GPU timestamps"
            } else {
                "wall clock (no timestamp queries)"
            },
            opts.repeats
        );
    }
    let progress = crate::progress::Progress::new("bench");
    let mut step = |what: &str| progress.note(what);
    let (mut rows, tuning) = match backend.gpu() {
        Some(g) => {
            let (rows, tuning) = bench::gpu(g, &opts, &mut step)?;
            (rows, Some(tuning))
        }
        None => (Vec::new(), None),
    };
    if let Some(g) = backend.gpu() {
        step("demo: first run on a new device handle, then warm");
        let mode = gemm_mode(d)?;
        rows.extend(crate::app::first_run::rows(g.context(), &opts, 0, &mode)?);
    }
    let cpu_rows = bench::cpu(&opts, &mut step)?;
    let checkpoint_rows = crate::app::checkpoint::rows(&backend, &opts, &mut step)?;
    let numpy = if a.no_numpy {
        None
    } else {
        step("numpy baselines");
        bench::numpy_rows(&cpu_rows, a.quick).map(|mut rows| {
            step("numpy and PyTorch MLP");
            rows.extend(bench::mlp_rows(&cpu_rows, a.quick).into_iter().flatten());
            rows
        })
    };
    progress.finish();
    rows.extend(cpu_rows);
    rows.extend(numpy.iter().flatten().cloned());
    rows.extend(checkpoint_rows);
    say!(t);
    t.raw(&crate::report::bench::table(&rows));
    if let Some(tuning) = &tuning {
        say!(t, "\ntuning:");
        for line in crate::report::bench::tuning_lines(tuning) {
            say!(t, "        {line}");
        }
    }
    if numpy.is_none() && !a.no_numpy {
        say!(t, "numpy comparison skipped: python3 with numpy not found");
    }
    json_out.emit(
        &serde_json::json!({
            "device": backend.info(),
            "quick": a.quick,
            "repeats": opts.repeats,
            "tuning": tuning,
            "rows": rows,
        }),
        &t,
    )?;
    Ok(ExitCode::SUCCESS)
}
