//! `deepinit adapters`: the adapters, their limits and the one deepinit picks.

use super::*;
use crate::gpu;
use crate::{Error, Result};
use std::process::ExitCode;

pub(crate) fn run_adapters(a: &AdaptersArgs, d: &DeviceArgs) -> Result<ExitCode> {
    if d.backend == BackendChoice::Cpu {
        return Err(Error::bad(
            "--backend",
            "cpu",
            "`adapters` lists GPU adapters; the CPU backend has nothing to list",
        )
        .expecting("auto or gpu"));
    }
    gpu::context::check_backend_env()?;
    let json = a.json.open()?;
    let t = json.text();
    let (list, chosen) = gpu::list_adapters(&request(d));
    print_adapters(&t, &list, chosen);
    let float_model = chosen.and_then(|_| print_float_model(&t, d));
    let tuned = chosen
        .and_then(|i| list.get(i))
        .map(|a| print_tuning(&t, a));
    json.emit(
        &serde_json::json!({ "adapters": list, "chosen": chosen, "float_model": float_model,
            "gemm_tuning": tuned }),
        &t,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn print_adapters(t: &Text, list: &[gpu::AdapterSummary], chosen: Option<usize>) {
    if list.is_empty() {
        say!(t, "no GPU adapters found; install a Vulkan driver (Debian: mesa-vulkan-drivers) or use --backend cpu");
        return;
    }
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        say!(
            t,
            "{mark} [{i}] {} ({}, {}; driver {} {})",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.driver_info
        );
        say!(
            t,
            "      max storage binding {} MiB, max buffer {} MiB, max workgroups/dim {}, max invocations/workgroup {}, int64 {}, timestamps {}, subgroups {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.shader_int64,
            a.timestamp_query,
            if a.subgroups {
                format!("{}-{}", a.subgroup_sizes.0, a.subgroup_sizes.1)
            } else {
                "no".to_string()
            }
        );
    }
    match chosen {
        Some(i) => say!(t, "* = chosen (adapter {i})"),
        None => say!(t, "no adapter matches the name filter"),
    }
}

/// The chosen adapter's float arithmetic, probed on the device, and what it
/// means for verification (`None` when the device could not be opened).
fn print_float_model(t: &Text, d: &DeviceArgs) -> Option<serde_json::Value> {
    let probed = gpu::GpuContext::new(&request(d)).and_then(|ctx| ctx.float_model());
    match probed {
        Ok(m) => {
            say!(t, "Float arithmetic (probed): {}", m.describe());
            match m.class() {
                Some(class) => say!(
                    t,
                    "  conforms to the {} class: its results can be mirrored bit for bit on the CPU",
                    match class {
                        gpu::probe::FmaMode::Fused => "fused-fma",
                        _ => "two-rounding-fma",
                    }
                ),
                None => say!(
                    t,
                    "  conforms to neither arithmetic class: the CPU cannot mirror its float results bit for bit"
                ),
            }
            Some(serde_json::json!({"model": m, "conforming_class": m.class()}))
        }
        Err(e) => {
            say!(t, "Float arithmetic: not probed ({e})");
            None
        }
    }
}

/// The chosen adapter's cached GEMM and generation choices (nothing is
/// timed here).
fn print_tuning(t: &Text, a: &gpu::AdapterSummary) -> Vec<gpu::tune_cache::Entry> {
    let Some(path) = gpu::tune_cache::default_dir().map(|d| gpu::tune_cache::file_in(&d)) else {
        say!(
            t,
            "Tuning: not cached (DEEPINIT_CACHE_DIR is empty, or no home directory)"
        );
        return Vec::new();
    };
    let (entries, note) = gpu::tune::cached_for(a, &path);
    if let Some(n) = note {
        say!(t, "{n}");
    }
    if entries.is_empty() {
        say!(
            t,
            "Tuning: nothing cached for this adapter in {} yet (the first run of each shape class tunes it)",
            path.display()
        );
        return entries;
    }
    say!(t, "Tuning cached in {}:", path.display());
    for line in crate::report::bench::cached_lines(&entries) {
        say!(t, "  {line}");
    }
    entries
}
