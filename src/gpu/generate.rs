//! Host driver of `shaders/rng/init.wgsl`: generates any element range of a tensor
//! in chunks that fit one storage binding, streaming each chunk back to the
//! host while the GPU works on the next.

use super::context::GpuContext;
use super::launch::{Batch, Binding, Launch};
use super::pack::Packer;
use crate::error::{Error, Result};
use crate::gpu::shaders::{self, MulHi, Store};
use crate::io::dtype::DType;
use crate::rng::dist::Dist;
pub use crate::rng::request::{GenRequest, Kernel};
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

/// The WGSL entry point of `kernel` (`shaders/rng/init.wgsl`).
fn entry_point(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::Bits => "gen_bits",
        Kernel::Dist(Dist::Normal) => "gen_normal",
        Kernel::Dist(Dist::Uniform) => "gen_uniform",
        Kernel::Dist(Dist::Truncated) => "gen_truncated",
    }
}

/// How to run the kernels. None of these change the values produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenOptions {
    /// Elements per chunk; `None` = as many as one storage binding holds, at
    /// most [`DEFAULT_CHUNK_BYTES`].
    pub chunk_elems: Option<u64>,
    /// Invocations per workgroup: a power of two from 32 to the device limit.
    pub workgroup_size: u32,
    /// Philox multiply; `None` = native int64 where the context enabled it.
    pub mulhi: Option<MulHi>,
    /// How blocks are stored. [`Store::Vec4`] applies to chunks that start
    /// on a Philox block and hold whole blocks; others use [`Store::Scalar`].
    pub store: Store,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            chunk_elems: None,
            workgroup_size: 256,
            mulhi: None,
            store: Store::Scalar,
        }
    }
}

/// Default upper bound of one chunk: 256 MiB. Four buffers of this size (two
/// storage, two read-back) are alive during a long generation.
pub const DEFAULT_CHUNK_BYTES: u64 = 256 << 20;
/// Hard cap on elements per chunk, keeping every in-kernel u32 index far from
/// overflow (the kernel forms `lane_offset + count + 3`).
pub(crate) const MAX_CHUNK_ELEMS: u64 = 1 << 30;

use super::layout::GenParams as Params;

/// Largest workgroup size deepinit uses (WebGPU's guaranteed minimum limit is 256).
pub(crate) const MAX_WORKGROUP_SIZE: u32 = 1024;

/// Checks a workgroup size: a power of two from 32 to `max`.
pub(crate) fn check_workgroup_size(wg: u32, max: u32) -> Result<()> {
    if !wg.is_power_of_two() || !(32..=max).contains(&wg) {
        return Err(Error::invalid(
            "workgroup size",
            format!("{wg} (must be a power of two from 32 to {max})"),
        ));
    }
    Ok(())
}

impl Params {
    fn new(req: &GenRequest, first: u64, count: u64) -> Params {
        let block_start = first >> 2;
        Params {
            key: crate::rng::philox::seed_key(req.seed),
            block_start: [block_start as u32, (block_start >> 32) as u32],
            tensor_id: req.tensor_id,
            lane_offset: (first & 3) as u32,
            // Callers keep count <= MAX_CHUNK_ELEMS < 2^32.
            count: count as u32,
            scale: req.scale,
        }
    }
}

type PipelineKey = (Kernel, MulHi, Store, u32);

/// The weight generator for one [`GpuContext`].
///
/// Pipelines are cached by (kernel, multiply variant, store, workgroup size).
/// The cache is bounded: 4 kernels x 2 multiplies x 2 stores x at most 6
/// power-of-two workgroup sizes (32..=1024) = 96 entries, and a key fully
/// determines the pipeline (same module source, entry point and override
/// constant), so a hit is always sound.
pub struct Generator {
    ctx: GpuContext,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    modules: Mutex<HashMap<(MulHi, Store), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// The bf16/f16 packing pipelines, built on first use.
    packer: Mutex<Option<Arc<Packer>>>,
}

struct Slot {
    params: wgpu::Buffer,
    storage: wgpu::Buffer,
    /// Packed halves (bf16/f16 output only).
    packed: Option<wgpu::Buffer>,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

struct InFlight {
    slot: usize,
    offset: u64,
    /// Bytes the sink gets.
    bytes: u64,
    /// Bytes mapped (a multiple of 4).
    mapped: u64,
    submission: wgpu::SubmissionIndex,
    receiver: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

impl Generator {
    /// Creates the bind group layout; pipelines are built on first use.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let (layout, pipeline_layout) = ctx.scoped("creating the generation layout", || {
            let layout = ctx
                .device()
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("init"),
                    entries: &[
                        wgpu::BindGroupLayoutEntry {
                            binding: 0,
                            visibility: wgpu::ShaderStages::COMPUTE,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: wgpu::BufferSize::new(32),
                            },
                            count: None,
                        },
                        wgpu::BindGroupLayoutEntry {
                            binding: 1,
                            visibility: wgpu::ShaderStages::COMPUTE,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Storage { read_only: false },
                                has_dynamic_offset: false,
                                // 4 bytes for the scalar store, 16 for the
                                // vec4 one: checked when a pipeline is used.
                                min_binding_size: None,
                            },
                            count: None,
                        },
                    ],
                });
            let pipeline_layout =
                ctx.device()
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some("init"),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
            (layout, pipeline_layout)
        })?;
        Ok(Self {
            ctx: ctx.clone(),
            layout,
            pipeline_layout,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            packer: Mutex::new(None),
        })
    }

    fn packer(&self) -> Result<Arc<Packer>> {
        let mut p = self.packer.lock().map_err(|_| Error::Gpu {
            during: "building the packing pipelines",
            message: "cache lock poisoned".into(),
        })?;
        if let Some(p) = p.as_ref() {
            return Ok(p.clone());
        }
        let made = Arc::new(Packer::new(&self.ctx)?);
        *p = Some(made.clone());
        Ok(made)
    }

    /// The context this generator runs on.
    pub(crate) fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Number of cached pipelines (for tests of the cache).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn resolve_mulhi(&self, opts: &GenOptions) -> Result<MulHi> {
        match opts.mulhi {
            None if self.ctx.int64() => Ok(MulHi::Int64),
            None => Ok(MulHi::Emulated),
            Some(MulHi::Int64) if !self.ctx.int64() => Err(Error::invalid(
                "kernel variant",
                "the int64 Philox path needs SHADER_INT64, which this device lacks",
            )),
            Some(m) => Ok(m),
        }
    }

    fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        let poisoned = || Error::Gpu {
            during: "building a pipeline",
            message: "cache lock poisoned".into(),
        };
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let (kernel, mulhi, store, wg) = key;
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(&(mulhi, store)) {
                Some(m) => m.clone(),
                None => {
                    let sm = self
                        .ctx
                        .shader_module(&shaders::init_module(mulhi, store))?;
                    modules.insert((mulhi, store), sm.clone());
                    sm
                }
            }
        };
        let constants = [("WORKGROUP_SIZE", f64::from(wg))];
        let pipeline = self.ctx.scoped("building the generation pipeline", || {
            self.ctx
                .device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point(kernel)),
                    layout: Some(&self.pipeline_layout),
                    module: &module,
                    entry_point: Some(entry_point(kernel)),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        // Kernels use no workgroup memory.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        self.pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Largest chunk (elements) this device allows for `opts`.
    pub(crate) fn chunk_limit(&self, opts: &GenOptions) -> Result<u64> {
        let l = &self.ctx.limits();
        let device_max = l.max_storage_buffer_binding_size.min(l.max_buffer_size) / 4;
        match opts.chunk_elems {
            None => Ok(device_max.min(DEFAULT_CHUNK_BYTES / 4).min(MAX_CHUNK_ELEMS)),
            Some(0) => Err(Error::invalid("chunk size", "0 elements")),
            Some(c) if c > device_max.min(MAX_CHUNK_ELEMS) => Err(Error::LimitExceeded {
                what: "chunk (elements in one storage binding)".into(),
                got: c,
                max: device_max.min(MAX_CHUNK_ELEMS),
                hint: format!(
                    " on {} (max storage binding {} bytes)",
                    self.ctx.adapter().name,
                    l.max_storage_buffer_binding_size
                ),
            }),
            Some(c) => Ok(c),
        }
    }

    /// Largest workgroup size this device runs the kernels with: its
    /// limits, capped at [`MAX_WORKGROUP_SIZE`].
    pub(crate) fn max_workgroup_size(&self) -> u32 {
        let l = self.ctx.limits();
        l.max_compute_invocations_per_workgroup
            .min(l.max_compute_workgroup_size_x)
            .min(MAX_WORKGROUP_SIZE)
    }

    fn check_workgroup(&self, wg: u32) -> Result<()> {
        check_workgroup_size(wg, self.max_workgroup_size())
    }

    fn make_slot(&self, bytes: u64, i: usize, dtype: DType) -> Result<Slot> {
        self.ctx.scoped("allocating generation buffers", || {
            let d = &self.ctx.device();
            let params = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("init params"),
                size: std::mem::size_of::<Params>() as u64,
                // Rewritten by queue.write_buffer before every chunk.
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let storage = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(if i == 0 { "init out 0" } else { "init out 1" }),
                size: bytes,
                // Written by the kernel, then copied to the mappable buffer
                // (MAP_READ cannot be combined with STORAGE without a native-only feature).
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let packed = (dtype != DType::F32).then(|| {
                d.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("init packed"),
                    size: (bytes / 4).div_ceil(2) * 4,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            });
            let readback = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("init readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("init"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: storage.as_entire_binding(),
                    },
                ],
            });
            Slot {
                params,
                storage,
                packed,
                readback,
                bind_group,
            }
        })
    }

    /// Generates the requested range and hands it to `sink` chunk by chunk, in
    /// order: `sink(offset, words)` gets elements `req.start + offset ..` as
    /// 32-bit patterns (raw words for [`Kernel::Bits`], `f32::to_bits` otherwise).
    /// The values do not depend on `opts`.
    pub fn generate(
        &self,
        req: &GenRequest,
        opts: &GenOptions,
        mut sink: impl FnMut(u64, &[u32]) -> Result<()>,
    ) -> Result<()> {
        self.generate_encoded(req, opts, DType::F32, |off, bytes| {
            match bytemuck::try_cast_slice::<u8, u32>(bytes) {
                Ok(words) => sink(off, words),
                // Mapped memory is at least 4-byte aligned in practice; copy if not.
                Err(_) => sink(off, &super::context::words_of(bytes)),
            }
        })
    }

    /// [`Generator::generate`] with the values stored as `dtype` on the
    /// device (f32 values rounded by `shaders/io/pack.wgsl`): `sink(offset,
    /// bytes)` gets elements `req.start + offset ..` as little-endian
    /// `dtype` bytes. Half types need a [`Kernel::Dist`] request.
    pub fn generate_encoded(
        &self,
        req: &GenRequest,
        opts: &GenOptions,
        dtype: DType,
        mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if req.count == 0 {
            return Ok(());
        }
        let chunk = self.check_request(req, opts, dtype)?;
        let packer = match dtype {
            DType::F32 => None,
            _ => Some(self.packer()?),
        };
        let mulhi = self.resolve_mulhi(opts)?;
        let n_slots = if req.count > chunk { 2 } else { 1 };
        let slots: Vec<Slot> = (0..n_slots)
            .map(|i| self.make_slot(chunk * 4, i, dtype))
            .collect::<Result<_>>()?;

        let mut pending: Option<InFlight> = None;
        let mut offset = 0u64;
        let mut k = 0usize;
        while offset < req.count {
            let count = chunk.min(req.count - offset);
            let first = req.start + offset;
            let slot_i = k % n_slots;
            let slot = &slots[slot_i];
            let params = Params::new(req, first, count);
            let (gx, gy) = self.dims(&params, opts.workgroup_size)?;
            let pipeline = self.pipeline(Self::key(req, mulhi, opts, &params))?;
            // Slot reuse is safe: its previous chunk was consumed (and unmapped)
            // before this point, because at most one chunk is in flight while
            // another is being encoded.
            self.ctx
                .queue()
                .write_buffer(&slot.params, 0, bytemuck::bytes_of(&params));
            let mut enc =
                self.ctx
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("init chunk"),
                    });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("init"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &slot.bind_group, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
            let (source, copy) = match (&packer, &slot.packed) {
                (Some(p), Some(packed)) => {
                    Batch::from(p.launch(dtype, count, &slot.storage, packed)?)
                        .record(&self.ctx, &mut enc)?;
                    (packed, count.div_ceil(2) * 4)
                }
                _ => (&slot.storage, count * 4),
            };
            enc.copy_buffer_to_buffer(source, 0, &slot.readback, 0, copy);
            let submission = self.ctx.queue().submit([enc.finish()]);
            let (tx, rx) = mpsc::channel();
            slot.readback
                .slice(..copy)
                .map_async(wgpu::MapMode::Read, move |r| {
                    // The receiver outlives the poll that runs this callback.
                    let _ = tx.send(r);
                });
            // While the GPU runs this chunk, hand the previous one to the sink.
            if let Some(prev) = pending.take() {
                self.finish(&slots[prev.slot], prev, &mut sink)?;
            }
            pending = Some(InFlight {
                slot: slot_i,
                offset,
                bytes: count * dtype.size(),
                mapped: copy,
                submission,
                receiver: rx,
            });
            offset += count;
            k += 1;
        }
        if let Some(prev) = pending.take() {
            self.finish(&slots[prev.slot], prev, &mut sink)?;
        }
        Ok(())
    }

    /// Validates a request; returns its chunk size (even for packed
    /// output, so that every chunk but the last packs whole words).
    fn check_request(&self, req: &GenRequest, opts: &GenOptions, dtype: DType) -> Result<u64> {
        req.start.checked_add(req.count).ok_or_else(|| {
            Error::invalid("element range", "start + count overflows a 64-bit index")
        })?;
        if !req.scale.is_finite() {
            return Err(Error::invalid(
                "scale",
                format!("{} is not finite", req.scale),
            ));
        }
        if dtype != DType::F32 && req.kernel == Kernel::Bits {
            return Err(Error::invalid("dtype", "raw Philox words are 32-bit"));
        }
        self.check_workgroup(opts.workgroup_size)?;
        let chunk = self.chunk_limit(opts)?.min(req.count);
        Ok(if dtype != DType::F32 && chunk < req.count {
            (chunk & !1).max(2)
        } else {
            chunk
        })
    }

    /// The pipeline for one chunk: the vec4 store only where the chunk
    /// starts on a Philox block and holds whole blocks.
    fn key(req: &GenRequest, mulhi: MulHi, opts: &GenOptions, p: &Params) -> PipelineKey {
        let store = match opts.store {
            Store::Vec4 if p.lane_offset == 0 && p.count.is_multiple_of(4) => Store::Vec4,
            _ => Store::Scalar,
        };
        (req.kernel, mulhi, store, opts.workgroup_size)
    }

    fn dims(&self, p: &Params, workgroup_size: u32) -> Result<(u32, u32)> {
        let blocks = (u64::from(p.lane_offset) + u64::from(p.count)).div_ceil(4);
        self.ctx
            .dispatch_2d(blocks.div_ceil(u64::from(workgroup_size)))
    }

    /// Queues the generation of `req` into `out` (elements `req.start ..` land
    /// at `out[0 ..]`), with no read-back: how the network driver materializes
    /// weights, biases and inputs on the device. `req.count` must fit one
    /// chunk and `out`; `opts`' chunk size is ignored.
    pub fn encode_into(
        &self,
        batch: &mut Batch,
        req: &GenRequest,
        out: &wgpu::Buffer,
        opts: &GenOptions,
    ) -> Result<()> {
        if req.count > 0 {
            batch.push(self.launch(req, out, opts)?);
        }
        Ok(())
    }

    /// The launch that generates `req` into `out` with explicit kernel options
    /// (the chunk size is ignored: the request must fit one chunk).
    pub(crate) fn launch(
        &self,
        req: &GenRequest,
        out: &wgpu::Buffer,
        opts: &GenOptions,
    ) -> Result<Launch> {
        self.check_workgroup(opts.workgroup_size)?;
        let opts = &GenOptions {
            chunk_elems: None,
            ..*opts
        };
        let limit = self.chunk_limit(opts)?;
        if req.count == 0 || req.count > limit || req.count * 4 > out.size() {
            return Err(Error::LimitExceeded {
                what: "generation into one buffer (elements)".into(),
                got: req.count,
                max: limit.min(out.size() / 4),
                hint: if req.count == 0 {
                    " (and at least 1)".into()
                } else {
                    String::new()
                },
            });
        }
        req.start.checked_add(req.count).ok_or_else(|| {
            Error::invalid("element range", "start + count overflows a 64-bit index")
        })?;
        let mulhi = self.resolve_mulhi(opts)?;
        let params = Params::new(req, req.start, req.count);
        Ok(Launch {
            pipeline: self.pipeline(Self::key(req, mulhi, opts, &params))?,
            layout: Some(self.layout.clone()),
            params: bytemuck::bytes_of(&params).to_vec(),
            buffers: vec![Binding::prefix(out, req.count * 4)],
            groups: self.dims(&params, opts.workgroup_size)?,
        })
    }

    fn finish(
        &self,
        slot: &Slot,
        f: InFlight,
        sink: &mut impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.ctx
            .device()
            .poll(wgpu::PollType::Wait {
                submission_index: Some(f.submission),
                timeout: None,
            })
            .map_err(|e| Error::Gpu {
                during: "waiting for a generation chunk",
                message: e.to_string(),
            })?;
        self.ctx.check_uncaptured("generating weights")?;
        f.receiver
            .recv()
            .map_err(|_| Error::BufferMap("the map callback never ran".into()))?
            .map_err(|e| Error::BufferMap(e.to_string()))?;
        let result = {
            let view = slot
                .readback
                .slice(..f.mapped)
                .get_mapped_range()
                .map_err(|e| Error::BufferMap(e.to_string()))?;
            sink(f.offset, &view[..f.bytes as usize])
        };
        slot.readback.unmap();
        result
    }

    /// Generates the range into a vector of f32 values (`Kernel::Dist`) — the
    /// whole range must fit in host memory.
    pub fn generate_f32(&self, req: &GenRequest, opts: &GenOptions) -> Result<Vec<f32>> {
        let mut out = crate::io::host::host_vec(req.count)?;
        self.generate(req, opts, |off, w| {
            let o = off as usize;
            out[o..o + w.len()].copy_from_slice(bytemuck::cast_slice(w));
            Ok(())
        })?;
        Ok(out)
    }

    /// Generates the range's raw words (`Kernel::Bits`) into a vector.
    pub fn generate_words(&self, req: &GenRequest, opts: &GenOptions) -> Result<Vec<u32>> {
        let mut out = crate::io::host::host_vec(req.count)?;
        self.generate(req, opts, |off, w| {
            let o = off as usize;
            out[o..o + w.len()].copy_from_slice(w);
            Ok(())
        })?;
        Ok(out)
    }
}
