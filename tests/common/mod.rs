//! Shared test plumbing: running the binary, and one GPU context for the
//! whole test binary.
//!
//! Without an adapter, GPU tests are reported as SKIPPED on stderr, never
//! silently passed; under CI (`CI` set, as `.ci/run` does) a missing adapter
//! fails them instead, because CI installs the lavapipe software driver.

#![allow(dead_code)]

use deepinit::gpu::{AdapterRequest, GpuContext};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `deepinit` binary, with the adapter-choosing environment cleared so a
/// developer's WGPU_BACKEND / WGPU_ADAPTER_NAME cannot change a test, nor a
/// launcher's rank variables (RANK, SLURM_PROCID, ...) a checkpoint's shards.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepinit"));
    for v in [
        "WGPU_BACKEND",
        "WGPU_ADAPTER_NAME",
        "RANK",
        "WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "JOB_COMPLETION_INDEX",
    ] {
        c.env_remove(v);
    }
    // The GEMM variant is fixed and nothing is cached: tests never write
    // outside their temp dirs and never spend time tuning; the tuner's own
    // tests set these back explicitly.
    c.env("DEEPINIT_GEMM", "tiled64");
    c.env("DEEPINIT_CACHE_DIR", "");
    c
}

/// Runs the binary with `args` and collects its output.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the deepinit binary runs")
}

/// Its stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

static GPU: OnceLock<Option<GpuContext>> = OnceLock::new();

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The shared GPU context, or `None` (after a loud SKIPPED line) where no
/// adapter exists outside CI. Panics under CI when no adapter exists.
pub fn gpu(test: &str) -> Option<&'static GpuContext> {
    let ctx = GPU.get_or_init(|| match GpuContext::new(&AdapterRequest::default()) {
        Ok(c) => {
            eprintln!(
                "GPU tests run on: {} ({}, int64 {})",
                c.adapter().name,
                c.adapter().backend,
                c.int64()
            );
            Some(c)
        }
        Err(e) => {
            if in_ci() {
                panic!("CI requires a GPU adapter (lavapipe is installed by .ci/run): {e}");
            }
            None
        }
    });
    if ctx.is_none() {
        eprintln!("SKIPPED {test}: no GPU adapter (install mesa-vulkan-drivers; CI fails instead of skipping)");
    }
    ctx.as_ref()
}
