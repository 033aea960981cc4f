//! The transformer pass on a GPU: the small tensors and the embedding tables
//! uploaded once (each in row chunks that fit one storage binding), each
//! block's weight matrices drawn on the device by its generator when the
//! block runs (and again for its backward step) into one block's worth of
//! buffers, every activation kept on the device, one submission per block,
//! and only the raw statistics read back.

use super::{
    att_words, BlockNames, Linear, MlpKind, Model, NormKind, PassLayout, RawTfm, Tokens, K_PIECE,
};
use crate::act::Activation;
use crate::backend::Gpu;
use crate::error::{Error, Result};
use crate::gpu::gemm::GemmForm;
use crate::gpu::launch::{Batch, Launch};
use crate::gpu::layout::{GemmParams, TfParams};
use crate::gpu::GpuContext;
use crate::model::spec::Layout;
use crate::net::device::storage;
use std::collections::HashMap;

/// The transformer kernels of one device.
struct Kernels {
    embed: wgpu::ComputePipeline,
    norm: wgpu::ComputePipeline,
    norm_var: wgpu::ComputePipeline,
    add_bias: wgpu::ComputePipeline,
    residual: wgpu::ComputePipeline,
    gelu_to: wgpu::ComputePipeline,
    swiglu_to: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    att_softmax: wgpu::ComputePipeline,
    lm_loss: wgpu::ComputePipeline,
    copy: wgpu::ComputePipeline,
    hadamard: wgpu::ComputePipeline,
    same_key: wgpu::ComputePipeline,
    dlogits: wgpu::ComputePipeline,
    norm_bwd: wgpu::ComputePipeline,
    swiglu_bwd: wgpu::ComputePipeline,
    att_dot: wgpu::ComputePipeline,
    att_tile: wgpu::ComputePipeline,
    tied_gather: wgpu::ComputePipeline,
    group_sum: wgpu::ComputePipeline,
}

impl Kernels {
    /// The kernels, GELU's `gelu_to` in the form `gelu`.
    fn new(ctx: &GpuContext, gelu: Activation) -> Result<Kernels> {
        let m = crate::gpu::shaders::transformer_module();
        let consts = [
            ("ACT", f64::from(crate::gpu::layout::activation_id(gelu))),
            ("SLOPE", 0.01),
        ];
        let p = |entry| ctx.compute_pipeline(&m, entry, &consts);
        Ok(Kernels {
            embed: p("embed")?,
            norm: p("norm")?,
            norm_var: p("norm_var")?,
            add_bias: p("add_bias")?,
            residual: p("residual")?,
            gelu_to: p("gelu_to")?,
            swiglu_to: p("swiglu_to")?,
            rope: p("rope")?,
            att_softmax: p("att_softmax")?,
            lm_loss: p("lm_loss")?,
            copy: p("copy")?,
            hadamard: p("hadamard")?,
            same_key: p("same_key")?,
            dlogits: p("dlogits")?,
            norm_bwd: p("norm_bwd")?,
            swiglu_bwd: p("swiglu_bwd")?,
            att_dot: p("att_dot")?,
            att_tile: p("att_tile")?,
            tied_gather: p("tied_gather")?,
            group_sum: p("group_sum")?,
        })
    }
}

/// A tensor on the device: row chunks `(first row, rows, buffer)`.
struct Uploaded {
    chunks: Vec<(u64, u64, wgpu::Buffer)>,
}

/// Uploads `values` (rows of `width`) in chunks of at most `limit` bytes.
fn upload(
    ctx: &GpuContext,
    name: &str,
    values: &[f32],
    width: u64,
    limit: u64,
) -> Result<Uploaded> {
    let width = width.max(1);
    let rows = values.len() as u64 / width;
    let per = (limit / (4 * width)).max(1);
    if 4 * width > limit {
        return Err(Error::LimitExceeded {
            what: format!("one row of tensor '{name}' (bytes)"),
            got: 4 * width,
            max: limit,
            hint: String::new(),
        });
    }
    let mut chunks = Vec::new();
    for r0 in (0..rows.max(1)).step_by(per as usize) {
        let nr = per.min(rows.max(1) - r0);
        let lo = ((r0 * width) as usize).min(values.len());
        let hi = (((r0 + nr) * width) as usize).min(values.len());
        let buf = ctx.scoped("uploading weights", || {
            ctx.storage_from(name, &values[lo..hi])
        })?;
        chunks.push((r0, nr, buf));
    }
    Ok(Uploaded { chunks })
}

/// The pass's device state.
struct Pass<'a> {
    gpu: &'a Gpu,
    k: Kernels,
    m: &'a Model,
    /// The resident tensors (embeddings, norms, biases, the head).
    w: HashMap<String, Uploaded>,
    /// One block's weight matrices, in [`BlockNames::linears`] order, drawn
    /// into these buffers by the device's generator when a block runs.
    slots: Vec<Uploaded>,
    /// The block whose matrices the slots hold.
    loaded: std::cell::Cell<Option<usize>>,
    /// Bytes of one chunk of a tensor (a storage binding, and one
    /// generation request).
    limit: u64,
    dummy: wgpu::Buffer,
    /// A row of ones: the norm kernel with it as weight and no bias gives
    /// the normalized input itself.
    ones: wgpu::Buffer,
    /// Launches after which attention's tile loop submits what it has
    /// ([`FLUSH_LAUNCHES`]; 1 in [`run_chunked`], which exercises it).
    flush: usize,
}

fn ew_groups(ctx: &GpuContext, n: u64) -> Result<(u32, u32)> {
    ctx.dispatch_2d(n.div_ceil(u64::from(crate::gpu::layout::EW_WORKGROUP)))
}

impl Pass<'_> {
    fn ctx(&self) -> &GpuContext {
        self.gpu.context()
    }

    fn push(
        batch: &mut Batch,
        pipe: &wgpu::ComputePipeline,
        p: &TfParams,
        bufs: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) {
        batch.push(Launch {
            pipeline: pipe.clone(),
            layout: None,
            params: bytemuck::bytes_of(p).to_vec(),
            buffers: bufs.iter().map(|&b| b.into()).collect(),
            groups,
        });
    }

    fn tensor(&self, name: &str) -> Result<&Uploaded> {
        let name = self.m.weights.tied.get(name).map_or(name, String::as_str);
        if let Some(t) = self.w.get(name) {
            return Ok(t);
        }
        self.loaded
            .get()
            .and_then(|i| {
                self.m.names.blocks[i]
                    .linears()
                    .position(|l| l.weight == name)
            })
            .and_then(|p| self.slots.get(p))
            .ok_or_else(|| {
                Error::internal("transformer pass", format!("'{name}' is not on the device"))
            })
    }

    /// Draws block `i`'s weight matrices into the slots with the device's
    /// generator (the bits the CPU's integer program gives).
    fn load_block(&self, batch: &mut Batch, i: usize) -> Result<()> {
        let gen = self.gpu.generator();
        for (lin, slot) in self.m.names.blocks[i].linears().zip(&self.slots) {
            if self.m.weights.resident(&lin.weight) {
                continue;
            }
            let source = self.m.weights.source(&lin.weight).ok_or_else(|| {
                Error::internal(
                    "transformer pass",
                    format!("no source for '{}'", lin.weight),
                )
            })?;
            let width = lin.n_in * lin.n_out / weight_rows(self.m, &lin.weight);
            for (r0, nr, buf) in &slot.chunks {
                let count = nr * width;
                match source {
                    super::Source::Const(v) => {
                        let bytes: Vec<u8> = (0..count).flat_map(|_| v.to_le_bytes()).collect();
                        batch.write(buf, 0, &bytes);
                    }
                    super::Source::Draw {
                        dist,
                        scale,
                        seed,
                        tensor_id,
                        zero_rows,
                    } => {
                        let kernel = crate::gpu::Kernel::Dist(*dist);
                        let opts = self
                            .gpu
                            .gemm()
                            .generation_for(gen, kernel, count)?
                            .apply(crate::gpu::GenOptions::default());
                        let req = crate::gpu::GenRequest {
                            kernel,
                            seed: *seed,
                            tensor_id: *tensor_id,
                            start: r0 * width,
                            count,
                            scale: *scale,
                        };
                        gen.encode_into(batch, &req, buf, &opts)?;
                        for &z in zero_rows.iter().filter(|&&z| z >= *r0 && z < r0 + nr) {
                            batch.clear(buf, 4 * (z - r0) * width, Some(4 * width));
                        }
                    }
                }
            }
        }
        self.loaded.set(Some(i));
        Ok(())
    }

    fn single(&self, name: &str) -> Result<&wgpu::Buffer> {
        let t = self.tensor(name)?;
        match &t.chunks[..] {
            [(_, _, b)] => Ok(b),
            _ => Err(Error::LimitExceeded {
                what: format!("tensor '{name}' (bytes; it must fit one storage binding)"),
                got: 4 * self.m.weights.shape(name).map_or(0, |s| s.iter().product()),
                max: self.limit,
                hint: String::new(),
            }),
        }
    }

    /// `out[:, col .. col + n_out] = x W^T (or x W)`, rows of `ldc`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        batch: &mut Batch,
        l: &Linear,
        x: &wgpu::Buffer,
        rows: u64,
        out: &wgpu::Buffer,
        ldc: u64,
        col: u64,
    ) -> Result<()> {
        let t = self.tensor(&l.weight)?;
        let (k, n) = (l.n_in as u32, l.n_out as u32);
        match self.m.weights.layout(&l.weight) {
            Layout::OutIn => {
                for (r0, nr, buf) in &t.chunks {
                    let p = GemmParams {
                        m: rows as u32,
                        n: *nr as u32,
                        k,
                        lda: k,
                        ldb: k,
                        ldc: ldc as u32,
                        c_off: (col + r0) as u32,
                        ..GemmParams::default()
                    };
                    self.record_split(batch, GemmForm::Nt, p, x, buf, out)?;
                }
            }
            Layout::InOut => {
                let p = GemmParams {
                    m: rows as u32,
                    n,
                    k,
                    lda: k,
                    ldb: n,
                    ldc: ldc as u32,
                    c_off: col as u32,
                    ..GemmParams::default()
                };
                let w = self.single(&l.weight)?;
                self.record_split(batch, GemmForm::Nn, p, x, w, out)?;
            }
        }
        Ok(())
    }

    fn add_bias(
        &self,
        batch: &mut Batch,
        y: &wgpu::Buffer,
        rows: u64,
        b: &wgpu::Buffer,
        width: u64,
    ) -> Result<()> {
        let p = TfParams {
            rows: rows as u32,
            width: width as u32,
            ..TfParams::default()
        };
        Self::push(
            batch,
            &self.k.add_bias,
            &p,
            &[y, b],
            ew_groups(self.ctx(), rows * width)?,
        );
        Ok(())
    }

    /// A whole linear map with its bias, into a dense `rows x n_out` buffer.
    fn linear(
        &self,
        batch: &mut Batch,
        l: &Linear,
        x: &wgpu::Buffer,
        rows: u64,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        self.gemm(batch, l, x, rows, out, l.n_out, 0)?;
        if let Some(b) = &l.bias {
            self.add_bias(batch, out, rows, self.single(b)?, l.n_out)?;
        }
        Ok(())
    }

    fn norm(
        &self,
        batch: &mut Batch,
        (w, b): &(String, Option<String>),
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: u64,
    ) -> Result<()> {
        let mut flags = 0;
        if self.m.cfg.norm == NormKind::Rms {
            flags |= 1;
        }
        let bias = match b {
            Some(b) => {
                flags |= 2;
                self.single(b)?
            }
            None => &self.dummy,
        };
        let p = self.norm_params(rows, flags);
        Self::push(
            batch,
            &self.k.norm,
            &p,
            &[x, out, self.single(w)?, bias],
            self.ctx().dispatch_2d(rows)?,
        );
        Ok(())
    }

    /// The variances of `x`'s rows as the norm sees them into
    /// `out[first..first + rows]`.
    fn norm_var(
        &self,
        batch: &mut Batch,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        (first, rows): (u64, u64),
    ) -> Result<()> {
        let flags = u32::from(self.m.cfg.norm == NormKind::Rms);
        let p = TfParams {
            lo: first as u32,
            ..self.norm_params(rows, flags)
        };
        Self::push(
            batch,
            &self.k.norm_var,
            &p,
            &[x, out],
            self.ctx().dispatch_2d(rows)?,
        );
        Ok(())
    }

    fn ew(
        &self,
        batch: &mut Batch,
        pipe: &wgpu::ComputePipeline,
        bufs: &[&wgpu::Buffer],
        n: u64,
    ) -> Result<()> {
        let p = TfParams {
            rows: 1,
            width: n as u32,
            ..TfParams::default()
        };
        Self::push(batch, pipe, &p, bufs, ew_groups(self.ctx(), n)?);
        Ok(())
    }
}

/// Every activation buffer of a pass (allocated once, reused by each block).
struct Bufs {
    x: wgpu::Buffer,
    hn: wgpu::Buffer,
    qkv: wgpu::Buffer,
    att: wgpu::Buffer,
    br: wgpu::Buffer,
    /// MLP pre-activations: GPT-2's c_fc output, Llama's gate.
    z: wgpu::Buffer,
    /// Llama's up projection.
    u: wgpu::Buffer,
    /// The MLP's activation output (the output projection's input).
    f: wgpu::Buffer,
    att_rows: wgpu::Buffer,
    /// Attention tiles ([`super::tile_heads`] x span x span): the scores and
    /// probabilities; with the backward pass also dP / dS and the two
    /// transposed.
    tiles: Vec<wgpu::Buffer>,
    loss_rows: wgpu::Buffer,
    /// Each norm's input rows' variances ([`super::norm_var_words`]).
    norm_vars: wgpu::Buffer,
    recs: wgpu::Buffer,
    tok: wgpu::Buffer,
    cos: wgpu::Buffer,
    sin: wgpu::Buffer,
    /// The sine table negated: the rotation's transpose (the backward pass).
    sin_neg: wgpu::Buffer,
}

/// The backward pass's buffers.
struct Grads {
    /// dL/d(stream).
    dx: wgpu::Buffer,
    /// dL/d(norm output).
    dh: wgpu::Buffer,
    /// dL/d(MLP activation output), then d(pre-activation) (gate for Llama).
    df: wgpu::Buffer,
    /// dL/d(up) (Llama).
    du: wgpu::Buffer,
    /// dL/d(attention output).
    d_o: wgpu::Buffer,
    /// dO . O per (row, head).
    dd: wgpu::Buffer,
    /// dL/d(q|k|v).
    dqkv: wgpu::Buffer,
    /// Per-head parts of dk and dv.
    dkp: wgpu::Buffer,
    dvp: wgpu::Buffer,
    /// Gram matrices (rows x rows).
    g1: wgpu::Buffer,
    g2: wgpu::Buffer,
    /// The stream entering each block, and after its attention addition;
    /// post-norm, each block's two sums before their norms.
    saved: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// The embeddings' sum before their norm (BERT).
    emb_sum: Option<wgpu::Buffer>,
    /// Attention row sums of a recomputed block (not read back).
    scratch: wgpu::Buffer,
    /// Each block's branch activations, kept from the forward pass where
    /// they fit [`SAVED_BYTES`] (never post-norm); empty: the backward pass
    /// recomputes them (the same operations on the same inputs: the same
    /// bits).
    acts: Vec<Acts>,
    /// A tied table's cross term: M (rows x rows, gathered from the
    /// logits' gradient block by block) and the final norm's output.
    tied: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// The most bytes of branch activations the backward pass keeps from the
/// forward pass; beyond it each block's branches are recomputed, so deep and
/// wide models need the memory of one block's activations.
const SAVED_BYTES: u64 = 1 << 30;

/// Launches after which the attention's tile loop submits what it has
/// recorded (see [`Pass::flush_long`]).
const FLUSH_LAUNCHES: usize = 4096;

/// One block's branch activations as the forward pass left them: the first
/// norm's output, q|k|v, the attention output, the second norm's output and
/// the MLP's pre-activations and activation output, each paired with the
/// working buffer of [`Bufs`] it is copied from and back to.
struct Acts {
    attn: Vec<wgpu::Buffer>,
    mlp: Vec<wgpu::Buffer>,
}

impl Acts {
    /// The working buffers of each branch and their bytes.
    fn parts<'a>(
        c: &super::TfmConfig,
        bufs: &'a Bufs,
        rows: u64,
    ) -> [Vec<(&'a wgpu::Buffer, u64)>; 2] {
        let mut mlp = vec![(&bufs.hn, c.hidden), (&bufs.z, c.inter), (&bufs.f, c.inter)];
        if c.mlp == MlpKind::SwiGlu {
            mlp.push((&bufs.u, c.inter));
        }
        let attn = vec![
            (&bufs.hn, c.hidden),
            (&bufs.qkv, c.qkv_width()),
            (&bufs.att, c.attn_width()),
        ];
        [attn, mlp].map(|v| v.into_iter().map(|(b, w)| (b, 4 * rows * w)).collect())
    }

    /// Bytes of one block's activations.
    fn bytes(c: &super::TfmConfig, bufs: &Bufs, rows: u64) -> u64 {
        Self::parts(c, bufs, rows)
            .iter()
            .flatten()
            .map(|&(_, b)| b)
            .sum()
    }

    fn new(ctx: &GpuContext, c: &super::TfmConfig, bufs: &Bufs, rows: u64) -> Result<Acts> {
        let [attn, mlp] = Self::parts(c, bufs, rows).map(|v| {
            v.into_iter()
                .map(|(_, bytes)| storage(ctx, "saved activation", bytes))
                .collect::<Result<Vec<_>>>()
        });
        Ok(Acts {
            attn: attn?,
            mlp: mlp?,
        })
    }

    /// Copies a branch's working buffers into this block's.
    fn keep(&self, batch: &mut Batch, c: &super::TfmConfig, bufs: &Bufs, rows: u64, br: Branch) {
        for ((w, bytes), s) in self.pairs(c, bufs, rows, br) {
            batch.copy(w, s, bytes);
        }
    }

    /// Copies this block's saved branch back into the working buffers.
    fn restore(&self, batch: &mut Batch, c: &super::TfmConfig, bufs: &Bufs, rows: u64, br: Branch) {
        for ((w, bytes), s) in self.pairs(c, bufs, rows, br) {
            batch.copy(s, w, bytes);
        }
    }

    fn pairs<'a>(
        &'a self,
        c: &super::TfmConfig,
        bufs: &'a Bufs,
        rows: u64,
        br: Branch,
    ) -> impl Iterator<Item = ((&'a wgpu::Buffer, u64), &'a wgpu::Buffer)> {
        let [attn, mlp] = Self::parts(c, bufs, rows);
        let (work, saved) = match br {
            Branch::Attn => (attn, &self.attn),
            Branch::Mlp => (mlp, &self.mlp),
        };
        work.into_iter().zip(saved)
    }
}

/// A block's branch.
#[derive(Clone, Copy)]
enum Branch {
    Attn,
    Mlp,
}

impl Pass<'_> {
    /// Records `C (+)= A op(B)` as products over pieces of at most
    /// [`K_PIECE`] of the inner dimension, each later piece added to C (the
    /// mirror's `chain_k` does the same).
    fn record_split(
        &self,
        batch: &mut Batch,
        form: GemmForm,
        p: GemmParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<()> {
        let piece = K_PIECE as u32;
        let mut k0 = 0;
        loop {
            let kk = piece.min(p.k - k0);
            let q = GemmParams {
                k: kk,
                a_off: p.a_off + k0,
                b_off: p.b_off
                    + match form {
                        GemmForm::Nt => k0,
                        GemmForm::Nn => k0 * p.ldb,
                    },
                accumulate: u32::from(p.accumulate != 0 || k0 > 0),
                ..p
            };
            self.gpu.gemm().record(batch, form, &q, a, b, c)?;
            k0 += kk;
            if k0 >= p.k {
                return Ok(());
            }
        }
    }

    /// `C (+)= A op(B)` with explicit strides and offsets.
    #[allow(clippy::too_many_arguments)]
    fn gemm_raw(
        &self,
        batch: &mut Batch,
        form: GemmForm,
        mnk: (u64, u64, u64),
        a: (&wgpu::Buffer, u64, u64),
        (b, ldb): (&wgpu::Buffer, u64),
        c: (&wgpu::Buffer, u64, u64),
        accumulate: bool,
    ) -> Result<()> {
        self.gemm_at(batch, form, mnk, a, (b, ldb, 0), c, accumulate)
    }

    /// [`Pass::gemm_raw`] with B read from `b_off`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_at(
        &self,
        batch: &mut Batch,
        form: GemmForm,
        (m, n, k): (u64, u64, u64),
        (a, lda, a_off): (&wgpu::Buffer, u64, u64),
        (b, ldb, b_off): (&wgpu::Buffer, u64, u64),
        (c, ldc, c_off): (&wgpu::Buffer, u64, u64),
        accumulate: bool,
    ) -> Result<()> {
        let p = GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            lda: lda as u32,
            ldb: ldb as u32,
            ldc: ldc as u32,
            a_off: a_off as u32,
            b_off: b_off as u32,
            c_off: c_off as u32,
            accumulate: u32::from(accumulate),
            ..GemmParams::default()
        };
        self.record_split(batch, form, p, a, b, c)
    }

    /// `g = A A^T` for A = columns `col .. col + width` of `a` (rows of `lda`).
    #[allow(clippy::too_many_arguments)]
    fn gram(
        &self,
        batch: &mut Batch,
        a: &wgpu::Buffer,
        lda: u64,
        col: u64,
        width: u64,
        rows: u64,
        g: &wgpu::Buffer,
    ) -> Result<()> {
        self.gram_acc(batch, (a, lda, col, width), rows, g, false)
    }

    /// [`Pass::gram`], added to `g` with `accumulate`.
    fn gram_acc(
        &self,
        batch: &mut Batch,
        (a, lda, col, width): (&wgpu::Buffer, u64, u64, u64),
        rows: u64,
        g: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let p = GemmParams {
            m: rows as u32,
            n: rows as u32,
            k: width as u32,
            lda: lda as u32,
            ldb: lda as u32,
            ldc: rows as u32,
            a_off: col as u32,
            b_off: col as u32,
            c_off: 0,
            accumulate: u32::from(accumulate),
            ..GemmParams::default()
        };
        self.record_split(batch, GemmForm::Nt, p, a, a, g)
    }

    /// `dX (+)= dY W` (or `dY W^T` for `[in, out]` weights): the gradient of
    /// a linear map's input, dY being columns `col ..` of `dy` (rows of `ld`).
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd(
        &self,
        batch: &mut Batch,
        l: &Linear,
        (dy, ld, col): (&wgpu::Buffer, u64, u64),
        rows: u64,
        dx: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let t = self.tensor(&l.weight)?;
        match self.m.weights.layout(&l.weight) {
            Layout::OutIn => {
                for (i, (r0, nr, w)) in t.chunks.iter().enumerate() {
                    self.gemm_raw(
                        batch,
                        GemmForm::Nn,
                        (rows, l.n_in, *nr),
                        (dy, ld, col + r0),
                        (w, l.n_in),
                        (dx, l.n_in, 0),
                        accumulate || i > 0,
                    )?;
                }
            }
            Layout::InOut => {
                let w = self.single(&l.weight)?;
                self.gemm_raw(
                    batch,
                    GemmForm::Nt,
                    (rows, l.n_in, l.n_out),
                    (dy, ld, col),
                    (w, l.n_out),
                    (dx, l.n_in, 0),
                    accumulate,
                )?;
            }
        }
        Ok(())
    }

    /// Parameters of the norm kernels over `rows` rows with `flags`.
    fn norm_params(&self, rows: u64, flags: u32) -> TfParams {
        let e = self.m.cfg.hidden;
        TfParams {
            rows: rows as u32,
            width: e as u32,
            heads: flags,
            inv_n: (1.0 / e as f64) as f32,
            eps: self.m.cfg.eps,
            ..TfParams::default()
        }
    }

    /// ||dL/dgamma||^2 and, where the norm has one, ||dL/dbeta||^2 into
    /// their records. beta's gradient is `dy`'s column sums, whose squared
    /// norm is the sum of dy dy^T; gamma's is the column sums of dy times
    /// the normalized input xhat (the norm kernel with unit weight and no
    /// bias: `t * 1` is `t`), the same way. `scratch` (rows x width) is
    /// overwritten.
    #[allow(clippy::too_many_arguments)]
    fn norm_grads(
        &self,
        batch: &mut Batch,
        g: &Grads,
        (weight, bias): &(String, Option<String>),
        (x, dy, scratch): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: u64,
        (layout, recs): (&PassLayout, &wgpu::Buffer),
    ) -> Result<()> {
        let e = self.m.cfg.hidden;
        let red = self.gpu.kernels(Activation::Linear)?;
        if let Some(bias) = bias {
            self.gram(batch, dy, e, 0, e, rows, &g.g2)?;
            let rec = layout.rec(&format!("db:{bias}"));
            red.reduce(batch, &g.g2, rows * rows, rec, None, recs)?;
        }
        let p = self.norm_params(rows, u32::from(self.m.cfg.norm == NormKind::Rms));
        Self::push(
            batch,
            &self.k.norm,
            &p,
            &[x, scratch, &self.ones, &self.dummy],
            self.ctx().dispatch_2d(rows)?,
        );
        self.ew(batch, &self.k.hadamard, &[scratch, dy], rows * e)?;
        self.gram(batch, scratch, e, 0, e, rows, &g.g2)?;
        let rec = layout.rec(&format!("dg:{weight}"));
        red.reduce(batch, &g.g2, rows * rows, rec, None, recs)
    }

    /// ||dL/dW_head||^2 when the logits ran in row blocks: dY dY^T summed
    /// over vocabulary column blocks of every row (the logits of a block
    /// recomputed from the final norm's output and turned into the loss's
    /// gradient with the rows' largest logit and sum the loss kept), each
    /// block as many columns as `logits` holds for every row; then, as for
    /// every weight, its element-wise product with X X^T, summed.
    #[allow(clippy::too_many_arguments)]
    fn head_grad_by_columns(
        &self,
        batch: &mut Batch,
        g: &Grads,
        bufs: &Bufs,
        logits: &wgpu::Buffer,
        head: &str,
        tokens: &Tokens,
        layout: &PassLayout,
    ) -> Result<()> {
        let c = &self.m.cfg;
        let (rows, e) = (tokens.rows(), c.hidden);
        let per = (layout.logit_rows * c.vocab / rows).max(1);
        let targets = tokens.batch * (tokens.seq - c.loss_shift());
        let mut first = true;
        for (v0, nv, chunk) in &self.tensor(head)?.chunks {
            let (v0, nv) = (*v0, *nv);
            let mut c0 = 0;
            while c0 < nv {
                let nc = per.min(nv - c0);
                self.gemm_at(
                    batch,
                    GemmForm::Nt,
                    (rows, nc, e),
                    (&bufs.hn, e, 0),
                    (chunk, e, c0 * e),
                    (logits, nc, 0),
                    false,
                )?;
                let p = TfParams {
                    rows: rows as u32,
                    row0: 0,
                    width: nc as u32,
                    seq: tokens.seq as u32,
                    lo: (v0 + c0) as u32,
                    hi: c.loss_shift() as u32,
                    inv_n: (1.0 / targets.max(1) as f64) as f32,
                    ..TfParams::default()
                };
                Self::push(
                    batch,
                    &self.k.dlogits,
                    &p,
                    &[logits, &bufs.loss_rows, &bufs.tok],
                    ew_groups(self.ctx(), rows * nc)?,
                );
                self.gram_acc(batch, (logits, nc, 0, nc), rows, &g.g2, !first)?;
                first = false;
                c0 += nc;
            }
        }
        let rec = layout.rec("dW:head");
        self.gram_product(batch, g, (&bufs.hn, e, 0, e), rows, (rec, &bufs.recs))?;
        // The head's bias: the sum of the same dY dY^T, which the product
        // left.
        match super::head_bias_rec(self.m, layout) {
            Some(b) => self.gpu.kernels(Activation::Linear)?.reduce(
                batch,
                &g.g2,
                rows * rows,
                b,
                None,
                &bufs.recs,
            ),
            None => Ok(()),
        }
    }

    /// ||dL/dE||^2 of the token (and position, token-type) embedding
    /// tables' lookups:
    /// a table's gradient row for a key is the sum of the stream gradient's
    /// rows with that key, so its squared norm is the sum of dx dx^T over
    /// the pairs of rows that share the key.
    fn embedding_grads(
        &self,
        batch: &mut Batch,
        g: &Grads,
        bufs: &Bufs,
        tokens: &Tokens,
        layout: &PassLayout,
    ) -> Result<()> {
        let (rows, e) = (tokens.rows(), self.m.cfg.hidden);
        let red = self.gpu.kernels(Activation::Linear)?;
        self.gram(batch, &g.dx, e, 0, e, rows, &g.g2)?;
        let groups = ew_groups(self.ctx(), rows * rows)?;
        let p = |heads| TfParams {
            rows: rows as u32,
            seq: tokens.seq as u32,
            heads,
            hi: self.m.cfg.pad_word(),
            ..TfParams::default()
        };
        let names = &self.m.names;
        // Every token is of type 0: that row's gradient is the sum of all
        // of dx's rows, whose squared norm is the sum of dx dx^T.
        if let Some(t) = &names.types {
            let rec = layout.rec(&format!("dE:{t}"));
            red.reduce(batch, &g.g2, rows * rows, rec, None, &bufs.recs)?;
        }
        if let Some(pos) = &names.pos {
            self.ew(batch, &self.k.copy, &[&g.g2, &g.g1], rows * rows)?;
            Self::push(batch, &self.k.same_key, &p(1), &[&g.g1, &bufs.tok], groups);
            let rec = layout.rec(&format!("dE:{pos}"));
            red.reduce(batch, &g.g1, rows * rows, rec, None, &bufs.recs)?;
        }
        Self::push(batch, &self.k.same_key, &p(0), &[&g.g2, &bufs.tok], groups);
        let rec = layout.rec(&format!("dE:{}", names.tok));
        red.reduce(batch, &g.g2, rows * rows, rec, None, &bufs.recs)
    }

    /// Back through a norm into `out` (written): its parameters' gradient
    /// norms ([`Pass::norm_grads`], `scratch` overwritten), then
    /// `out = norm'(x)^T dy`.
    #[allow(clippy::too_many_arguments)]
    fn norm_through(
        &self,
        batch: &mut Batch,
        g: &Grads,
        ln: &(String, Option<String>),
        (x, dy, out, scratch): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: u64,
        (layout, recs): (&PassLayout, &wgpu::Buffer),
    ) -> Result<()> {
        self.norm_grads(batch, g, ln, (x, dy, scratch), rows, (layout, recs))?;
        // norm_bwd adds.
        batch.clear(out, 0, None);
        self.norm_bwd(batch, ln, (x, dy, out), rows)
    }

    /// `dx += norm'(x)^T dy` for a block norm.
    fn norm_bwd(
        &self,
        batch: &mut Batch,
        (w, _): &(String, Option<String>),
        (x, dy, dx): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: u64,
    ) -> Result<()> {
        let p = self.norm_params(rows, u32::from(self.m.cfg.norm == NormKind::Rms));
        Self::push(
            batch,
            &self.k.norm_bwd,
            &p,
            &[x, dy, self.single(w)?, dx],
            self.ctx().dispatch_2d(rows)?,
        );
        Ok(())
    }

    /// Parameters of the attention kernels for `tokens`.
    fn att_params(&self, tokens: &Tokens, hi: u64) -> TfParams {
        let c = &self.m.cfg;
        let (h, kvh, hd) = (c.heads, c.kv_heads, c.head_dim);
        TfParams {
            rows: tokens.rows() as u32,
            seq: tokens.seq as u32,
            heads: h as u32,
            kv_heads: kvh as u32,
            head_dim: hd as u32,
            ld: c.qkv_width() as u32,
            q_col: 0,
            k_col: (h * hd) as u32,
            v_col: ((h + kvh) * hd) as u32,
            lo: c.att_window() as u32,
            hi: hi as u32,
            inv_n: c.score_scale,
            ..TfParams::default()
        }
    }

    /// The rotary embedding on the q and k columns of `buf` with the sine
    /// table `sin` (`bufs.sin`; `bufs.sin_neg` for the backward pass).
    fn rope(
        &self,
        batch: &mut Batch,
        bufs: &Bufs,
        sin: &wgpu::Buffer,
        buf: &wgpu::Buffer,
        tokens: &Tokens,
    ) -> Result<()> {
        let c = &self.m.cfg;
        if c.inv_freq.is_empty() {
            return Ok(());
        }
        let (h, kvh, hd) = (c.heads, c.kv_heads, c.head_dim);
        for (heads, q_col) in [(h, 0), (kvh, h * hd)] {
            let p = TfParams {
                rows: tokens.rows() as u32,
                seq: tokens.seq as u32,
                heads: heads as u32,
                head_dim: hd as u32,
                ld: c.qkv_width() as u32,
                q_col: q_col as u32,
                ..TfParams::default()
            };
            Self::push(
                batch,
                &self.k.rope,
                &p,
                &[buf, &bufs.cos, sin],
                ew_groups(self.ctx(), tokens.rows() * heads * (hd / 2))?,
            );
        }
        Ok(())
    }

    /// The attention branch from the stream `x`: hn = norm1(x), then
    /// [`Pass::attn_core`] on hn.
    fn attn_branch(
        &self,
        batch: &mut Batch,
        b: &BlockNames,
        bufs: &Bufs,
        x: &wgpu::Buffer,
        sums: (&wgpu::Buffer, u64),
        tokens: &Tokens,
    ) -> Result<()> {
        self.norm(batch, &b.ln1, x, &bufs.hn, tokens.rows())?;
        self.attn_core(batch, b, bufs, &bufs.hn, sums, tokens)
    }

    /// Attention on `input`: q|k|v, the rotary embedding, attention (row
    /// sums into `sums` from word `hi`), and the output projection into `br`.
    fn attn_core(
        &self,
        batch: &mut Batch,
        b: &BlockNames,
        bufs: &Bufs,
        input: &wgpu::Buffer,
        (sums, hi): (&wgpu::Buffer, u64),
        tokens: &Tokens,
    ) -> Result<()> {
        let c = &self.m.cfg;
        let rows = tokens.rows();
        let ld = c.qkv_width();
        let mut col = 0;
        for p in &b.qkv {
            self.gemm(batch, p, input, rows, &bufs.qkv, ld, col)?;
            col += p.n_out;
        }
        qkv_bias(self, batch, &b.qkv, &bufs.qkv, rows, ld)?;
        self.rope(batch, bufs, &bufs.sin, &bufs.qkv, tokens)?;
        self.attention(batch, bufs, (sums, hi), tokens)?;
        self.linear(batch, &b.o, &bufs.att, rows, &bufs.br)
    }

    /// The attention tiles of `tokens` (see [`super::tiles`]) by head
    /// groups ([`super::tile_heads`]): `(first row, rows, first head,
    /// heads)`.
    fn tiles(&self, tokens: &Tokens) -> impl Iterator<Item = (u64, u64, u64, u64)> {
        let h = self.m.cfg.heads;
        let hg = super::tile_heads(&self.m.cfg, super::tile_span(tokens));
        super::tiles(tokens).flat_map(move |(row0, span)| {
            (0..h)
                .step_by(hg as usize)
                .map(move |h0| (row0, span, h0, hg.min(h - h0)))
        })
    }

    /// The raw scores Q K^T of query head `hh` over the tile's rows into
    /// slot `i` of `tile` (each the ascending-d chain).
    fn scores(
        &self,
        batch: &mut Batch,
        qkv: &wgpu::Buffer,
        (row0, span): (u64, u64),
        (i, hh): (u64, u64),
        tile: &wgpu::Buffer,
    ) -> Result<()> {
        let c = &self.m.cfg;
        let (hd, ld) = (c.head_dim, c.qkv_width());
        self.gemm_at(
            batch,
            GemmForm::Nt,
            (span, span, hd),
            (qkv, ld, row0 * ld + hh * hd),
            (qkv, ld, row0 * ld + c.heads * hd + c.kv_head(hh) * hd),
            (tile, span, i * span * span),
            false,
        )
    }

    /// Submits what `batch` holds once it is long: many short sequences make
    /// many tiles, and the host's launch records stay bounded.
    fn flush_long(&self, batch: &mut Batch) -> Result<()> {
        if batch.len() >= self.flush {
            std::mem::take(batch).submit(self.ctx())?;
        }
        Ok(())
    }

    /// Attention (causal, or BERT's bidirectional) from `bufs.qkv` into
    /// `bufs.att`, tile by tile: the
    /// raw scores Q K^T of each head into the tile buffer, the softmax in
    /// place (row sums into `sums` from word `hi`), and O = P V.
    fn attention(
        &self,
        batch: &mut Batch,
        bufs: &Bufs,
        (sums, hi): (&wgpu::Buffer, u64),
        tokens: &Tokens,
    ) -> Result<()> {
        let c = &self.m.cfg;
        let (hd, ld, aw) = (c.head_dim, c.qkv_width(), c.attn_width());
        let v_col = (c.heads + c.kv_heads) * hd;
        let p = self.att_params(tokens, hi);
        let tile = &bufs.tiles[0];
        for (row0, span, h0, w) in self.tiles(tokens) {
            for (i, hh) in (h0..h0 + w).enumerate() {
                self.scores(batch, &bufs.qkv, (row0, span), (i as u64, hh), tile)?;
            }
            Self::push(
                batch,
                &self.k.att_softmax,
                &tile_params(&p, (row0, span), (h0, w)),
                &[tile, sums],
                self.ctx().dispatch_2d(w * span)?,
            );
            for (i, hh) in (h0..h0 + w).enumerate() {
                let g = c.kv_head(hh);
                self.gemm_at(
                    batch,
                    GemmForm::Nn,
                    (span, hd, span),
                    (tile, span, i as u64 * span * span),
                    (&bufs.qkv, ld, row0 * ld + v_col + g * hd),
                    (&bufs.att, aw, row0 * aw + hh * hd),
                    false,
                )?;
            }
            self.flush_long(batch)?;
        }
        Ok(())
    }

    /// The MLP branch from the stream `x`: hn = norm2(x), then
    /// [`Pass::mlp_core`] on hn.
    fn mlp_branch(
        &self,
        batch: &mut Batch,
        b: &BlockNames,
        bufs: &Bufs,
        x: &wgpu::Buffer,
        rows: u64,
    ) -> Result<()> {
        self.norm(batch, &b.ln2, x, &bufs.hn, rows)?;
        self.mlp_core(batch, b, bufs, &bufs.hn, rows)
    }

    /// The MLP on `input`: the pre-activations z (and u), the activation
    /// output f, the output projection into `br`.
    fn mlp_core(
        &self,
        batch: &mut Batch,
        b: &BlockNames,
        bufs: &Bufs,
        input: &wgpu::Buffer,
        rows: u64,
    ) -> Result<()> {
        let c = &self.m.cfg;
        self.linear(batch, &b.mlp_in[0], input, rows, &bufs.z)?;
        match c.mlp {
            MlpKind::Gelu => {
                self.ew(batch, &self.k.gelu_to, &[&bufs.z, &bufs.f], rows * c.inter)?
            }
            MlpKind::SwiGlu => {
                self.linear(batch, &b.mlp_in[1], input, rows, &bufs.u)?;
                self.ew(
                    batch,
                    &self.k.swiglu_to,
                    &[&bufs.z, &bufs.u, &bufs.f],
                    rows * c.inter,
                )?;
            }
        }
        self.linear(batch, &b.mlp_out, &bufs.f, rows, &bufs.br)
    }

    /// ||dW||^2 of a linear map as <X X^T, dY dY^T> into the records of `name`.
    #[allow(clippy::too_many_arguments)]
    fn weight_grad(
        &self,
        batch: &mut Batch,
        g: &Grads,
        (x, ldx, xcol, xw): (&wgpu::Buffer, u64, u64, u64),
        (dy, ldy, ycol, yw): (&wgpu::Buffer, u64, u64, u64),
        rows: u64,
        (rec, bias_rec): (u64, Option<u64>),
        recs: &wgpu::Buffer,
    ) -> Result<()> {
        self.gram(batch, dy, ldy, ycol, yw, rows, &g.g2)?;
        self.gram_product(batch, g, (x, ldx, xcol, xw), rows, (rec, recs))?;
        // The bias's gradient is dY's column sums: ||db||^2 = sum(dY dY^T),
        // the sum of the second Gram matrix (the product above left it).
        match bias_rec {
            Some(b) => self.gpu.kernels(Activation::Linear)?.reduce(
                batch,
                &g.g2,
                rows * rows,
                b,
                None,
                recs,
            ),
            None => Ok(()),
        }
    }

    /// ||X^T dY||^2 with dY dY^T already in `g.g2`: X X^T into `g.g1`, the
    /// two multiplied element by element, summed into the records at `rec`.
    fn gram_product(
        &self,
        batch: &mut Batch,
        g: &Grads,
        (x, ldx, xcol, xw): (&wgpu::Buffer, u64, u64, u64),
        rows: u64,
        (rec, recs): (u64, &wgpu::Buffer),
    ) -> Result<()> {
        self.gram(batch, x, ldx, xcol, xw, rows, &g.g1)?;
        self.ew(batch, &self.k.hadamard, &[&g.g1, &g.g2], rows * rows)?;
        self.gpu
            .kernels(Activation::Linear)?
            .reduce(batch, &g.g1, rows * rows, rec, None, recs)
    }
}

/// Runs `m` on `tokens` on the device (forward, and with `backward` the LM
/// loss's backward pass); returns the raw results and their layout.
pub fn run(
    gpu: &Gpu,
    m: &Model,
    tokens: &Tokens,
    backward: bool,
    progress: Option<&crate::progress::Progress>,
) -> Result<(RawTfm, PassLayout)> {
    run_chunked(gpu, m, tokens, backward, progress, None)
}

/// [`run`] with tensors cut into chunks of at most `chunk_bytes` (for tests:
/// small chunks exercise every chunked product on small models). With
/// `chunk_bytes` given, the pass runs as on a device with little memory:
/// the backward pass also recomputes every block's branch activations
/// rather than keeping them, and attention submits its work tile by tile.
#[doc(hidden)]
pub fn run_chunked(
    gpu: &Gpu,
    m: &Model,
    tokens: &Tokens,
    backward: bool,
    progress: Option<&crate::progress::Progress>,
    chunk_bytes: Option<u64>,
) -> Result<(RawTfm, PassLayout)> {
    tokens.check(&m.cfg)?;
    let ctx = gpu.context();
    let c = &m.cfg;
    // One chunk: a storage binding that one generation request fills.
    let device = 4 * gpu
        .generator()
        .chunk_limit(&crate::gpu::GenOptions::default())?;
    let limit = chunk_bytes.map_or(device, |b| b.clamp(4, device));
    let (rows, e) = (tokens.rows(), c.hidden);
    let logit_rows = (limit / (4 * c.vocab.max(1))).min(rows);
    let layout = PassLayout::new(m, tokens, logit_rows, limit, backward);
    let backward = layout.backward;
    // The embedding table and the head are read chunk by chunk; every other
    // resident tensor is one binding.
    let mut chunked: Vec<&str> = [Some(&m.names.tok), m.names.head.as_ref()]
        .into_iter()
        .flatten()
        .map(|n| m.weights.tied.get(n).map_or(n.as_str(), String::as_str))
        .collect();
    // Resident block matrices (a checkpoint's) and BERT's transform
    // multiplied chunk by chunk, as the mirror splits them.
    let resident = m.names.blocks.iter().flat_map(|b| b.linears());
    chunked.extend(
        resident
            .chain(&m.names.transform)
            .filter(|l| m.weights.layout(&l.weight) == Layout::OutIn)
            .map(|l| l.weight.as_str()),
    );
    let mut w = HashMap::new();
    for (name, values) in &m.weights.values {
        let width = values.len() as u64 / weight_rows(m, name);
        let cut = if chunked.contains(&name.as_str()) {
            limit
        } else {
            device
        };
        w.insert(name.clone(), upload(ctx, name, values, width, cut)?);
    }
    // Slots for one block's matrices (every block has the same shapes).
    let mut slots = Vec::new();
    if let Some(b) = m
        .names
        .blocks
        .first()
        .filter(|b| !m.weights.resident(&b.o.weight))
    {
        for lin in b.linears() {
            let rows_w = weight_rows(m, &lin.weight);
            let width = lin.n_in * lin.n_out / rows_w;
            // [in, out] matrices (GPT-2's Conv1D) are multiplied whole.
            let cuts = match m.weights.layout(&lin.weight) {
                Layout::OutIn => layout.chunks(rows_w, width),
                Layout::InOut => vec![(0, rows_w as usize)],
            };
            let chunks = cuts
                .into_iter()
                .map(|(r0, nr)| {
                    let buf = storage(ctx, &lin.weight, 4 * (nr as u64 * width).max(1))?;
                    Ok((r0 as u64, nr as u64, buf))
                })
                .collect::<Result<Vec<_>>>()?;
            slots.push(Uploaded { chunks });
        }
    }
    let pass = Pass {
        gpu,
        k: Kernels::new(ctx, c.gelu)?,
        m,
        w,
        slots,
        loaded: std::cell::Cell::new(None),
        limit,
        dummy: ctx.storage_from("unused", &[0.0]),
        ones: ctx.storage_from("unit norm weight", &vec![1.0; m.cfg.hidden as usize]),
        flush: if chunk_bytes.is_some() {
            1
        } else {
            FLUSH_LAUNCHES
        },
    };
    let buf = |label: &str, elems: u64| storage(ctx, label, 4 * elems.max(1));
    let ids: Vec<f32> = tokens.ids.iter().map(|&t| f32::from_bits(t)).collect();
    let (cos, sin) = m.rope_tables(tokens.seq);
    let ld = c.qkv_width();
    let aw = c.attn_width();
    let bufs = Bufs {
        x: buf("stream", rows * e)?,
        hn: buf("norm output", rows * e)?,
        qkv: buf("q|k|v", rows * ld)?,
        att: buf("attention output", rows * aw)?,
        br: buf("branch output", rows * e)?,
        z: buf("mlp pre-activation", rows * c.inter)?,
        u: buf(
            "mlp up",
            if c.mlp == MlpKind::SwiGlu {
                rows * c.inter
            } else {
                1
            },
        )?,
        f: buf("mlp activation", rows * c.inter)?,
        att_rows: buf("attention sums", att_words(c, tokens))?,
        tiles: {
            let span = super::tile_span(tokens);
            let elems = super::tile_heads(c, span) * span * span;
            let n = if backward { 4 } else { 1 };
            (0..n)
                .map(|_| buf("attention tile", elems))
                .collect::<Result<_>>()?
        },
        loss_rows: buf("loss terms", 3 * rows)?,
        norm_vars: buf("norm row variances", super::norm_var_words(c, tokens))?,
        recs: buf(
            "statistics records",
            layout.total_records * crate::gpu::layout::RECORD_WORDS,
        )?,
        tok: ctx.storage_from("token ids", &ids),
        cos: ctx.storage_from("rope cos", &cos),
        sin: ctx.storage_from("rope sin", &sin),
        sin_neg: ctx.storage_from("rope -sin", &sin.iter().map(|v| -v).collect::<Vec<_>>()),
    };
    let grads = if backward {
        let swiglu = c.mlp == MlpKind::SwiGlu;
        Some(Grads {
            dx: buf("stream gradient", rows * e)?,
            dh: buf("norm output gradient", rows * e)?,
            df: buf("mlp gradient", rows * c.inter)?,
            du: buf("mlp up gradient", if swiglu { rows * c.inter } else { 1 })?,
            d_o: buf("attention output gradient", rows * aw)?,
            dd: buf("attention dO.O", rows * c.heads)?,
            dqkv: buf("q|k|v gradient", rows * ld)?,
            dkp: buf("dk parts", rows * aw)?,
            dvp: buf("dv parts", rows * aw)?,
            g1: buf("gram", rows * rows)?,
            g2: buf("gram", rows * rows)?,
            saved: (0..c.layers)
                .map(|_| {
                    Ok((
                        buf("saved stream", rows * e)?,
                        buf("saved stream", rows * e)?,
                    ))
                })
                .collect::<Result<_>>()?,
            scratch: buf("attention sums (recomputed)", 3 * rows * c.heads)?,
            emb_sum: match m.names.ln_e {
                Some(_) => Some(buf("embeddings' sum", rows * e)?),
                None => None,
            },
            acts: Vec::new(),
            tied: if layout.has(&super::cross_rec(&m.names.tok)) {
                Some((
                    buf("tied M", rows * rows)?,
                    buf("final norm output", rows * e)?,
                ))
            } else {
                None
            },
        })
    } else {
        None
    };
    // The logits' buffer before the kept activations: those are optional.
    let mut logits_buf = match m.names.head {
        Some(_) => Some(buf("logits", layout.logit_rows * c.vocab)?),
        None => None,
    };
    let grads = match grads {
        Some(mut g)
            if chunk_bytes.is_none()
                && !c.post_norm
                && Acts::bytes(c, &bufs, rows).saturating_mul(c.layers) <= SAVED_BYTES =>
        {
            // A device short of memory recomputes instead: the same bits.
            g.acts = (0..c.layers)
                .map(|_| Acts::new(ctx, c, &bufs, rows))
                .collect::<Result<_>>()
                .unwrap_or_default();
            Some(g)
        }
        g => g,
    };
    let red = gpu.kernels(Activation::Linear)?;
    let n = &m.names;
    let recs = &bufs.recs;
    let reduce = |batch: &mut Batch, x: &wgpu::Buffer, name: &str| {
        red.reduce(batch, x, rows * e, layout.rec(name), None, recs)
    };
    let mut batch = Batch::default();
    let steps = if backward { 2.0 } else { 1.0 } * c.layers as f64 + 1.0;
    let mut done = 0.0;
    let mut step = |batch: &mut Batch| -> Result<()> {
        std::mem::take(batch).submit(ctx)?;
        done += 1.0;
        if let Some(pr) = progress {
            ctx.wait_idle("running the transformer")?;
            pr.update(done, steps);
        }
        Ok(())
    };

    // Embedding, chunk by chunk of the table.
    let pos = match &n.pos {
        Some(p) => pass.single(p)?,
        None => &pass.dummy,
    };
    for (r0, nr, chunk) in &pass.tensor(&n.tok)?.chunks {
        let p = TfParams {
            rows: rows as u32,
            width: e as u32,
            seq: tokens.seq as u32,
            heads: u32::from(n.pos.is_some()),
            lo: *r0 as u32,
            hi: (r0 + nr) as u32,
            ..TfParams::default()
        };
        Pass::push(
            &mut batch,
            &pass.k.embed,
            &p,
            &[&bufs.x, chunk, &bufs.tok, pos],
            ew_groups(ctx, rows * e)?,
        );
    }
    let copy = |batch: &mut Batch, from: &wgpu::Buffer, to: &wgpu::Buffer| {
        pass.ew(batch, &pass.k.copy, &[from, to], rows * e)
    };
    // BERT: the token-type embedding (every token of type 0: the table's
    // first row, added as a bias), then the embeddings' norm.
    if let Some(t) = &n.types {
        pass.add_bias(&mut batch, &bufs.x, rows, pass.single(t)?, e)?;
    }
    if let Some(ln) = &n.ln_e {
        if let Some(s) = grads.as_ref().and_then(|g| g.emb_sum.as_ref()) {
            copy(&mut batch, &bufs.x, s)?;
        }
        pass.norm(&mut batch, ln, &bufs.x, &bufs.hn, rows)?;
        copy(&mut batch, &bufs.hn, &bufs.x)?;
    }
    reduce(&mut batch, &bufs.x, "embed")?;
    for (i, b) in n.blocks.iter().enumerate() {
        let l = i + 1;
        let hi = i as u64 * 3 * rows * c.heads;
        pass.load_block(&mut batch, i)?;
        if c.post_norm {
            // x = norm1(x + attn(x)); x = norm2(x + mlp(x)). The records:
            // `mid` and `out` are the sums, `ln1` and `ln2` the norms'
            // outputs (the stream); the row variances are the sums'.
            // After a branch (in br, recorded as `branch`): the addition
            // (kept for the backward pass), its sum's row variances into
            // norm slot k and its record, the norm and its record, the
            // norm's output as the stream.
            let add_norm = |batch: &mut Batch, k: u64, ln, [branch, sum, normed]: [&str; 3]| {
                reduce(batch, &bufs.br, &format!("{l}.{branch}"))?;
                pass.ew(batch, &pass.k.residual, &[&bufs.x, &bufs.br], rows * e)?;
                if let Some(g) = &grads {
                    let (s1, s2) = &g.saved[i];
                    copy(batch, &bufs.x, if k == 0 { s1 } else { s2 })?;
                }
                let slot = ((2 * i as u64 + k) * rows, rows);
                pass.norm_var(batch, &bufs.x, &bufs.norm_vars, slot)?;
                reduce(batch, &bufs.x, &format!("{l}.{sum}"))?;
                pass.norm(batch, ln, &bufs.x, &bufs.hn, rows)?;
                reduce(batch, &bufs.hn, &format!("{l}.{normed}"))?;
                copy(batch, &bufs.hn, &bufs.x)
            };
            pass.attn_core(&mut batch, b, &bufs, &bufs.x, (&bufs.att_rows, hi), tokens)?;
            add_norm(&mut batch, 0, &b.ln1, ["attn", "mid", "ln1"])?;
            pass.mlp_core(&mut batch, b, &bufs, &bufs.x, rows)?;
            add_norm(&mut batch, 1, &b.ln2, ["mlp", "out", "ln2"])?;
            step(&mut batch)?;
            continue;
        }
        if let Some(g) = &grads {
            copy(&mut batch, &bufs.x, &g.saved[i].0)?;
        }
        pass.norm_var(
            &mut batch,
            &bufs.x,
            &bufs.norm_vars,
            (2 * i as u64 * rows, rows),
        )?;
        pass.attn_branch(&mut batch, b, &bufs, &bufs.x, (&bufs.att_rows, hi), tokens)?;
        if let Some(a) = grads.as_ref().and_then(|g| g.acts.get(i)) {
            a.keep(&mut batch, c, &bufs, rows, Branch::Attn);
        }
        reduce(&mut batch, &bufs.hn, &format!("{l}.ln1"))?;
        reduce(&mut batch, &bufs.br, &format!("{l}.attn"))?;
        pass.ew(&mut batch, &pass.k.residual, &[&bufs.x, &bufs.br], rows * e)?;
        reduce(&mut batch, &bufs.x, &format!("{l}.mid"))?;
        if let Some(g) = &grads {
            copy(&mut batch, &bufs.x, &g.saved[i].1)?;
        }
        pass.norm_var(
            &mut batch,
            &bufs.x,
            &bufs.norm_vars,
            ((2 * i as u64 + 1) * rows, rows),
        )?;
        pass.mlp_branch(&mut batch, b, &bufs, &bufs.x, rows)?;
        if let Some(a) = grads.as_ref().and_then(|g| g.acts.get(i)) {
            a.keep(&mut batch, c, &bufs, rows, Branch::Mlp);
        }
        reduce(&mut batch, &bufs.hn, &format!("{l}.ln2"))?;
        reduce(&mut batch, &bufs.br, &format!("{l}.mlp"))?;
        pass.ew(&mut batch, &pass.k.residual, &[&bufs.x, &bufs.br], rows * e)?;
        reduce(&mut batch, &bufs.x, &format!("{l}.out"))?;
        step(&mut batch)?;
    }
    // BERT's masked-LM head transforms the stream (dense, GELU) before its
    // norm.
    let final_in = match &n.transform {
        Some(t) => {
            pass.linear(&mut batch, t, &bufs.x, rows, &bufs.br)?;
            pass.ew(
                &mut batch,
                &pass.k.gelu_to,
                &[&bufs.br, &bufs.att],
                rows * e,
            )?;
            &bufs.att
        }
        None => &bufs.x,
    };
    pass.norm_var(
        &mut batch,
        final_in,
        &bufs.norm_vars,
        (2 * c.layers * rows, rows),
    )?;
    pass.norm(&mut batch, &n.ln_f, final_in, &bufs.hn, rows)?;
    reduce(&mut batch, &bufs.hn, "ln_f")?;
    if let Some(head) = &n.head {
        let v = c.vocab;
        let logits = logits_buf
            .take()
            .ok_or_else(|| Error::internal("transformer pass", "no logits buffer for the head"))?;
        let mut rec = layout.rec("logits");
        let head_bias_rec = super::head_bias_rec(m, &layout);
        let targets = tokens.batch * (tokens.seq - c.loss_shift());
        let mut r0 = 0;
        while r0 < rows {
            let nr = layout.logit_rows.min(rows - r0);
            let chunks = &pass.tensor(head)?.chunks;
            for (v0, nv, chunk) in chunks {
                pass.gemm_raw(
                    &mut batch,
                    GemmForm::Nt,
                    (nr, *nv, e),
                    (&bufs.hn, e, r0 * e),
                    (chunk, e),
                    (&logits, v, *v0),
                    false,
                )?;
            }
            if let Some(hb) = &n.head_bias {
                pass.add_bias(&mut batch, &logits, nr, pass.single(hb)?, v)?;
            }
            red.reduce(&mut batch, &logits, nr * v, rec, None, recs)?;
            rec += crate::net::mirror::records(nr * v);
            let p = TfParams {
                rows: nr as u32,
                row0: r0 as u32,
                width: v as u32,
                seq: tokens.seq as u32,
                lo: c.loss_shift() as u32,
                inv_n: (1.0 / targets.max(1) as f64) as f32,
                ..TfParams::default()
            };
            Pass::push(
                &mut batch,
                &pass.k.lm_loss,
                &p,
                &[&logits, &bufs.tok, &bufs.loss_rows],
                ctx.dispatch_2d(nr)?,
            );
            if let Some(g) = grads.as_ref().filter(|_| layout.from_loss) {
                // dL/d(logits) in place, then dL/d(final norm output) rows.
                // dlogits reads `lo` as its first vocabulary column and `hi`
                // as the target's offset.
                Pass::push(
                    &mut batch,
                    &pass.k.dlogits,
                    &TfParams {
                        lo: 0,
                        hi: c.loss_shift() as u32,
                        ..p
                    },
                    &[&logits, &bufs.loss_rows, &bufs.tok],
                    ew_groups(ctx, nr * v)?,
                );
                if let Some((mm, _)) = &g.tied {
                    let q = TfParams {
                        rows: rows as u32,
                        row0: r0 as u32,
                        width: v as u32,
                        lo: nr as u32,
                        hi: c.pad_word(),
                        ..TfParams::default()
                    };
                    Pass::push(
                        &mut batch,
                        &pass.k.tied_gather,
                        &q,
                        &[mm, &logits, &bufs.tok],
                        ew_groups(ctx, rows * nr)?,
                    );
                }
                if layout.has("dW:head") && layout.logit_rows >= rows {
                    pass.weight_grad(
                        &mut batch,
                        g,
                        (&bufs.hn, e, 0, e),
                        (&logits, v, 0, v),
                        rows,
                        (layout.rec("dW:head"), head_bias_rec),
                        recs,
                    )?;
                }
                for (i, (v0, nv, chunk)) in chunks.iter().enumerate() {
                    pass.gemm_raw(
                        &mut batch,
                        GemmForm::Nn,
                        (nr, e, *nv),
                        (&logits, v, *v0),
                        (chunk, e),
                        (&g.dh, e, r0 * e),
                        i > 0,
                    )?;
                }
            }
            step(&mut batch)?;
            r0 += nr;
        }
        if let Some(g) = grads.as_ref().filter(|_| layout.logit_rows < rows) {
            if layout.has("dW:head") {
                pass.head_grad_by_columns(&mut batch, g, &bufs, &logits, head, tokens, &layout)?;
                step(&mut batch)?;
            }
        }
    }
    if let Some(g) = grads.as_ref().filter(|_| !layout.from_loss) {
        let d = super::direction(c, tokens, m.seed);
        batch.write(&g.dh, 0, bytemuck::cast_slice(&d));
    }
    if let Some(g) = &grads {
        if let Some((_, h)) = &g.tied {
            batch.copy(&bufs.hn, h, 4 * rows * e);
        }
        // The final norm's output (bufs.hn) is spent: the head read it.
        // BERT's final norm read the transform's output (in bufs.att, its
        // pre-activation in bufs.br), the others' the stream.
        let final_in = if n.transform.is_some() {
            &bufs.att
        } else {
            &bufs.x
        };
        pass.norm_through(
            &mut batch,
            g,
            &n.ln_f,
            (final_in, &g.dh, &g.dx, &bufs.hn),
            rows,
            (&layout, recs),
        )?;
        if let Some(t) = &n.transform {
            // Through the GELU, then the dense map from the stream.
            pass.gpu
                .kernels(c.gelu)?
                .grad_mul(&mut batch, rows * e, &bufs.br, &g.dx)?;
            pass.weight_grad(
                &mut batch,
                g,
                (&bufs.x, e, 0, e),
                (&g.dx, e, 0, e),
                rows,
                super::grad_recs(&layout, t),
                recs,
            )?;
            pass.linear_bwd(&mut batch, t, (&g.dx, e, 0), rows, &g.dh, false)?;
            copy(&mut batch, &g.dh, &g.dx)?;
        }
        reduce(&mut batch, &g.dx, "d.final")?;
        for (i, b) in n.blocks.iter().enumerate().rev() {
            pass.load_block(&mut batch, i)?;
            if c.post_norm {
                backward_post(&pass, &mut batch, &bufs, g, (i, b), tokens, &layout)?;
            } else {
                backward_block(&pass, &mut batch, &bufs, g, (i, b), tokens, &layout)?;
            }
            step(&mut batch)?;
        }
        // BERT: back through the embeddings' norm to their sum.
        if let (Some(ln), Some(sum)) = (&n.ln_e, &g.emb_sum) {
            pass.norm_through(
                &mut batch,
                g,
                ln,
                (sum, &g.dx, &g.dh, &bufs.hn),
                rows,
                (&layout, recs),
            )?;
            copy(&mut batch, &g.dh, &g.dx)?;
        }
        pass.embedding_grads(&mut batch, g, &bufs, tokens, &layout)?;
        if let Some((mm, h)) = &g.tied {
            // <lookup, head> = sum of (dX H^T) * M.
            pass.gemm_raw(
                &mut batch,
                GemmForm::Nt,
                (rows, rows, e),
                (&g.dx, e, 0),
                (h, e),
                (&g.g1, rows, 0),
                false,
            )?;
            pass.ew(&mut batch, &pass.k.hadamard, &[&g.g1, mm], rows * rows)?;
            red.reduce(
                &mut batch,
                &g.g1,
                rows * rows,
                layout.rec(&super::cross_rec(&n.tok)),
                None,
                recs,
            )?;
        }
    }
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("transformer"),
        });
    std::mem::take(&mut batch).record(ctx, &mut enc)?;
    let raw_len = RawTfm::zeroed(c, tokens, &layout);
    let out = ctx.read_back(
        enc,
        &[
            (&bufs.recs, 4 * raw_len.recs.len() as u64),
            (&bufs.att_rows, 4 * raw_len.att.len().max(1) as u64),
            (&bufs.loss_rows, 4 * raw_len.loss.len().max(1) as u64),
            (&bufs.norm_vars, 4 * raw_len.norm_vars.len() as u64),
        ],
    )?;
    let take = |i: usize, n: usize| -> Vec<u32> {
        crate::gpu::context::words_of(&out[i])
            .into_iter()
            .take(n)
            .collect()
    };
    let raw = RawTfm {
        recs: take(0, raw_len.recs.len()),
        att: take(1, raw_len.att.len()),
        loss: take(2, raw_len.loss.len()),
        norm_vars: take(3, raw_len.norm_vars.len()),
    };
    if let Some(pr) = progress {
        pr.update(steps, steps);
    }
    Ok((raw, layout))
}

/// One block's backward pass: `g.dx` holds dL/d(block output) and ends
/// holding dL/d(block input); the forward quantities are copied back from
/// `g.acts` where the forward pass kept them, else recomputed from the
/// saved streams.
fn backward_block(
    pass: &Pass,
    batch: &mut Batch,
    bufs: &Bufs,
    g: &Grads,
    (i, b): (usize, &BlockNames),
    tokens: &Tokens,
    layout: &PassLayout,
) -> Result<()> {
    let c = &pass.m.cfg;
    let (rows, e) = (tokens.rows(), c.hidden);
    let l = i + 1;
    let (x_in, mid) = (&g.saved[i].0, &g.saved[i].1);
    let recs = &bufs.recs;
    let red = pass.gpu.kernels(Activation::Linear)?;
    // After a branch's backward (dL/d(norm output) in g.dh, the branch's
    // weight gradients having read the norm's output in bufs.hn): the
    // norm's parameters, `g.dx += norm'(x)^T g.dh`, its record.
    let norm_back = |batch: &mut Batch, ln, x, name: &str| -> Result<()> {
        pass.norm_grads(batch, g, ln, (x, &g.dh, &bufs.hn), rows, (layout, recs))?;
        pass.norm_bwd(batch, ln, (x, &g.dh, &g.dx), rows)?;
        let rec = layout.rec(&format!("{l}.{name}"));
        red.reduce(batch, &g.dx, rows * e, rec, None, recs)
    };
    // MLP.
    match g.acts.get(i) {
        Some(a) => a.restore(batch, c, bufs, rows, Branch::Mlp),
        None => pass.mlp_branch(batch, b, bufs, mid, rows)?,
    }
    mlp_bwd(pass, batch, bufs, g, b, rows, (&g.dx, &g.dh), layout)?;
    norm_back(batch, &b.ln2, mid, "dmid")?;
    // Attention.
    match g.acts.get(i) {
        Some(a) => a.restore(batch, c, bufs, rows, Branch::Attn),
        None => pass.attn_branch(batch, b, bufs, x_in, (&g.scratch, 0), tokens)?,
    }
    attn_bwd(pass, batch, bufs, g, (i, b), (&g.dx, &g.dh), tokens, layout)?;
    norm_back(batch, &b.ln1, x_in, "din")
}

/// A post-norm block's backward pass (BERT: s1 = x + attn(x), y1 = norm1(s1),
/// s2 = y1 + mlp(y1), y = norm2(s2)): `g.dx` holds dL/dy and ends holding
/// dL/dx. The sums s1 and s2 are the saved ones; y1 and x are recomputed
/// from them by the forward's norms (x from the previous block's s2, or
/// block 1's from the embeddings' saved sum), and the branches from those.
fn backward_post(
    pass: &Pass,
    batch: &mut Batch,
    bufs: &Bufs,
    g: &Grads,
    (i, b): (usize, &BlockNames),
    tokens: &Tokens,
    layout: &PassLayout,
) -> Result<()> {
    let c = &pass.m.cfg;
    let n = &pass.m.names;
    let (rows, e) = (tokens.rows(), c.hidden);
    let l = i + 1;
    let (s1, s2) = (&g.saved[i].0, &g.saved[i].1);
    let recs = &bufs.recs;
    let red = pass.gpu.kernels(Activation::Linear)?;
    // dL/ds = norm'(s)^T dL/dy into g.dh.
    let through_norm = |batch: &mut Batch, ln, s| {
        pass.norm_through(
            batch,
            g,
            ln,
            (s, &g.dx, &g.dh, &bufs.hn),
            rows,
            (layout, recs),
        )
    };
    // The residual: dL/d(branch input) = the branch's part (in g.dx) plus
    // dL/ds (in g.dh).
    let add_residual = |batch: &mut Batch, name: &str| -> Result<()> {
        pass.ew(batch, &pass.k.residual, &[&g.dx, &g.dh], rows * e)?;
        red.reduce(
            batch,
            &g.dx,
            rows * e,
            layout.rec(&format!("{l}.{name}")),
            None,
            recs,
        )
    };
    // MLP, on y1 = norm1(s1).
    through_norm(batch, &b.ln2, s2)?;
    pass.norm(batch, &b.ln1, s1, &bufs.hn, rows)?;
    pass.mlp_core(batch, b, bufs, &bufs.hn, rows)?;
    mlp_bwd(pass, batch, bufs, g, b, rows, (&g.dh, &g.dx), layout)?;
    add_residual(batch, "dmid")?;
    // Attention, on the block's input.
    through_norm(batch, &b.ln1, s1)?;
    let (ln, s) = match i.checked_sub(1) {
        Some(prev) => (&n.blocks[prev].ln2, &g.saved[prev].1),
        None => match (&n.ln_e, &g.emb_sum) {
            (Some(ln), Some(s)) => (ln, s),
            _ => {
                return Err(Error::internal(
                    "transformer pass",
                    "a post-norm model without the embeddings' norm",
                ))
            }
        },
    };
    pass.norm(batch, ln, s, &bufs.hn, rows)?;
    pass.attn_core(batch, b, bufs, &bufs.hn, (&g.scratch, 0), tokens)?;
    attn_bwd(pass, batch, bufs, g, (i, b), (&g.dh, &g.dx), tokens, layout)?;
    add_residual(batch, "din")
}

/// The MLP's backward pass from dL/d(output) `dy` to dL/d(input) `out`
/// (written), its activations in `bufs` and its input in `bufs.hn`; the
/// weight gradients into their records.
#[allow(clippy::too_many_arguments)]
fn mlp_bwd(
    pass: &Pass,
    batch: &mut Batch,
    bufs: &Bufs,
    g: &Grads,
    b: &BlockNames,
    rows: u64,
    (dy, out): (&wgpu::Buffer, &wgpu::Buffer),
    layout: &PassLayout,
) -> Result<()> {
    let c = &pass.m.cfg;
    let ctx = pass.ctx();
    let (e, inter) = (c.hidden, c.inter);
    let recs = &bufs.recs;
    let wrec = |lin: &Linear| super::grad_recs(layout, lin);
    pass.weight_grad(
        batch,
        g,
        (&bufs.f, inter, 0, inter),
        (dy, e, 0, e),
        rows,
        wrec(&b.mlp_out),
        recs,
    )?;
    pass.linear_bwd(batch, &b.mlp_out, (dy, e, 0), rows, &g.df, false)?;
    match c.mlp {
        MlpKind::Gelu => {
            pass.gpu
                .kernels(c.gelu)?
                .grad_mul(batch, rows * inter, &bufs.z, &g.df)?;
            pass.weight_grad(
                batch,
                g,
                (&bufs.hn, e, 0, e),
                (&g.df, inter, 0, inter),
                rows,
                wrec(&b.mlp_in[0]),
                recs,
            )?;
            pass.linear_bwd(batch, &b.mlp_in[0], (&g.df, inter, 0), rows, out, false)?;
        }
        MlpKind::SwiGlu => {
            let p = TfParams {
                rows: 1,
                width: (rows * inter) as u32,
                ..TfParams::default()
            };
            Pass::push(
                batch,
                &pass.k.swiglu_bwd,
                &p,
                &[&bufs.z, &bufs.u, &g.df, &g.du],
                ew_groups(ctx, rows * inter)?,
            );
            pass.weight_grad(
                batch,
                g,
                (&bufs.hn, e, 0, e),
                (&g.df, inter, 0, inter),
                rows,
                wrec(&b.mlp_in[0]),
                recs,
            )?;
            pass.weight_grad(
                batch,
                g,
                (&bufs.hn, e, 0, e),
                (&g.du, inter, 0, inter),
                rows,
                wrec(&b.mlp_in[1]),
                recs,
            )?;
            pass.linear_bwd(batch, &b.mlp_in[0], (&g.df, inter, 0), rows, out, false)?;
            pass.linear_bwd(batch, &b.mlp_in[1], (&g.du, inter, 0), rows, out, true)?;
        }
    }
    Ok(())
}

/// Attention's backward pass from dL/d(output projection) `dy` to
/// dL/d(input) `out` (written), q|k|v and the attention output in `bufs`
/// and the input in `bufs.hn`; the forward's row sums are read from
/// `bufs.att_rows`.
#[allow(clippy::too_many_arguments)]
fn attn_bwd(
    pass: &Pass,
    batch: &mut Batch,
    bufs: &Bufs,
    g: &Grads,
    (i, b): (usize, &BlockNames),
    (dy, out): (&wgpu::Buffer, &wgpu::Buffer),
    tokens: &Tokens,
    layout: &PassLayout,
) -> Result<()> {
    let c = &pass.m.cfg;
    let ctx = pass.ctx();
    let (rows, e) = (tokens.rows(), c.hidden);
    let (h, kvh, hd) = (c.heads, c.kv_heads, c.head_dim);
    let (ld, aw) = (c.qkv_width(), c.attn_width());
    let recs = &bufs.recs;
    let wrec = |lin: &Linear| super::grad_recs(layout, lin);
    pass.weight_grad(
        batch,
        g,
        (&bufs.att, aw, 0, aw),
        (dy, e, 0, e),
        rows,
        wrec(&b.o),
        recs,
    )?;
    pass.linear_bwd(batch, &b.o, (dy, e, 0), rows, &g.d_o, false)?;
    let p = pass.att_params(tokens, i as u64 * 3 * rows * h);
    Pass::push(
        batch,
        &pass.k.att_dot,
        &p,
        &[&g.d_o, &bufs.att, &g.dd],
        ctx.dispatch_2d((rows * h).div_ceil(64))?,
    );
    let (k_col, v_col) = (h * hd, (h + kvh) * hd);
    let t = &bufs.tiles;
    for (row0, span, h0, w) in pass.tiles(tokens) {
        let at = |i: usize| i as u64 * span * span;
        for (i, hh) in (h0..h0 + w).enumerate() {
            let gk = c.kv_head(hh);
            pass.scores(batch, &bufs.qkv, (row0, span), (i as u64, hh), &t[0])?;
            // dP = dO V^T.
            pass.gemm_at(
                batch,
                GemmForm::Nt,
                (span, span, hd),
                (&g.d_o, aw, row0 * aw + hh * hd),
                (&bufs.qkv, ld, row0 * ld + v_col + gk * hd),
                (&t[1], span, at(i)),
                false,
            )?;
        }
        Pass::push(
            batch,
            &pass.k.att_tile,
            &tile_params(&p, (row0, span), (h0, w)),
            &[&t[0], &t[1], &bufs.att_rows, &g.dd, &t[2], &t[3]],
            ew_groups(ctx, w * span * span)?,
        );
        for (i, hh) in (h0..h0 + w).enumerate() {
            let gk = c.kv_head(hh);
            let mut nn = |a: &wgpu::Buffer, b: (&wgpu::Buffer, u64, u64), out| {
                pass.gemm_at(
                    batch,
                    GemmForm::Nn,
                    (span, hd, span),
                    (a, span, at(i)),
                    b,
                    out,
                    false,
                )
            };
            // dQ = dS K, dK = dS^T Q, dV = P^T dO (per query head).
            nn(
                &t[1],
                (&bufs.qkv, ld, row0 * ld + k_col + gk * hd),
                (&g.dqkv, ld, row0 * ld + hh * hd),
            )?;
            nn(
                &t[3],
                (&bufs.qkv, ld, row0 * ld + hh * hd),
                (&g.dkp, aw, row0 * aw + hh * hd),
            )?;
            nn(
                &t[2],
                (&g.d_o, aw, row0 * aw + hh * hd),
                (&g.dvp, aw, row0 * aw + hh * hd),
            )?;
        }
        pass.flush_long(batch)?;
    }
    for (part, col) in [(&g.dkp, h * hd), (&g.dvp, (h + kvh) * hd)] {
        let gs = TfParams {
            q_col: col as u32,
            ..p
        };
        Pass::push(
            batch,
            &pass.k.group_sum,
            &gs,
            &[part, &g.dqkv],
            ew_groups(ctx, rows * kvh * hd)?,
        );
    }
    pass.rope(batch, bufs, &bufs.sin_neg, &g.dqkv, tokens)?;
    let mut col = 0;
    for (k, lin) in b.qkv.iter().enumerate() {
        pass.weight_grad(
            batch,
            g,
            (&bufs.hn, e, 0, e),
            (&g.dqkv, ld, col, lin.n_out),
            rows,
            wrec(lin),
            recs,
        )?;
        pass.linear_bwd(batch, lin, (&g.dqkv, ld, col), rows, out, k > 0)?;
        col += lin.n_out;
    }
    Ok(())
}

/// The attention parameters `p` for one tile: rows `row0 .. row0 + span`,
/// `w` query heads from `h0`.
fn tile_params(p: &TfParams, (row0, span): (u64, u64), (h0, w): (u64, u64)) -> TfParams {
    TfParams {
        rows: span as u32,
        row0: row0 as u32,
        width: w as u32,
        q_col: h0 as u32,
        ..*p
    }
}

/// Rows of a stored tensor (its first dimension; 1 for a vector).
fn weight_rows(m: &Model, name: &str) -> u64 {
    m.weights
        .shapes
        .get(name)
        .and_then(|s| s.first().copied())
        .unwrap_or(1)
        .max(1)
}

/// Adds the q|k|v biases: GPT-2's fused bias, or q, k and v's concatenated
/// (all three or none: a mix is refused).
fn qkv_bias(
    pass: &Pass,
    batch: &mut Batch,
    qkv: &[Linear],
    out: &wgpu::Buffer,
    rows: u64,
    ld: u64,
) -> Result<()> {
    let with: Vec<&String> = qkv.iter().filter_map(|l| l.bias.as_ref()).collect();
    if with.is_empty() {
        return Ok(());
    }
    if with.len() != qkv.len() {
        return Err(Error::invalid(
            "config",
            "q, k and v must all have biases or none",
        ));
    }
    if let [one] = &with[..] {
        return pass.add_bias(batch, out, rows, pass.single(one)?, ld);
    }
    let mut all = Vec::with_capacity(ld as usize);
    for b in with {
        all.extend_from_slice(&pass.m.weights.get(b)?);
    }
    let b = pass.ctx().storage_from("q|k|v bias", &all);
    pass.add_bias(batch, out, rows, &b, ld)
}
