//! `deepinit bench`: throughput against the device's own rooflines.

use super::*;
use clap::Args;
use deepinit::gpu::Generator;
use deepinit::Result;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Small sizes and few repeats: a smoke run (under a minute on lavapipe).
    #[arg(long)]
    quick: bool,
    /// Timed runs after the warm-up, 1..=1000 (default 5, 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: Option<u32>,
    /// The results as JSON.
    #[command(flatten)]
    json: JsonArgs,
    /// Skip the numpy comparison even if python3 with numpy is available.
    #[arg(long)]
    no_numpy: bool,
}

pub(crate) fn run_bench(a: &BenchArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use deepinit::bench;
    let opts = bench::BenchOptions {
        quick: a.quick,
        repeats: a.repeats.unwrap_or(if a.quick { 2 } else { 5 }) as usize,
    };
    let json_out = a.json.open()?;
    let t = json_out.text();
    let ctx = open_device(d)?;
    let gen = ctx.as_ref().map(Generator::new).transpose()?;
    say!(
        t,
        "deepinit bench{}: {}",
        if a.quick { " --quick" } else { "" },
        describe(ctx.as_ref())
    );
    if let Some(c) = &ctx {
        say!(
            t,
            "driver: {} {}; timing: {}; repeats: {} after a warm-up (median shown)",
            c.adapter.driver,
            c.adapter.driver_info,
            if c.timestamps {
                "GPU timestamps"
            } else {
                "wall clock (no timestamp queries)"
            },
            opts.repeats
        );
    }
    let mut step = |what: &str| eprintln!("  running: {what}");
    let (mut rows, tuning) = match &gen {
        Some(g) => bench::gpu(g, &opts, &mut step)?,
        None => (Vec::new(), serde_json::Value::Null),
    };
    rows.extend(bench::cpu(&opts, &mut step)?);
    let (gm, gn, gk) = if a.quick {
        (1024, 1024, 256)
    } else {
        (4096, 4096, 256)
    };
    let numpy = if a.no_numpy {
        None
    } else {
        bench::numpy(gm, gn, gk)
    };
    if let Some((np_rng, np_gemm, version)) = &numpy {
        let cpu_gen = rows
            .iter()
            .find(|r| r.name.starts_with("deepinit normal"))
            .map_or(f64::NAN, |r| r.rate);
        let cpu_gemm = rows
            .iter()
            .find(|r| r.name.starts_with("gemm crate"))
            .map_or(f64::NAN, |r| r.rate);
        let mk =
            |name: String, size: String, rate: f64, unit: &'static str, ours: f64, what: &str| {
                bench::Row {
                    group: "numpy",
                    name,
                    size,
                    time: bench::Timing {
                        min_s: f64::NAN,
                        median_s: f64::NAN,
                        max_s: f64::NAN,
                        repeats: 3,
                        method: "cpu-wall-clock",
                    },
                    rate,
                    unit,
                    ratio: Some(ours / rate),
                    ratio_to: Some(format!("deepinit {what} / numpy")),
                }
            };
        rows.push(mk(
            format!("numpy {version} standard_normal f32, 1 thread"),
            "16M".into(),
            *np_rng,
            "Msamples/s",
            cpu_gen,
            "CPU backend",
        ));
        rows.push(mk(
            format!("numpy {version} float32 matmul (its BLAS)"),
            format!("{gm}x{gn}x{gk}"),
            *np_gemm,
            "GFLOP/s",
            cpu_gemm,
            "CPU gemm",
        ));
    }
    say!(t);
    t.raw(&bench::table(&rows));
    if !tuning.is_null() {
        say!(t, "\ntuning: generation workgroup size {} (auto-tuned this run); GEMM tiles fixed at 64x64x16", tuning["generation_workgroup_size"]);
    }
    if numpy.is_none() && !a.no_numpy {
        say!(t, "numpy comparison skipped: python3 with numpy not found");
    }
    json_out.emit(
        &serde_json::json!({
            "device": DeviceInfo::of(ctx.as_ref()),
            "quick": a.quick,
            "repeats": opts.repeats,
            "tuning": tuning,
            "rows": rows,
        }),
        &t,
    )?;
    Ok(ExitCode::SUCCESS)
}
