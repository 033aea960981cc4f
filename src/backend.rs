//! Where work runs: the one [`Backend`] (a GPU or the CPU) that every command,
//! experiment and benchmark takes, and the one [`DeviceInfo`] every report,
//! JSON file and text header uses to name it.

use crate::act::Activation;
use crate::error::{Error, Result};
use crate::gpu::tune::Tuner;
use crate::gpu::{AdapterRequest, GenOptions, GenRequest, Generator, GpuContext, Kernel};
use crate::io::dtype::DType;
use crate::net::kernels::NetKernels;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// How to choose where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The GPU if an adapter exists, else the CPU. A named adapter
    /// (`AdapterRequest::name` or `WGPU_ADAPTER_NAME`) must exist.
    #[default]
    Auto,
    /// A wgpu adapter is required.
    Gpu,
    /// The multi-threaded CPU backend.
    Cpu,
}

/// Where weights are generated and networks run. Cloning is cheap and shares
/// the device.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A wgpu device, with its generator and network kernels.
    Gpu(Gpu),
    /// The CPU reference, on all cores.
    Cpu,
}

/// What [`Backend::open`] chose, and why it fell back to the CPU if it did.
#[derive(Debug)]
pub struct Opened {
    /// The backend.
    pub backend: Backend,
    /// Under [`Policy::Auto`] with no adapter: the error that made the CPU
    /// stand in (callers tell the user).
    pub fell_back: Option<Error>,
}

impl Backend {
    /// Opens the backend per `policy`. Under [`Policy::Auto`], a missing
    /// adapter falls back to the CPU only when the request names none.
    pub fn open(policy: Policy, req: &AdapterRequest) -> Result<Opened> {
        let opened = |backend| Opened {
            backend,
            fell_back: None,
        };
        match policy {
            Policy::Cpu => Ok(opened(Backend::Cpu)),
            Policy::Gpu => Ok(opened(Backend::Gpu(Gpu::new(&GpuContext::new(req)?)?))),
            Policy::Auto => match GpuContext::new(req) {
                Ok(ctx) => Ok(opened(Backend::Gpu(Gpu::new(&ctx)?))),
                Err(e @ Error::NoAdapter { .. }) if !req.names_adapter() => Ok(Opened {
                    backend: Backend::Cpu,
                    fell_back: Some(e),
                }),
                Err(e) => Err(e),
            },
        }
    }

    /// The GPU, if this is one.
    pub fn gpu(&self) -> Option<&Gpu> {
        match self {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }

    /// What the reports call this backend.
    pub fn info(&self) -> DeviceInfo {
        match self {
            Backend::Gpu(g) => DeviceInfo::gpu(g.context()),
            Backend::Cpu => DeviceInfo::cpu(),
        }
    }

    /// Generates `req` (a [`Kernel::Dist`] request) chunk by chunk, handing
    /// each to `sink(offset, values)`; returns the device that did it (with
    /// the Philox multiply it actually used). The values are the same bits
    /// on every backend; `gen` only changes how the device gets there.
    pub fn generate(
        &self,
        req: &GenRequest,
        gen: &GenOptions,
        mut sink: impl FnMut(u64, &[f32]) -> Result<()>,
    ) -> Result<DeviceInfo> {
        Ok(match self {
            Backend::Gpu(gpu) => {
                gpu.generator().generate(req, gen, |off, words| {
                    sink(off, bytemuck::cast_slice(words))
                })?;
                let ctx = gpu.context();
                DeviceInfo {
                    int64: gen
                        .mulhi
                        .map_or(ctx.int64(), |m| m == crate::gpu::shaders::MulHi::Int64),
                    ..DeviceInfo::gpu(ctx)
                }
            }
            Backend::Cpu => {
                let chunk = gen
                    .chunk_elems
                    .unwrap_or(crate::gpu::generate::DEFAULT_CHUNK_BYTES / 4);
                crate::rng::cpu::generate(req, chunk, sink)?;
                DeviceInfo::cpu()
            }
        })
    }

    /// The generation options for `n` values of `kernel` on this backend:
    /// on a GPU the store and workgroup size tuned for the kernel, in
    /// chunks of at most `max_chunk` elements (values never depend on them).
    pub(crate) fn generation_options(
        &self,
        kernel: Kernel,
        n: u64,
        max_chunk: u64,
    ) -> Result<GenOptions> {
        Ok(match self {
            Backend::Gpu(g) => {
                g.gemm()
                    .generation_for(g.generator(), kernel, n)?
                    .apply(GenOptions {
                        chunk_elems: Some(
                            g.generator()
                                .chunk_limit(&GenOptions::default())?
                                .min(max_chunk),
                        ),
                        ..GenOptions::default()
                    })
            }
            Backend::Cpu => GenOptions::default(),
        })
    }

    /// [`Backend::generate`] encoded as `dtype` (f32 values rounded to
    /// nearest even, on the device where there is one): `emit(bytes)` gets
    /// the little-endian bytes in order. The CPU backend generates into
    /// `scratch`'s reused buffers, so a long run allocates once.
    pub(crate) fn generate_encoded(
        &self,
        req: &GenRequest,
        gen: &GenOptions,
        dtype: DType,
        scratch: &mut Scratch,
        emit: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match self {
            Backend::Gpu(g) => g
                .generator()
                .generate_encoded(req, gen, dtype, |_, b| emit(b)),
            Backend::Cpu => {
                let Kernel::Dist(dist) = req.kernel else {
                    return Err(Error::invalid(
                        "kernel",
                        "the CPU backend generates distributions, not raw bits",
                    ));
                };
                let mut at = req.start;
                let end = req
                    .start
                    .checked_add(req.count)
                    .ok_or_else(|| Error::invalid("element range", "start + count overflows"))?;
                while at < end {
                    let n = (end - at).min(Scratch::ELEMS) as usize;
                    if scratch.values.len() < n {
                        scratch.values = crate::io::host::host_vec(Scratch::ELEMS)?;
                    }
                    let vals = &mut scratch.values[..n];
                    match dtype {
                        // f32 goes out as the values' own bytes (no copy).
                        DType::F32 => {
                            crate::rng::cpu::fill(
                                dist,
                                req.scale,
                                req.seed,
                                req.tensor_id,
                                at,
                                vals,
                            );
                            emit(bytemuck::cast_slice(vals))?
                        }
                        _ => {
                            scratch.bytes.resize(n * dtype.size() as usize, 0);
                            crate::rng::cpu::fill_encoded(
                                dist,
                                req,
                                at,
                                vals,
                                dtype,
                                &mut scratch.bytes,
                            );
                            emit(&scratch.bytes)?;
                        }
                    }
                    at += n as u64;
                }
                Ok(())
            }
        }
    }
}

/// The CPU backend's reused buffers for [`Backend::generate_encoded`]: at
/// most [`Scratch::ELEMS`] values and their encoding (at most 8 MiB; each
/// core's half of a step stays in its cache while the bytes are staged).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    values: Vec<f32>,
    bytes: Vec<u8>,
}

impl Scratch {
    /// Values generated per CPU step.
    pub(crate) const ELEMS: u64 = 1 << 20;
}

/// An open GPU: its context, the weight generator, and the network kernels of
/// each activation, compiled on first use.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<GpuInner>,
}

struct GpuInner {
    gen: Generator,
    /// The device's GEMM dispatcher, shared by every activation's kernels.
    gemm: Arc<Tuner>,
    /// One entry per activation ever used: bounded by the number of
    /// [`Activation`] variants (seven), never evicted.
    kernels: Mutex<Vec<Arc<NetKernels>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gpu").field(self.context()).finish()
    }
}

impl Gpu {
    /// Wraps an open context (builds the generator's layout; kernels are
    /// compiled when first asked for).
    pub fn new(ctx: &GpuContext) -> Result<Gpu> {
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                gen: Generator::new(ctx)?,
                gemm: Arc::new(Tuner::new(ctx)),
                kernels: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The device context.
    pub(crate) fn context(&self) -> &GpuContext {
        self.inner.gen.context()
    }

    /// How its matrix multiplies choose a variant (the default variant until
    /// [`Tuner::set_mode`] says otherwise).
    pub fn gemm(&self) -> &Tuner {
        &self.inner.gemm
    }

    /// The weight generator.
    pub fn generator(&self) -> &Generator {
        &self.inner.gen
    }

    /// The network kernels compiled for `act` (compiled once, then shared).
    pub fn kernels(&self, act: Activation) -> Result<Arc<NetKernels>> {
        let poisoned = || Error::Gpu {
            during: "compiling the network kernels",
            message: "kernel cache poisoned".into(),
        };
        if let Some(k) = self
            .inner
            .kernels
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .find(|k| k.activation() == act)
        {
            return Ok(Arc::clone(k));
        }
        // Compiled outside the lock; a racing compile of the same activation
        // keeps the first entry.
        let k = Arc::new(NetKernels::with_gemm(
            self.context(),
            act,
            Arc::clone(&self.inner.gemm),
        )?);
        let mut cache = self.inner.kernels.lock().map_err(|_| poisoned())?;
        if let Some(k) = cache.iter().find(|k| k.activation() == act) {
            return Ok(Arc::clone(k));
        }
        cache.push(Arc::clone(&k));
        Ok(k)
    }
}

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
    pub(crate) fn gpu(ctx: &GpuContext) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Gpu,
            name: ctx.adapter().name.clone(),
            backend: ctx.adapter().backend.clone(),
            driver: format!("{} {}", ctx.adapter().driver, ctx.adapter().driver_info)
                .trim()
                .to_string(),
            int64: ctx.int64(),
        }
    }

    /// The CPU backend on this machine.
    pub(crate) fn cpu() -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cpu,
            name: format!("cpu ({} threads)", crate::rng::cpu::threads()),
            backend: "cpu".into(),
            driver: String::new(),
            int64: true,
        }
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
                crate::rng::cpu::threads()
            ),
            DeviceKind::Cpu => format!("CPU backend ({} threads)", crate::rng::cpu::threads()),
        }
    }
}
