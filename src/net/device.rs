//! The deep forward and backward pass on the GPU: weights generated on the
//! device (row blocks that fit one storage binding), tiled GEMMs, fused
//! element-wise steps, and per-layer statistics reduced on the device. Only
//! the statistics are read back.

use super::kernels::{GemmForm, GemmParams, NetKernels};
use crate::error::{Error, Result};
use crate::gpu::context::{floats_of, words_of, GpuContext};
use crate::gpu::generate::{GenRequest, Generator, Kernel};
use crate::gpu::launch::Batch;
use crate::net::mirror::{PassLayout, RawPass};
use crate::net::{self, NetConfig, NetStats};
use crate::rng::dist::Dist;
use std::time::Instant;

/// GEMM work recorded per submission (2^36 flops, ~69 GFLOP): a typical run is
/// one submission (work and read-back together), while a command buffer of a
/// huge network is split before it can run long enough to trip a driver
/// watchdog (about 0.7 s even at 100 GFLOP/s).
pub(crate) const FLOPS_PER_SUBMIT: f64 = 68_719_476_736.0;

/// Launches built together (about 20 per layer): bounds the parameter buffer
/// of one batch to BATCH_LAUNCHES x 256 bytes (256 KiB) whatever the depth.
pub(crate) const BATCH_LAUNCHES: usize = 1024;

struct Bufs {
    act: [wgpu::Buffer; 2],
    delta: [wgpu::Buffer; 2],
    z: Vec<wgpu::Buffer>,
    w: wgpu::Buffer,
    bias: wgpu::Buffer,
    ones: wgpu::Buffer,
    colsum: wgpu::Buffer,
    recs: wgpu::Buffer,
    dead: wgpu::Buffer,
    grams: wgpu::Buffer,
}

pub(crate) fn storage(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    let limit = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size);
    if bytes > limit {
        return Err(Error::LimitExceeded {
            what: format!("{label} buffer (bytes)"),
            got: bytes,
            max: limit,
            hint: format!(" on {}; reduce the batch or width", ctx.adapter().name),
        });
    }
    ctx.scoped("allocating network buffers", || {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            // Kernels read and write them; statistics are copied out.
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

/// Rows of W_l per generated block: as many as one binding (and 256 MiB) holds.
fn weight_rows(ctx: &GpuContext, n_in: u64, n_out: u64) -> Result<u64> {
    let limit = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size)
        .min(crate::gpu::generate::DEFAULT_CHUNK_BYTES);
    let rows = limit / (4 * n_in);
    if rows == 0 {
        return Err(Error::LimitExceeded {
            what: "one weight row (bytes)".into(),
            got: 4 * n_in,
            max: limit,
            hint: String::new(),
        });
    }
    Ok(rows.min(n_out))
}

/// Runs `cfg` forward and backward on the device, with `kern` compiled for
/// `cfg.act` (compile once, run many configurations).
pub fn run(
    gen: &Generator,
    kern: &NetKernels,
    cfg: &NetConfig,
    input: Option<&[f32]>,
) -> Result<NetStats> {
    run_with_fault(gen, kern, cfg, input, &net::Fault::default(), None)
}

/// [`run`] with a defect injected (tests only; see [`net::Fault`]) and
/// optional progress reporting.
#[doc(hidden)]
pub(crate) fn run_with_fault(
    gen: &Generator,
    kern: &NetKernels,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    fault: &net::Fault,
    progress: Option<&crate::progress::Progress>,
) -> Result<NetStats> {
    run_raw(gen, kern, cfg, input, fault, progress).map(|(stats, _, _)| stats)
}

/// [`run_with_fault`], also returning the raw results (every statistics
/// record, dead-unit counter and Gram matrix) and their layout, for the CPU
/// mirror ([`crate::net::mirror`]) to compare word for word.
#[doc(hidden)]
pub fn run_raw(
    gen: &Generator,
    kern: &NetKernels,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    fault: &net::Fault,
    progress: Option<&crate::progress::Progress>,
) -> Result<(NetStats, RawPass, PassLayout)> {
    if kern.activation() != cfg.act {
        return Err(Error::internal(
            "network kernels",
            format!(
                "compiled for {}, but the network uses {}",
                kern.activation().name(),
                cfg.act.name()
            ),
        ));
    }
    let start = Instant::now();
    let pass = Pass::plan(gen, kern, cfg, fault)?;
    let ctx = gen.context();
    let depth = cfg.depth();
    // Progress: with a reporter, each submission is waited for, so the
    // fraction of the pass's flops done is known (a small pass is one
    // submission and is not slowed).
    let total_flops: f64 = (1..=depth).map(|l| 2.0 * pass.layer_flops(l)).sum();
    let mut done_flops = 0.0f64;
    let mut pending = 0.0f64;
    let mut enc = pass.encoder();
    let mut batch = Batch::default();
    // Launches are built a batch at a time (one parameter buffer and its bind
    // groups per batch of up to BATCH_LAUNCHES), then recorded; the encoder is
    // submitted every FLOPS_PER_SUBMIT.
    let mut account = |batch: &mut Batch, enc: &mut wgpu::CommandEncoder, flops: f64| {
        pending += flops;
        let submit = pending > FLOPS_PER_SUBMIT;
        if submit || batch.len() >= BATCH_LAUNCHES {
            std::mem::take(batch).record(ctx, enc)?;
        }
        if submit {
            let index = ctx
                .queue()
                .submit([std::mem::replace(enc, pass.encoder()).finish()]);
            done_flops += pending;
            pending = 0.0;
            if let Some(p) = progress {
                ctx.wait_for(index, "running the network")?;
                p.update(done_flops, total_flops);
            }
        }
        Ok::<(), Error>(())
    };
    // Everything is recorded into as few submissions as possible.
    pass.record_input(&mut batch, input)?;
    for l in 1..=depth {
        pass.record_forward(&mut batch, l)?;
        account(&mut batch, &mut enc, pass.layer_flops(l))?;
    }
    pass.gram(
        &mut batch,
        &pass.bufs.act[depth % 2],
        cfg.widths[depth],
        2 * depth as u64,
    )?;
    pass.record_loss(&mut batch)?;
    for l in (1..=depth).rev() {
        pass.record_backward(&mut batch, l)?;
        account(&mut batch, &mut enc, pass.layer_flops(l))?;
    }
    batch.record(ctx, &mut enc)?;
    // Read back only the statistics, in the same submission as the last work.
    let raw = pass.read_raw(enc)?;
    let mut stats = crate::net::mirror::fold(cfg, &pass.layout, &raw)?;
    stats.seconds = start.elapsed().as_secs_f64();
    Ok((stats, raw, pass.layout))
}

/// One network pass, planned: its buffers (allocated once, whatever the
/// depth) and the layout of its statistics records.
struct Pass<'a> {
    gen: &'a Generator,
    kern: &'a NetKernels,
    cfg: &'a NetConfig,
    fault: &'a net::Fault,
    stds: Vec<f64>,
    bufs: Bufs,
    /// Where each tensor's records lie, and the rows of W_l per generated
    /// block (`block_rows[l - 1]`).
    layout: PassLayout,
}

impl<'a> Pass<'a> {
    /// Lays out the records and allocates every buffer.
    fn plan(
        gen: &'a Generator,
        kern: &'a NetKernels,
        cfg: &'a NetConfig,
        fault: &'a net::Fault,
    ) -> Result<Pass<'a>> {
        let ctx = gen.context();
        let stds = cfg.validate()?;
        let depth = cfg.depth();
        let (b, w) = (cfg.batch, &cfg.widths);
        let max_w = *w.iter().max().unwrap_or(&1);
        let gram_bytes = 4 * b * b * (2 * depth as u64 + 1);
        check_gram_binding(ctx, gram_bytes, b)?;
        let max_rows = (1..=depth)
            .map(|l| weight_rows(ctx, w[l - 1], w[l]))
            .collect::<Result<Vec<_>>>()?;
        let w_elems = (1..=depth)
            .map(|l| max_rows[l - 1] * w[l - 1])
            .max()
            .unwrap_or(1);
        // Record layout: input, then per layer z, a, delta, then per layer
        // the statistics of z_l's column sums.
        let layout = PassLayout::new(cfg, max_rows);
        let total = layout.total_records;
        let bufs = Bufs {
            act: [
                storage(ctx, "activations", 4 * b * max_w)?,
                storage(ctx, "activations", 4 * b * max_w)?,
            ],
            delta: [
                storage(ctx, "deltas", 4 * b * max_w)?,
                storage(ctx, "deltas", 4 * b * max_w)?,
            ],
            z: (1..=depth)
                .map(|l| storage(ctx, "pre-activations", 4 * b * w[l]))
                .collect::<Result<_>>()?,
            w: storage(ctx, "weight block", 4 * w_elems)?,
            bias: storage(ctx, "bias", 4 * max_w)?,
            ones: storage(ctx, "ones", 4 * b)?,
            colsum: storage(ctx, "column sums", 4 * max_w)?,
            recs: storage(ctx, "statistics records", 4 * net_words(total))?,
            dead: storage(ctx, "dead-unit counters", 4 * (depth as u64 + 1))?,
            // Gram of a_{l-1} at slot 2(l-1), of delta_l at slot 2(l-1)+1, final a_L at slot 2L.
            grams: storage(ctx, "Gram matrices", gram_bytes)?,
        };
        ctx.queue()
            .write_buffer(&bufs.ones, 0, bytemuck::cast_slice(&vec![1f32; b as usize]));
        Ok(Pass {
            gen,
            kern,
            cfg,
            fault,
            stds,
            bufs,
            layout,
        })
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.gen
            .context()
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("network"),
            })
    }

    /// GEMM flops of one layer's forward pass (the backward pass costs the same).
    fn layer_flops(&self, l: usize) -> f64 {
        let (b, w) = (self.cfg.batch, &self.cfg.widths);
        2.0 * (b * w[l - 1] * (w[l] + b)) as f64
    }

    /// Records the Gram matrix x x^T (batch x batch) of `x` (rows of `n`) into `slot`.
    fn gram(&self, batch: &mut Batch, x: &wgpu::Buffer, n: u64, slot: u64) -> Result<()> {
        let b = self.cfg.batch;
        let p = GemmParams {
            m: b as u32,
            n: b as u32,
            k: n as u32,
            lda: n as u32,
            ldb: n as u32,
            ldc: b as u32,
            c_off: (slot * b * b) as u32,
            ..Default::default()
        };
        self.kern
            .gemm(batch, GemmForm::Nt, &p, x, x, &self.bufs.grams)
    }

    /// Records the generation of rows `r0 .. r0 + rows` of W_l into the block buffer.
    fn weight_block(&self, batch: &mut Batch, l: usize, r0: u64, rows: u64) -> Result<()> {
        let (cfg, n_in) = (self.cfg, self.cfg.widths[l - 1]);
        let req = GenRequest {
            kernel: Kernel::Dist(cfg.dist),
            seed: cfg.seed,
            tensor_id: l as u32,
            start: r0 * n_in,
            count: rows * n_in,
            scale: cfg
                .dist
                .kernel_scale(self.stds[l - 1] * self.fault.weight_factor(l)),
        };
        self.generate(batch, &req, &self.bufs.w)?;
        // An injected defect: one weight one ULP off (its value from the CPU).
        if let Some((_, e)) = self.fault.weight_ulp.filter(|&(k, _)| k == l) {
            if (req.start..req.start + req.count).contains(&e) {
                let mut v = [0f32];
                crate::rng::cpu::fill(cfg.dist, req.scale, cfg.seed, l as u32, e, &mut v);
                let bumped = v[0].to_bits().wrapping_add(1);
                batch.write(&self.bufs.w, 4 * (e - req.start), &bumped.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Records `req` into `out` with the store and workgroup size the
    /// device's tuner chose for its kernel (values never depend on them).
    fn generate(&self, batch: &mut Batch, req: &GenRequest, out: &wgpu::Buffer) -> Result<()> {
        let opts = self
            .kern
            .tuner()
            .generation_for(self.gen, req.kernel, req.count)?
            .apply(crate::gpu::GenOptions::default());
        self.gen.encode_into(batch, req, out, &opts)
    }

    /// Row blocks (first row, rows) of W_l that fit the block buffer.
    fn blocks(&self, l: usize) -> impl Iterator<Item = (u64, u64)> {
        let (rows, n_out) = (self.layout.block_rows[l - 1], self.cfg.widths[l]);
        (0..n_out.div_ceil(rows)).map(move |i| (i * rows, rows.min(n_out - i * rows)))
    }

    /// Records a normal tensor `tensor` of `count` values into `out`.
    fn normal(
        &self,
        batch: &mut Batch,
        tensor: u32,
        count: u64,
        std: f64,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let req = GenRequest {
            kernel: Kernel::Dist(Dist::Normal),
            seed: self.cfg.seed,
            tensor_id: tensor,
            start: 0,
            count,
            scale: Dist::Normal.kernel_scale(std),
        };
        self.generate(batch, &req, out)
    }

    /// The input a_0: `input` (batch x n_0) or N(0, 1) from the RNG, and its statistics.
    fn record_input(&self, batch: &mut Batch, input: Option<&[f32]>) -> Result<()> {
        let n = self.cfg.batch * self.cfg.widths[0];
        match input {
            Some(x) if x.len() as u64 != n => {
                return Err(Error::invalid(
                    "input",
                    format!("{} values, but batch x width = {n}", x.len()),
                ))
            }
            Some(x) => self.gen.context().queue().write_buffer(
                &self.bufs.act[0],
                0,
                bytemuck::cast_slice(x),
            ),
            None => self.normal(batch, net::INPUT_TENSOR, n, 1.0, &self.bufs.act[0])?,
        }
        self.kern
            .reduce(batch, &self.bufs.act[0], n, 0, None, &self.bufs.recs)
    }

    /// Layer l forward: z_l = a_{l-1} W_l^T (+ b_l), a_l = phi(z_l), and
    /// every statistic of z_l and a_l.
    fn record_forward(&self, batch: &mut Batch, l: usize) -> Result<()> {
        let (cfg, bufs, kern) = (self.cfg, &self.bufs, self.kern);
        let (b, n_in, n_out) = (cfg.batch, cfg.widths[l - 1], cfg.widths[l]);
        let a_prev = &bufs.act[(l - 1) % 2];
        let a_next = &bufs.act[l % 2];
        let z = &bufs.z[l - 1];
        self.gram(batch, a_prev, n_in, 2 * (l as u64 - 1))?;
        for (r0, r) in self.blocks(l) {
            self.weight_block(batch, l, r0, r)?;
            let p = GemmParams {
                m: b as u32,
                n: r as u32,
                k: n_in as u32,
                lda: n_in as u32,
                ldb: n_in as u32,
                ldc: n_out as u32,
                c_off: r0 as u32,
                ..Default::default()
            };
            kern.gemm(batch, GemmForm::Nt, &p, a_prev, &bufs.w, z)?;
        }
        if let Some((rows, cols)) = self.fault.tile(l, b, n_out) {
            for row in 0..rows {
                batch.clear(z, 4 * row * n_out, Some(4 * cols));
            }
        }
        let has_bias = cfg.bias_std > 0.0;
        if has_bias {
            self.normal(
                batch,
                net::BIAS_TENSOR | l as u32,
                n_out,
                cfg.bias_std,
                &bufs.bias,
            )?;
        }
        kern.bias_act_flipping(
            batch,
            b * n_out,
            n_out,
            has_bias,
            &bufs.bias,
            z,
            a_next,
            self.fault.act_flip(l),
        )?;
        kern.reduce(batch, z, b * n_out, self.layout.rec[l][0], None, &bufs.recs)?;
        // Column sums 1^T z_l (a 1 x B by B x n_out product) for the weight test.
        let p = GemmParams {
            m: 1,
            n: n_out as u32,
            k: b as u32,
            lda: b as u32,
            ldb: n_out as u32,
            ldc: n_out as u32,
            ..Default::default()
        };
        kern.gemm(batch, GemmForm::Nn, &p, &bufs.ones, z, &bufs.colsum)?;
        kern.reduce(
            batch,
            &bufs.colsum,
            n_out,
            self.layout.rec_cols[l],
            None,
            &bufs.recs,
        )?;
        let sat = cfg.act.saturation();
        kern.reduce(
            batch,
            a_next,
            b * n_out,
            self.layout.rec[l][1],
            sat,
            &bufs.recs,
        )?;
        kern.dead(batch, a_next, b, n_out, l as u32, &bufs.dead)
    }

    /// The loss direction: delta_L = r (times phi'(z_L), applied by layer L's backward step).
    fn record_loss(&self, batch: &mut Batch) -> Result<()> {
        let depth = self.cfg.depth();
        let n = self.cfg.batch * self.cfg.widths[depth];
        self.normal(batch, net::LOSS_TENSOR, n, 1.0, &self.bufs.delta[depth % 2])
    }

    /// Layer l backward: delta_l *= phi'(z_l), its statistics and Gram, and
    /// delta_{l-1} = delta_l W_l (summed over row blocks of W_l).
    fn record_backward(&self, batch: &mut Batch, l: usize) -> Result<()> {
        let (cfg, bufs, kern) = (self.cfg, &self.bufs, self.kern);
        let (b, n_l) = (cfg.batch, cfg.widths[l]);
        let d = &bufs.delta[l % 2];
        kern.grad_mul(batch, b * n_l, &bufs.z[l - 1], d)?;
        kern.reduce(batch, d, b * n_l, self.layout.rec[l][2], None, &bufs.recs)?;
        self.gram(batch, d, n_l, 2 * (l as u64 - 1) + 1)?;
        if l == 1 {
            return Ok(());
        }
        let n_prev = cfg.widths[l - 1];
        let out = &bufs.delta[(l - 1) % 2];
        for (r0, r) in self.blocks(l) {
            self.weight_block(batch, l, r0, r)?;
            let p = GemmParams {
                m: b as u32,
                n: n_prev as u32,
                k: r as u32,
                lda: n_l as u32,
                ldb: n_prev as u32,
                ldc: n_prev as u32,
                a_off: r0 as u32,
                accumulate: u32::from(r0 > 0),
                ..Default::default()
            };
            kern.gemm(batch, GemmForm::Nn, &p, d, &bufs.w, out)?;
        }
        Ok(())
    }

    /// Submits `enc` with the copies of the statistics and reads them back.
    fn read_raw(&self, enc: wgpu::CommandEncoder) -> Result<RawPass> {
        let (cfg, bufs) = (self.cfg, &self.bufs);
        let depth = cfg.depth() as u64;
        let gram_elems = cfg.batch * cfg.batch;
        let back = self.gen.context().read_back(
            enc,
            &[
                (&bufs.recs, 4 * net_words(self.layout.total_records)),
                (&bufs.dead, 4 * (depth + 1)),
                (&bufs.grams, 4 * gram_elems * (2 * depth + 1)),
            ],
        )?;
        Ok(RawPass {
            recs: words_of(&back[0]),
            dead: words_of(&back[1]),
            grams: floats_of(&back[2]),
        })
    }
}

/// The Gram matrices of every layer share one binding: its size bounds the depth.
fn check_gram_binding(ctx: &GpuContext, gram_bytes: u64, b: u64) -> Result<()> {
    let binding = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size);
    if gram_bytes <= binding {
        return Ok(());
    }
    let max_depth = (binding / (4 * b * b)).saturating_sub(1) / 2;
    Err(Error::LimitExceeded {
        what: "the per-layer Gram matrices (bytes)".into(),
        got: gram_bytes,
        max: binding,
        hint: format!(
            " on {}; reduce the depth (at most {max_depth} at batch {b}) or the batch",
            ctx.adapter().name
        ),
    })
}

fn net_words(records: u64) -> u64 {
    records * super::kernels::RECORD_WORDS
}

/// The device's phi(x) and phi'(x) for each `x`, through the network's own
/// `bias_act` and `grad_mul` kernels (no bias; `delta = 1`).
pub fn activation_values(kern: &NetKernels, xs: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let ctx = kern.context();
    let n = xs.len() as u64;
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let z = storage(ctx, "activation input", 4 * n)?;
    let a = storage(ctx, "activation output", 4 * n)?;
    let d = storage(ctx, "activation gradient", 4 * n)?;
    let bias = storage(ctx, "activation bias", 4)?;
    ctx.queue().write_buffer(&z, 0, bytemuck::cast_slice(xs));
    ctx.queue()
        .write_buffer(&d, 0, bytemuck::cast_slice(&vec![1f32; xs.len()]));
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("activation values"),
        });
    let mut batch = Batch::default();
    kern.bias_act(&mut batch, n, n, false, &bias, &z, &a)?;
    kern.grad_mul(&mut batch, n, &z, &d)?;
    batch.record(ctx, &mut enc)?;
    let back = ctx.read_back(enc, &[(&a, 4 * n), (&d, 4 * n)])?;
    Ok((floats_of(&back[0]), floats_of(&back[1])))
}
