//! Where work runs, described once: the one [`DeviceInfo`] every report, JSON
//! file and text header uses.

use crate::gpu::GpuContext;
use serde::Serialize;

/// GPU or CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A wgpu adapter.
    Gpu,
    /// The multi-threaded CPU backend.
    Cpu,
}

/// The device of a run (JSON: `{"kind", "name", "backend", "driver", "int64"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// GPU or CPU.
    pub kind: DeviceKind,
    /// The adapter's name, or `cpu (N threads)`.
    pub name: String,
    /// The wgpu backend (`vulkan`, `metal`, `dx12`, `gl`) or `cpu`.
    pub backend: String,
    /// Driver name and version (empty on the CPU).
    pub driver: String,
    /// Whether the Philox rounds use native 64-bit multiplies (the CPU does).
    pub int64: bool,
}

impl DeviceInfo {
    /// The GPU behind `ctx`.
    pub fn gpu(ctx: &GpuContext) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Gpu,
            name: ctx.adapter.name.clone(),
            backend: ctx.adapter.backend.clone(),
            driver: format!("{} {}", ctx.adapter.driver, ctx.adapter.driver_info)
                .trim()
                .to_string(),
            int64: ctx.int64,
        }
    }

    /// The CPU backend on this machine.
    pub fn cpu() -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cpu,
            name: format!("cpu ({} threads)", crate::cpu::threads()),
            backend: "cpu".into(),
            driver: String::new(),
            int64: true,
        }
    }

    /// The GPU if there is a context, else the CPU.
    pub fn of(ctx: Option<&GpuContext>) -> DeviceInfo {
        ctx.map_or_else(DeviceInfo::cpu, DeviceInfo::gpu)
    }

    /// The one-line description of text reports, e.g. `llvmpipe [vulkan]`.
    pub fn describe(&self) -> String {
        match self.kind {
            DeviceKind::Gpu => format!(
                "{} [{}{}] (CPU reference: {} threads)",
                self.name,
                self.backend,
                if self.int64 {
                    ", int64 Philox"
                } else {
                    ", 16-bit-halves Philox"
                },
                crate::cpu::threads()
            ),
            DeviceKind::Cpu => format!("CPU backend ({} threads)", crate::cpu::threads()),
        }
    }
}
