//! Kernel launches as data, and the one path that records them.
//!
//! A [`Launch`] names a pipeline, its parameter bytes, its storage bindings
//! and its workgroup grid. A [`Batch`] of launches is built once
//! ([`Batch::build`]): every distinct parameter block lands in one uniform
//! buffer, every bind group is created inside one error scope. The built
//! [`Recorded`] batch then only records, as many times as wanted (wgpu's
//! `repeated_compute` pattern): no allocation per dispatch, and consecutive
//! dispatches share one compute pass (wgpu orders their storage accesses).

use super::context::GpuContext;
use crate::error::{Error, Result};
use std::collections::HashMap;

/// One storage binding: a whole buffer, or its first `size` bytes.
#[derive(Debug, Clone)]
pub struct Binding {
    buffer: wgpu::Buffer,
    size: Option<wgpu::BufferSize>,
}

impl Binding {
    /// The first `bytes` of `buffer` (a zero size binds the whole buffer).
    pub(crate) fn prefix(buffer: &wgpu::Buffer, bytes: u64) -> Binding {
        Binding {
            buffer: buffer.clone(),
            size: wgpu::BufferSize::new(bytes),
        }
    }
}

impl From<&wgpu::Buffer> for Binding {
    fn from(buffer: &wgpu::Buffer) -> Binding {
        Binding {
            buffer: buffer.clone(),
            size: None,
        }
    }
}

/// One dispatch: bind group 0 holds the parameters (a uniform at binding 0,
/// when `params` is not empty) followed by `buffers` in binding order.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Bind group 0's layout; `None` takes the pipeline's derived layout.
    pub layout: Option<wgpu::BindGroupLayout>,
    /// The uniform parameter block (a `#[repr(C)]` struct's bytes), or empty.
    pub params: Vec<u8>,
    /// Storage bindings, in order after the parameters.
    pub buffers: Vec<Binding>,
    /// Workgroups in x and y.
    pub groups: (u32, u32),
}

#[derive(Debug)]
enum Op {
    Launch(Launch),
    Clear {
        buffer: wgpu::Buffer,
        offset: u64,
        size: Option<u64>,
    },
    Write {
        buffer: wgpu::Buffer,
        offset: u64,
        data: Vec<u8>,
    },
    Copy {
        src: wgpu::Buffer,
        dst: wgpu::Buffer,
        size: u64,
    },
}

/// Launches (and buffer clears) to build together; see the module docs.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

#[derive(Debug)]
enum Step {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: (u32, u32),
    },
    Clear {
        buffer: wgpu::Buffer,
        offset: u64,
        size: Option<u64>,
    },
    Copy {
        src: wgpu::Buffer,
        dst: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
}

/// A built [`Batch`]: record it into any number of encoders.
#[derive(Debug)]
pub struct Recorded {
    steps: Vec<Step>,
    /// Holds the parameter blocks the bind groups point into.
    _params: Option<wgpu::Buffer>,
}

impl From<Launch> for Batch {
    fn from(launch: Launch) -> Batch {
        Batch {
            ops: vec![Op::Launch(launch)],
        }
    }
}

impl Batch {
    /// Appends a launch.
    pub(crate) fn push(&mut self, launch: Launch) {
        self.ops.push(Op::Launch(launch));
    }

    /// Appends a zero-fill of `size` bytes (all, if `None`) of `buffer` from `offset`.
    pub(crate) fn clear(&mut self, buffer: &wgpu::Buffer, offset: u64, size: Option<u64>) {
        self.ops.push(Op::Clear {
            buffer: buffer.clone(),
            offset,
            size,
        });
    }

    /// Appends a write of `data` (a multiple of 4 bytes) into `buffer` at
    /// `offset`, in order with the launches (injected defects in tests).
    pub(crate) fn write(&mut self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.ops.push(Op::Write {
            buffer: buffer.clone(),
            offset,
            data: data.to_vec(),
        });
    }

    /// Appends a copy of the first `size` bytes (a multiple of 4) of `src`
    /// to the start of `dst`, in order with the launches.
    pub(crate) fn copy(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, size: u64) {
        self.ops.push(Op::Copy {
            src: src.clone(),
            dst: dst.clone(),
            size,
        });
    }

    /// Launches and clears so far.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Creates the parameter buffer (identical blocks stored once, each at
    /// the device's uniform offset alignment) and every bind group.
    pub fn build(self, ctx: &GpuContext) -> Result<Recorded> {
        let align = u64::from(ctx.limits().min_uniform_buffer_offset_alignment).max(16);
        let mut offsets: HashMap<&[u8], u64> = HashMap::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut at = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let off = match op {
                Op::Launch(l) if !l.params.is_empty() => {
                    Some(*offsets.entry(l.params.as_slice()).or_insert_with(|| {
                        // Every block starts aligned: the previous one was padded.
                        let off = bytes.len() as u64;
                        bytes.extend_from_slice(&l.params);
                        bytes.resize((bytes.len() as u64).next_multiple_of(align) as usize, 0);
                        off
                    }))
                }
                _ => None,
            };
            at.push(off);
        }
        let max_buffer = ctx.limits().max_buffer_size;
        if bytes.len() as u64 > max_buffer {
            return Err(Error::LimitExceeded {
                what: "kernel parameters of one batch (bytes)".into(),
                got: bytes.len() as u64,
                max: max_buffer,
                hint: String::new(),
            });
        }
        ctx.scoped("binding kernel buffers", || {
            let params = (!bytes.is_empty()).then(|| ctx.uniform(&bytes));
            let steps = self
                .ops
                .iter()
                .zip(&at)
                .map(|(op, off)| match op {
                    Op::Launch(l) => Step::Dispatch {
                        pipeline: l.pipeline.clone(),
                        bind_group: bind_group(ctx, l, params.as_ref().zip(*off)),
                        groups: l.groups,
                    },
                    Op::Clear {
                        buffer,
                        offset,
                        size,
                    } => Step::Clear {
                        buffer: buffer.clone(),
                        offset: *offset,
                        size: *size,
                    },
                    Op::Copy { src, dst, size } => Step::Copy {
                        src: src.clone(),
                        dst: dst.clone(),
                        offset: 0,
                        size: *size,
                    },
                    Op::Write {
                        buffer,
                        offset,
                        data,
                    } => {
                        use wgpu::util::DeviceExt;
                        Step::Copy {
                            src: ctx.device().create_buffer_init(
                                &wgpu::util::BufferInitDescriptor {
                                    label: Some("batch write"),
                                    contents: data,
                                    usage: wgpu::BufferUsages::COPY_SRC,
                                },
                            ),
                            dst: buffer.clone(),
                            offset: *offset,
                            size: data.len() as u64,
                        }
                    }
                })
                .collect();
            Recorded {
                steps,
                _params: params,
            }
        })
    }

    /// Builds the batch and records it into `enc` once.
    pub fn record(self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.build(ctx)?.record(enc);
        Ok(())
    }

    /// Records the batch into a fresh encoder and submits it (without
    /// waiting: later reads and submissions on the queue follow it).
    pub(crate) fn submit(self, ctx: &GpuContext) -> Result<()> {
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        self.record(ctx, &mut enc)?;
        ctx.queue().submit([enc.finish()]);
        Ok(())
    }
}

fn bind_group(
    ctx: &GpuContext,
    l: &Launch,
    params: Option<(&wgpu::Buffer, u64)>,
) -> wgpu::BindGroup {
    let mut entries = Vec::with_capacity(l.buffers.len() + 1);
    if let Some((buf, offset)) = params {
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: buf,
                offset,
                size: wgpu::BufferSize::new(l.params.len() as u64),
            }),
        });
    }
    let first = entries.len() as u32;
    for (i, b) in l.buffers.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: first + i as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &b.buffer,
                offset: 0,
                size: b.size,
            }),
        });
    }
    let derived;
    let layout = match &l.layout {
        Some(layout) => layout,
        None => {
            derived = l.pipeline.get_bind_group_layout(0);
            &derived
        }
    };
    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

impl Recorded {
    /// Records every step into `enc`; consecutive dispatches share a pass.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) {
        let mut i = 0;
        while i < self.steps.len() {
            match &self.steps[i] {
                Step::Clear {
                    buffer,
                    offset,
                    size,
                } => {
                    enc.clear_buffer(buffer, *offset, *size);
                    i += 1;
                    continue;
                }
                Step::Copy {
                    src,
                    dst,
                    offset,
                    size,
                } => {
                    enc.copy_buffer_to_buffer(src, 0, dst, *offset, *size);
                    i += 1;
                    continue;
                }
                Step::Dispatch { .. } => {}
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            while let Some(Step::Dispatch {
                pipeline,
                bind_group,
                groups,
            }) = self.steps.get(i)
            {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
                i += 1;
            }
        }
    }
}
