//! The one place that creates the wgpu instance, adapter, device and queue.

use crate::error::{Error, Result};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// How to choose an adapter.
#[derive(Debug, Clone, Default)]
pub struct AdapterRequest {
    /// Case-insensitive substring of the adapter name. Falls back to the
    /// `WGPU_ADAPTER_NAME` environment variable when `None`.
    pub name: Option<String>,
    /// Backends to consider. Falls back to `WGPU_BACKEND` (e.g. `vulkan`,
    /// `metal`, `dx12`, `gl`), then to the primary backends (Vulkan, Metal,
    /// DX12), when `None`.
    pub backends: Option<wgpu::Backends>,
    /// Never use `SHADER_INT64` even where the adapter has it.
    pub disable_int64: bool,
}

/// The native-endian 32-bit words of bytes read back from the device (any
/// alignment; a trailing partial word is dropped).
pub(crate) fn words_of(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The f32 values of bytes read back from the device.
pub(crate) fn floats_of(bytes: &[u8]) -> Vec<f32> {
    words_of(bytes).into_iter().map(f32::from_bits).collect()
}

/// What deepinit reports about an adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// `vulkan`, `metal`, `dx12`, `gl`.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// PCI vendor id (or the backend's equivalent; 0 if unknown).
    pub vendor: u32,
    /// PCI device id (or the backend's equivalent; 0 if unknown).
    pub device: u32,
    /// Driver name.
    pub driver: String,
    /// Driver details.
    pub driver_info: String,
    /// Largest storage binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest dispatch per dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Largest workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Native 64-bit integers in shaders.
    pub shader_int64: bool,
    /// GPU timestamp queries.
    pub timestamp_query: bool,
    /// Subgroup operations in compute shaders (`wgpu::Features::SUBGROUP`).
    pub subgroups: bool,
    /// Smallest and largest subgroup size the adapter reports (0 if none).
    pub subgroup_sizes: (u32, u32),
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        Self {
            name: info.name,
            backend: info.backend.to_str().to_string(),
            device_type: format!("{:?}", info.device_type),
            vendor: info.vendor,
            device: info.device,
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            shader_int64: features.contains(wgpu::Features::SHADER_INT64),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }

    /// What identifies this adapter and driver for cached measurements: name,
    /// backend, vendor and device ids, driver and its version string.
    pub(crate) fn identity(&self) -> String {
        format!(
            "{} | {} | {:04x}:{:04x} | {} {}",
            self.name, self.backend, self.vendor, self.device, self.driver, self.driver_info
        )
    }
}

/// An open GPU: device, queue and what was negotiated. Cloning is cheap (wgpu's
/// device and queue are reference-counted handles) and shares the device.
#[derive(Clone)]
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    int64: bool,
    timestamps: bool,
    /// Errors wgpu raised outside any error scope (e.g. device loss); checked
    /// after each submission. Per device, never global.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// The float probe's answer, run on first use (shared by clones).
    float_model: Arc<std::sync::OnceLock<std::result::Result<super::probe::FloatModel, String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .field("int64", &self.int64)
            .finish_non_exhaustive()
    }
}

/// Backend names `WGPU_BACKEND` may list (wgpu's own spellings).
pub(crate) const BACKEND_NAMES: [&str; 10] = [
    "vulkan", "vk", "dx12", "d3d12", "metal", "mtl", "opengl", "gles", "gl", "webgpu",
];

/// Checks `WGPU_BACKEND` (which wgpu itself would silently ignore when
/// misspelt), naming the bad value.
pub(crate) fn check_backend_env() -> Result<()> {
    let Ok(v) = std::env::var("WGPU_BACKEND") else {
        return Ok(());
    };
    for name in v.split(',').map(str::trim) {
        if !BACKEND_NAMES.contains(&name.to_lowercase().as_str()) {
            return Err(Error::bad(
                "WGPU_BACKEND",
                &v,
                format!(
                    "'{name}' is not a backend{}",
                    crate::error::did_you_mean(name, &BACKEND_NAMES)
                ),
            )
            .expecting("a comma list of vulkan, metal, dx12, gl or webgpu"));
        }
    }
    Ok(())
}

impl AdapterRequest {
    /// Whether the user named an adapter (`--adapter` or `WGPU_ADAPTER_NAME`):
    /// then a missing one is an error even where the CPU could stand in.
    pub(crate) fn names_adapter(&self) -> bool {
        name_filter(self).is_some()
    }
}

fn backends_for(req: &AdapterRequest) -> wgpu::Backends {
    req.backends
        .or_else(wgpu::Backends::from_env)
        .unwrap_or(wgpu::Backends::PRIMARY)
}

fn name_filter(req: &AdapterRequest) -> Option<String> {
    req.name
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase())
}

/// Lower is better: discrete GPUs first, the CPU (software) adapters last.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

fn instance(req: &AdapterRequest) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends_for(req);
    wgpu::Instance::new(desc)
}

/// Every adapter the request's backends expose, in preference order, and the
/// index of the one [`GpuContext::new`] would choose (if any matches).
pub fn list_adapters(req: &AdapterRequest) -> (Vec<AdapterSummary>, Option<usize>) {
    let (adapters, chosen) = sorted_adapters(req);
    (adapters.iter().map(AdapterSummary::of).collect(), chosen)
}

fn sorted_adapters(req: &AdapterRequest) -> (Vec<wgpu::Adapter>, Option<usize>) {
    let inst = instance(req);
    let mut adapters = pollster::block_on(inst.enumerate_adapters(backends_for(req)));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    let filter = name_filter(req);
    let chosen = adapters.iter().position(|a| match &filter {
        Some(f) => a.get_info().name.to_lowercase().contains(f.as_str()),
        None => true,
    });
    (adapters, chosen)
}

impl GpuContext {
    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Its queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description and limits.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The limits the device was created with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether kernels may use native 64-bit integers.
    pub fn int64(&self) -> bool {
        self.int64
    }

    /// Whether compute shaders may use subgroup operations.
    pub(crate) fn subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
    }

    /// Whether timestamps can be written between passes (GPU timing).
    pub(crate) fn timestamps(&self) -> bool {
        self.timestamps
    }

    /// Opens the best adapter matching `req` with the adapter's own limits (not
    /// wgpu's conservative defaults, which cap a storage binding at 128 MiB and
    /// a buffer at 256 MiB), and `SHADER_INT64` / `TIMESTAMP_QUERY` where offered.
    pub fn new(req: &AdapterRequest) -> Result<GpuContext> {
        check_backend_env()?;
        let (mut adapters, chosen) = sorted_adapters(req);
        let Some(idx) = chosen else {
            let mut filter = String::new();
            if let Some(f) = name_filter(req) {
                filter.push_str(&format!(" matching name '{f}'"));
            }
            filter.push_str(&format!(" on backends {:?}", backends_for(req)));
            let advice = if adapters.is_empty() {
                "install a Vulkan driver (on Debian/Ubuntu: apt-get install \
                 mesa-vulkan-drivers, which provides the lavapipe software adapter) or run \
                 with --backend cpu"
                    .to_string()
            } else {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                filter.push_str(&format!(" (available: {})", names.join(", ")));
                "give --adapter a part of one of the available names (`deepinit adapters` \
                 lists them), or run with --backend cpu"
                    .to_string()
            };
            return Err(Error::NoAdapter { filter, advice });
        };
        let adapter = adapters.swap_remove(idx);
        let summary = AdapterSummary::of(&adapter);
        let mut features = wgpu::Features::empty();
        let int64 = summary.shader_int64 && !req.disable_int64;
        if int64 {
            features |= wgpu::Features::SHADER_INT64;
        }
        if summary.timestamp_query {
            features |= wgpu::Features::TIMESTAMP_QUERY;
            // Timestamps between passes, for timing whole sequences of kernels.
            if adapter
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
            {
                features |= wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
            }
        }
        if summary.subgroups {
            // Used by the subgroup GEMM variant only; the others never need it.
            features |= wgpu::Features::SUBGROUP;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("deepinit"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            // Big buffers are the point; do not let the allocator hold extra memory.
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: summary.name.clone(),
            reason: e.to_string(),
        })?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        // wgpu's default handler panics; the library must not, so record instead.
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let sink = Arc::clone(&uncaptured);
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = sink.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let timestamps = device.features().contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        );
        Ok(GpuContext {
            device,
            queue,
            adapter: summary,
            limits,
            int64,
            timestamps,
            uncaptured,
            float_model: Arc::default(),
        })
    }

    /// This device's float arithmetic ([`super::probe`]), probed on first use.
    pub fn float_model(&self) -> Result<super::probe::FloatModel> {
        self.float_model
            .get_or_init(|| super::probe::probe(self).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| Error::internal("float probe", e))
    }

    /// Blocks until submission `index` has finished on the device.
    pub(crate) fn wait_for(
        &self,
        index: wgpu::SubmissionIndex,
        during: &'static str,
    ) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu {
                during,
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// Returns the first error wgpu raised outside an error scope, if any.
    pub(crate) fn check_uncaptured(&self, during: &'static str) -> Result<()> {
        let mut v = self.uncaptured.lock().map_err(|_| Error::Gpu {
            during,
            message: "error sink poisoned".into(),
        })?;
        if let Some(first) = v.drain(..).next() {
            return Err(Error::Gpu {
                during,
                message: first,
            });
        }
        Ok(())
    }

    /// Runs `f` inside validation and out-of-memory error scopes, turning any
    /// error they catch into [`Error::Gpu`].
    pub(crate) fn scoped<T>(&self, during: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let val_err = pollster::block_on(val.pop());
        let oom_err = pollster::block_on(oom.pop());
        if let Some(e) = val_err.or(oom_err) {
            return Err(Error::Gpu {
                during,
                message: e.to_string(),
            });
        }
        Ok(out)
    }

    /// Blocks until all submitted work is done.
    pub fn wait_idle(&self, during: &'static str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                during,
                message: e.to_string(),
            })?;
        self.check_uncaptured(during)
    }
}

impl GpuContext {
    /// Splits `groups` workgroups into a 2-D dispatch `(x, y)` with x capped at
    /// the device's per-dimension limit; kernels rebuild the linear index as
    /// `wid.y * num_workgroups.x + wid.x` and bounds-check it.
    pub(crate) fn dispatch_2d(&self, groups: u64) -> Result<(u32, u32)> {
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let gx = groups.clamp(1, max);
        let gy = groups.div_ceil(gx).max(1);
        if gy > max {
            return Err(Error::LimitExceeded {
                what: "dispatch (workgroups)".into(),
                got: groups,
                max: max * max,
                hint: "; use a smaller chunk or layer".into(),
            });
        }
        Ok((gx as u32, gy as u32))
    }

    /// Compiles `entry` of a composed module with the given override
    /// constants; the bind group layout is derived from the shader (each entry
    /// point's own bindings).
    pub(crate) fn compute_pipeline(
        &self,
        m: &crate::gpu::shaders::Module,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let module = self.shader_module(m)?;
        self.scoped("building a compute pipeline", || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: true,
                    },
                    cache: None,
                })
        })
    }

    /// Compiles `m`; a module whose composition left an import unresolved
    /// (or a slot unused) is refused before the driver sees it. Every shader
    /// module deepinit builds goes through here.
    pub(crate) fn shader_module(
        &self,
        m: &crate::gpu::shaders::Module,
    ) -> Result<wgpu::ShaderModule> {
        if !m.unresolved.is_empty() {
            return Err(Error::internal(
                "shader module",
                format!(
                    "module {} does not compose: {}",
                    m.name,
                    m.unresolved.join(", ")
                ),
            ));
        }
        self.scoped("compiling a shader module", || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(m.name),
                    source: wgpu::ShaderSource::Wgsl(m.source.as_str().into()),
                })
        })
    }

    /// [`GpuContext::read_buffer`] as 32-bit words.
    pub(crate) fn read_words(&self, src: &wgpu::Buffer, words: u64) -> Result<Vec<u32>> {
        Ok(words_of(&self.read_buffer(src, 4 * words)?))
    }

    /// A storage buffer holding `data` (also a copy source and destination).
    /// wgpu rejects zero-sized bindings, so empty data becomes one zero.
    pub(crate) fn storage_from(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let data: &[f32] = if data.is_empty() { &[0.0] } else { data };
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A small uniform buffer holding `bytes`.
    pub(crate) fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Copies the first `bytes` of `src` (which needs `COPY_SRC`) back to the
    /// host through a temporary mappable buffer. For small, one-off reads; the
    /// generator streams big outputs with its own double-buffered read-back.
    pub(crate) fn read_buffer(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.read_range(src, 0, bytes)
    }

    /// `bytes` of `src` from byte `offset`, through a temporary mappable buffer.
    fn read_range(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read-back"),
            });
        let mut out = self.read_back_ranges(enc, &[(src, offset, bytes)])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Finishes `enc` with copies of the first `bytes` of each source into
    /// temporary mappable buffers, submits it (one submission for the work and
    /// the read-back), waits, and returns each source's bytes.
    pub fn read_back(
        &self,
        enc: wgpu::CommandEncoder,
        srcs: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let ranges: Vec<_> = srcs.iter().map(|&(b, bytes)| (b, 0, bytes)).collect();
        self.read_back_ranges(enc, &ranges)
    }

    /// `words` 32-bit words of `src` from word `first` (a small, one-off read).
    pub(crate) fn read_words_at(
        &self,
        src: &wgpu::Buffer,
        first: u64,
        words: u64,
    ) -> Result<Vec<u32>> {
        Ok(words_of(&self.read_range(src, 4 * first, 4 * words)?))
    }

    /// [`GpuContext::read_back`] of `(source, byte offset, bytes)` ranges.
    fn read_back_ranges(
        &self,
        mut enc: wgpu::CommandEncoder,
        srcs: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let staging = self.scoped("allocating read-back buffers", || {
            srcs.iter()
                .map(|&(_, _, bytes)| {
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("read-back"),
                        size: bytes.max(4),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect::<Vec<_>>()
        })?;
        for (&(src, offset, bytes), dst) in srcs.iter().zip(&staging) {
            enc.copy_buffer_to_buffer(src, offset, dst, 0, bytes);
        }
        let submission = self.queue.submit([enc.finish()]);
        let receivers: Vec<_> = staging
            .iter()
            .map(|b| {
                let (tx, rx) = std::sync::mpsc::channel();
                b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                    // The receiver outlives the poll that runs this callback.
                    let _ = tx.send(r);
                });
                rx
            })
            .collect();
        self.wait_for(submission, "reading buffers back")?;
        self.check_uncaptured("reading buffers back")?;
        let mut out = Vec::with_capacity(srcs.len());
        for ((b, rx), &(_, _, bytes)) in staging.iter().zip(receivers).zip(srcs) {
            rx.recv()
                .map_err(|_| Error::BufferMap("the map callback never ran".into()))?
                .map_err(|e| Error::BufferMap(e.to_string()))?;
            let data = b
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::BufferMap(e.to_string()))?
                .get(..bytes as usize)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            b.unmap();
            out.push(data);
        }
        Ok(out)
    }
}
