//! `deepinit adapters`: the adapters, their limits and the one deepinit picks.

use super::*;
use deepinit::gpu::{self};
use deepinit::{Error, Result};
use std::process::ExitCode;

pub(crate) fn run_adapters(d: &DeviceArgs, json: bool) -> Result<ExitCode> {
    let (list, chosen) = gpu::list_adapters(&request(d));
    if json {
        let v = serde_json::json!({ "adapters": list, "chosen": chosen });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::invalid("json", e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no GPU adapters found; install a Vulkan driver (Debian: mesa-vulkan-drivers) or use --backend cpu");
        return Ok(ExitCode::SUCCESS);
    }
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        println!(
            "{mark} [{i}] {} ({}, {}; driver {} {})",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
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
        Some(i) => println!("* = chosen (adapter {i})"),
        None => println!("no adapter matches the name filter"),
    }
    Ok(ExitCode::SUCCESS)
}
