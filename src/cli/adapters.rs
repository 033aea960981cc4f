//! `deepinit adapters`: the adapters, their limits and the one deepinit picks.

use super::*;
use deepinit::gpu;
use deepinit::{Error, Result};
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
    json.emit(
        &serde_json::json!({ "adapters": list, "chosen": chosen }),
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
            "      max storage binding {} MiB, max buffer {} MiB, max workgroups/dim {}, max invocations/workgroup {}, int64 {}, timestamps {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.shader_int64,
            a.timestamp_query
        );
    }
    match chosen {
        Some(i) => say!(t, "* = chosen (adapter {i})"),
        None => say!(t, "no adapter matches the name filter"),
    }
}
