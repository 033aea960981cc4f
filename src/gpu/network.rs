//! The deep forward and backward pass on the GPU: weights generated on the
//! device (row blocks that fit one storage binding), tiled GEMMs, fused
//! element-wise steps, and per-layer statistics reduced on the device. Only
//! the statistics are read back.

use super::context::GpuContext;
use super::generate::{GenRequest, Generator, Kernel};
use super::kernels::{fold_records, GemmForm, GemmParams, NetKernels};
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::net::{self, LayerStats, NetConfig, NetStats};
use crate::tolerance::{self, Calibration};
use std::time::Instant;

/// GEMM work recorded per submission (2^36 flops, ~69 GFLOP): a typical run is
/// one submission (work and read-back together), while a command buffer of a
/// huge network is split before it can run long enough to trip a driver
/// watchdog (about 0.7 s even at 100 GFLOP/s).
pub const FLOPS_PER_SUBMIT: f64 = 68_719_476_736.0;

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

fn storage(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    if bytes > limit {
        return Err(Error::LimitExceeded {
            what: format!("{label} buffer (bytes)"),
            got: bytes,
            max: limit,
            hint: format!(" on {}; reduce the batch or width", ctx.adapter.name),
        });
    }
    ctx.scoped("allocating network buffers", || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
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
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
        .min(super::generate::DEFAULT_CHUNK_BYTES);
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

/// [`run`] with a defect injected (tests only; see [`net::Fault`]).
#[doc(hidden)]
pub fn run_with_fault(
    gen: &Generator,
    kern: &NetKernels,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    fault: &net::Fault,
    progress: Option<&crate::progress::Progress>,
) -> Result<NetStats> {
    if kern.activation() != cfg.act {
        return Err(Error::invalid(
            "network kernels",
            format!(
                "compiled for {}, but the network uses {}",
                kern.activation().name(),
                cfg.act.name()
            ),
        ));
    }
    let ctx = gen.context();
    let start = Instant::now();
    let stds = cfg.validate()?;
    let depth = cfg.depth();
    let b = cfg.batch;
    let w = &cfg.widths;
    let max_w = *w.iter().max().unwrap_or(&1);
    let sat = cfg.act.saturation();

    // Record layout: input, then per layer z, a, delta.
    let recs_of = |n: u64| NetKernels::records(n);
    let mut rec = vec![[0u64; 3]; depth + 1];
    let mut total = recs_of(b * w[0]);
    for l in 1..=depth {
        let r = recs_of(b * w[l]);
        rec[l] = [total, total + r, total + 2 * r];
        total += 3 * r;
    }
    // Then per layer the statistics of z_l's column sums (sum over the batch).
    let mut rec_cols = vec![0u64; depth + 1];
    for l in 1..=depth {
        rec_cols[l] = total;
        total += recs_of(w[l]);
    }
    let gram_elems = b * b;
    // The Gram matrices of every layer share one binding: its size bounds the depth.
    let binding = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let gram_bytes = 4 * gram_elems * (2 * depth as u64 + 1);
    if gram_bytes > binding {
        let max_depth = (binding / (4 * gram_elems)).saturating_sub(1) / 2;
        return Err(Error::LimitExceeded {
            what: "the per-layer Gram matrices (bytes)".into(),
            got: gram_bytes,
            max: binding,
            hint: format!(
                " on {}; reduce the depth (at most {max_depth} at batch {b}) or the batch",
                ctx.adapter.name
            ),
        });
    }
    let max_rows = (1..=depth)
        .map(|l| weight_rows(ctx, w[l - 1], w[l]))
        .collect::<Result<Vec<_>>>()?;
    let w_elems = (1..=depth)
        .map(|l| max_rows[l - 1] * w[l - 1])
        .max()
        .unwrap_or(1);
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
        grams: storage(
            ctx,
            "Gram matrices",
            4 * gram_elems * (2 * depth as u64 + 1),
        )?,
    };

    let gemm_gram = |enc: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, n: u64, slot: u64| {
        let p = GemmParams {
            m: b as u32,
            n: b as u32,
            k: n as u32,
            lda: n as u32,
            ldb: n as u32,
            ldc: b as u32,
            c_off: (slot * gram_elems) as u32,
            ..Default::default()
        };
        kern.gemm(enc, GemmForm::Nt, &p, x, x, &bufs.grams)
    };
    let weight_block = |enc: &mut wgpu::CommandEncoder, l: usize, r0: u64, rows: u64| {
        let req = GenRequest {
            kernel: Kernel::Dist(cfg.dist),
            seed: cfg.seed,
            tensor_id: l as u32,
            start: r0 * w[l - 1],
            count: rows * w[l - 1],
            scale: cfg.dist.kernel_scale(stds[l - 1] * fault.weight_factor(l)),
        };
        gen.encode_into(enc, &req, &bufs.w)
    };
    // Row blocks (first row, rows) of W_l that fit the block buffer.
    let blocks = |l: usize| {
        let (rows, n_out) = (max_rows[l - 1], w[l]);
        (0..n_out.div_ceil(rows)).map(move |i| (i * rows, rows.min(n_out - i * rows)))
    };
    let new_encoder = || {
        ctx.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("network"),
            })
    };

    // Progress: with a reporter, each submission is waited for, so the
    // fraction of the pass's flops done is known (a small pass is one
    // submission and is not slowed).
    let total_flops: f64 = (1..=depth)
        .map(|l| 4.0 * (b * w[l - 1] * (w[l] + b)) as f64)
        .sum();
    let mut done_flops = 0.0f64;
    let mut submit = |enc: wgpu::CommandEncoder, flops: f64| -> Result<()> {
        let index = ctx.queue.submit([enc.finish()]);
        done_flops += flops;
        if let Some(p) = progress {
            ctx.wait_for(index, "running the network")?;
            p.update(done_flops, total_flops);
        }
        Ok(())
    };
    // Input. Everything below is recorded into as few submissions as possible.
    ctx.queue
        .write_buffer(&bufs.ones, 0, bytemuck::cast_slice(&vec![1f32; b as usize]));
    let mut enc = new_encoder();
    let mut pending = 0.0f64;
    match input {
        Some(x) => {
            if x.len() as u64 != b * w[0] {
                return Err(Error::invalid(
                    "input",
                    format!("{} values, but batch x width = {}", x.len(), b * w[0]),
                ));
            }
            ctx.queue
                .write_buffer(&bufs.act[0], 0, bytemuck::cast_slice(x));
        }
        None => {
            let req = GenRequest {
                kernel: Kernel::Dist(Dist::Normal),
                seed: cfg.seed,
                tensor_id: net::INPUT_TENSOR,
                start: 0,
                count: b * w[0],
                scale: Dist::Normal.kernel_scale(1.0),
            };
            gen.encode_into(&mut enc, &req, &bufs.act[0])?;
        }
    }
    kern.reduce(&mut enc, &bufs.act[0], b * w[0], 0, None, &bufs.recs)?;

    // Forward.
    for l in 1..=depth {
        let (n_in, n_out) = (w[l - 1], w[l]);
        let a_prev = &bufs.act[(l - 1) % 2];
        let a_next = &bufs.act[l % 2];
        gemm_gram(&mut enc, a_prev, n_in, 2 * (l as u64 - 1))?;
        for (r0, r) in blocks(l) {
            weight_block(&mut enc, l, r0, r)?;
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
            kern.gemm(&mut enc, GemmForm::Nt, &p, a_prev, &bufs.w, &bufs.z[l - 1])?;
        }
        if let Some((rows, cols)) = fault.tile(l, b, n_out) {
            for row in 0..rows {
                enc.clear_buffer(&bufs.z[l - 1], 4 * row * n_out, Some(4 * cols));
            }
        }
        let has_bias = cfg.bias_std > 0.0;
        if has_bias {
            let req = GenRequest {
                kernel: Kernel::Dist(Dist::Normal),
                seed: cfg.seed,
                tensor_id: net::BIAS_TENSOR | l as u32,
                start: 0,
                count: n_out,
                scale: Dist::Normal.kernel_scale(cfg.bias_std),
            };
            gen.encode_into(&mut enc, &req, &bufs.bias)?;
        }
        kern.bias_act(
            &mut enc,
            b * n_out,
            n_out,
            has_bias,
            &bufs.bias,
            &bufs.z[l - 1],
            a_next,
        )?;
        kern.reduce(
            &mut enc,
            &bufs.z[l - 1],
            b * n_out,
            rec[l][0],
            None,
            &bufs.recs,
        )?;
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
        kern.gemm(
            &mut enc,
            GemmForm::Nn,
            &p,
            &bufs.ones,
            &bufs.z[l - 1],
            &bufs.colsum,
        )?;
        kern.reduce(&mut enc, &bufs.colsum, n_out, rec_cols[l], None, &bufs.recs)?;
        kern.reduce(&mut enc, a_next, b * n_out, rec[l][1], sat, &bufs.recs)?;
        kern.dead(&mut enc, a_next, b, n_out, l as u32, &bufs.dead)?;
        pending += 2.0 * (b * n_in * (n_out + b)) as f64;
        if pending > FLOPS_PER_SUBMIT {
            submit(std::mem::replace(&mut enc, new_encoder()), pending)?;
            pending = 0.0;
        }
    }
    gemm_gram(&mut enc, &bufs.act[depth % 2], w[depth], 2 * depth as u64)?;

    // Backward: delta_L = r * act'(z_L).
    let req = GenRequest {
        kernel: Kernel::Dist(Dist::Normal),
        seed: cfg.seed,
        tensor_id: net::LOSS_TENSOR,
        start: 0,
        count: b * w[depth],
        scale: Dist::Normal.kernel_scale(1.0),
    };
    gen.encode_into(&mut enc, &req, &bufs.delta[depth % 2])?;
    for l in (1..=depth).rev() {
        let n_l = w[l];
        let d = &bufs.delta[l % 2];
        kern.grad_mul(&mut enc, b * n_l, &bufs.z[l - 1], d)?;
        kern.reduce(&mut enc, d, b * n_l, rec[l][2], None, &bufs.recs)?;
        gemm_gram(&mut enc, d, n_l, 2 * (l as u64 - 1) + 1)?;
        if l > 1 {
            // delta_{l-1} = delta_l W_l, summed over row blocks of W_l.
            let n_prev = w[l - 1];
            let out = &bufs.delta[(l - 1) % 2];
            for (r0, r) in blocks(l) {
                weight_block(&mut enc, l, r0, r)?;
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
                kern.gemm(&mut enc, GemmForm::Nn, &p, d, &bufs.w, out)?;
            }
        }
        pending += 2.0 * (b * w[l] * (w[l - 1] + b)) as f64;
        if pending > FLOPS_PER_SUBMIT {
            submit(std::mem::replace(&mut enc, new_encoder()), pending)?;
            pending = 0.0;
        }
    }

    // Read back only the statistics, in the same submission as the last work.
    let grams_words = gram_elems * (2 * depth as u64 + 1);
    let back = ctx.read_back(
        enc,
        &[
            (&bufs.recs, 4 * net_words(total)),
            (&bufs.dead, 4 * (depth as u64 + 1)),
            (&bufs.grams, 4 * grams_words),
        ],
    )?;
    let to_words = |b: &[u8]| -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let recs = to_words(&back[0]);
    let dead = to_words(&back[1]);
    let grams: Vec<f32> = to_words(&back[2]).into_iter().map(f32::from_bits).collect();
    let g = |slot: u64| &grams[(slot * gram_elems) as usize..((slot + 1) * gram_elems) as usize];
    let mut layers = Vec::with_capacity(depth);
    for l in 1..=depth {
        let n = b * w[l];
        let r = recs_of(n);
        let (grad_w_norm, input_concentration, grad_w_coherence) =
            net::gram_summary(g(2 * (l as u64 - 1) + 1), g(2 * (l as u64 - 1)), b as usize);
        let cols = fold_records(&recs, rec_cols[l], recs_of(w[l]))?;
        layers.push(LayerStats {
            layer: l,
            pre: fold_records(&recs, rec[l][0], r)?,
            post: fold_records(&recs, rec[l][1], r)?,
            dead_frac: f64::from(dead[l]) / w[l] as f64,
            grad: fold_records(&recs, rec[l][2], r)?,
            grad_w_norm,
            input_concentration,
            input_centred_mean_sq: net::centred_mean_sq(
                g(2 * (l as u64 - 1)),
                b as usize,
                w[l - 1],
            ),
            pre_unit_mean_sq: cols.mean_sq / (b * b) as f64,
            grad_w_coherence,
        });
    }
    Ok(NetStats {
        input: fold_records(&recs, 0, recs_of(b * w[0]))?,
        layers,
        final_gram: g(2 * depth as u64).iter().map(|&v| f64::from(v)).collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn net_words(records: u64) -> u64 {
    records * super::kernels::RECORD_WORDS
}

/// Elements of each tensor sampled by [`calibrate`].
pub const CALIBRATION_SAMPLES: u64 = 1 << 16;

/// Measures how far this device's f32 builtins put the network's tensors from
/// the CPU reference's: the first [`CALIBRATION_SAMPLES`] weights of layer 1
/// and inputs (generated exactly as the run generates them), and the
/// activation on [`tolerance::activation_grid`]. Feeds [`tolerance::network`].
pub fn calibrate(
    gen: &Generator,
    kern: &NetKernels,
    cfg: &NetConfig,
    inputs_from_rng: bool,
) -> Result<Calibration> {
    let ctx = gen.context();
    let stds = cfg.validate()?;
    let opts = super::GenOptions::default();
    let sample = |dist: Dist, tensor: u32, count: u64, std: f64| -> Result<(f64, f64)> {
        let scale = dist.kernel_scale(std);
        let req = GenRequest {
            kernel: Kernel::Dist(dist),
            seed: cfg.seed,
            tensor_id: tensor,
            start: 0,
            count,
            scale,
        };
        let got = gen.generate_f32(&req, &opts)?;
        let mut want = crate::cpu::host_vec::<f32>(count)?;
        crate::cpu::fill(dist, scale, cfg.seed, tensor, 0, &mut want);
        Ok(Calibration::summarise(&got, &want))
    };
    let n_w = (cfg.widths[1] * cfg.widths[0]).min(CALIBRATION_SAMPLES);
    let (weight_rms, weight_bias) = sample(cfg.dist, 1, n_w, stds[0])?;
    let (input_rms, input_bias) = if inputs_from_rng {
        let n_x = (cfg.batch * cfg.widths[0]).min(CALIBRATION_SAMPLES);
        sample(Dist::Normal, net::INPUT_TENSOR, n_x, 1.0)?
    } else {
        (0.0, 0.0)
    };
    let (act_rel, dact_rel) = if cfg.act.transcendental() {
        let grid = tolerance::activation_grid();
        let n = grid.len() as u64;
        let z = storage(ctx, "calibration input", 4 * n)?;
        let a = storage(ctx, "calibration output", 4 * n)?;
        let d = storage(ctx, "calibration gradient", 4 * n)?;
        let bias = storage(ctx, "calibration bias", 4)?;
        ctx.queue.write_buffer(&z, 0, bytemuck::cast_slice(&grid));
        ctx.queue
            .write_buffer(&d, 0, bytemuck::cast_slice(&vec![1f32; grid.len()]));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("activation calibration"),
            });
        kern.bias_act(&mut enc, n, n, false, &bias, &z, &a)?;
        // delta = 1 times phi'(z): the device's phi' on the grid.
        kern.grad_mul(&mut enc, n, &z, &d)?;
        let back = ctx.read_back(enc, &[(&a, 4 * n), (&d, 4 * n)])?;
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let act = cfg.act;
        (
            tolerance::grid_error(&grid, &floats(&back[0]), |x| act.f32(x)),
            tolerance::grid_error(&grid, &floats(&back[1]), |x| act.df32(x)),
        )
    } else {
        (0.0, 0.0)
    };
    Ok(Calibration {
        weight_rms,
        weight_bias,
        input_rms,
        input_bias,
        act_rel,
        dact_rel,
    })
}
