//! The transformer pass on a GPU: the weights uploaded once (each tensor in
//! row chunks that fit one storage binding), every activation kept on the
//! device, one submission per block, and only the raw statistics read back.

use super::{att_words, Linear, MlpKind, Model, NormKind, PassLayout, RawTfm, Tokens};
use crate::backend::Gpu;
use crate::error::{Error, Result};
use crate::gpu::gemm::GemmForm;
use crate::gpu::launch::{Batch, Launch};
use crate::gpu::layout::{GemmParams, TfParams};
use crate::gpu::network::storage;
use crate::gpu::GpuContext;
use crate::model::spec::Layout;
use crate::net::act::Activation;
use std::collections::HashMap;

/// The transformer kernels of one device.
struct Kernels {
    embed: wgpu::ComputePipeline,
    norm: wgpu::ComputePipeline,
    add_bias: wgpu::ComputePipeline,
    residual: wgpu::ComputePipeline,
    gelu: wgpu::ComputePipeline,
    swiglu: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    lm_loss: wgpu::ComputePipeline,
}

impl Kernels {
    fn new(ctx: &GpuContext) -> Result<Kernels> {
        let m = crate::gpu::shaders::transformer_module();
        let consts = [
            (
                "ACT",
                f64::from(crate::gpu::layout::activation_id(Activation::Gelu)),
            ),
            ("SLOPE", 0.01),
        ];
        let p = |entry| ctx.compute_pipeline(&m, entry, &consts);
        Ok(Kernels {
            embed: p("embed")?,
            norm: p("norm")?,
            add_bias: p("add_bias")?,
            residual: p("residual")?,
            gelu: p("gelu")?,
            swiglu: p("swiglu")?,
            rope: p("rope")?,
            attention: p("attention")?,
            lm_loss: p("lm_loss")?,
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
    w: HashMap<String, Uploaded>,
    dummy: wgpu::Buffer,
}

fn ew_groups(ctx: &GpuContext, n: u64) -> Result<(u32, u32)> {
    ctx.dispatch_2d(n.div_ceil(256))
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
        self.w
            .get(name)
            .ok_or_else(|| Error::internal("transformer pass", format!("'{name}' not uploaded")))
    }

    fn single(&self, name: &str) -> Result<&wgpu::Buffer> {
        let t = self.tensor(name)?;
        match &t.chunks[..] {
            [(_, _, b)] => Ok(b),
            _ => Err(Error::LimitExceeded {
                what: format!("tensor '{name}' (bytes; it must fit one storage binding)"),
                got: 4 * self.m.weights.get(name)?.len() as u64,
                max: self.limit(),
                hint: String::new(),
            }),
        }
    }

    fn limit(&self) -> u64 {
        let l = self.ctx().limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
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
                    self.gpu
                        .gemm()
                        .record(batch, GemmForm::Nt, &p, x, buf, out)?;
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
                self.gpu.gemm().record(batch, GemmForm::Nn, &p, x, w, out)?;
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
        let e = self.m.cfg.hidden;
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
        let p = TfParams {
            rows: rows as u32,
            width: e as u32,
            heads: flags,
            inv_n: (1.0 / e as f64) as f32,
            eps: self.m.cfg.eps,
            ..TfParams::default()
        };
        Self::push(
            batch,
            &self.k.norm,
            &p,
            &[x, out, self.single(w)?, bias],
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

/// Runs `m` on `tokens` on the device; returns the raw results and their layout.
pub fn run(
    gpu: &Gpu,
    m: &Model,
    tokens: &Tokens,
    progress: Option<&crate::progress::Progress>,
) -> Result<(RawTfm, PassLayout)> {
    let ctx = gpu.context();
    let c = &m.cfg;
    let limit = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size);
    let (rows, e) = (tokens.rows(), c.hidden);
    let logit_rows = (limit / (4 * c.vocab.max(1))).min(rows);
    let layout = PassLayout::new(c, tokens, logit_rows);
    let mut w = HashMap::new();
    for (name, values) in &m.weights.values {
        let width = values.len() as u64 / weight_rows(m, name);
        w.insert(name.clone(), upload(ctx, name, values, width, limit)?);
    }
    let pass = Pass {
        gpu,
        k: Kernels::new(ctx)?,
        m,
        w,
        dummy: ctx.storage_from("unused", &[0.0]),
    };
    let buf = |label: &str, elems: u64| storage(ctx, label, 4 * elems.max(1));
    let ids: Vec<f32> = tokens.ids.iter().map(|&t| f32::from_bits(t)).collect();
    let tok_buf = ctx.storage_from("token ids", &ids);
    let x = buf("stream", rows * e)?;
    let hn = buf("norm output", rows * e)?;
    let ld = c.qkv_width();
    let qkv = buf("q|k|v", rows * ld)?;
    let att = buf("attention output", rows * c.attn_width())?;
    let br = buf("branch output", rows * e)?;
    let f = buf("mlp hidden", rows * c.inter)?;
    let u = if c.mlp == MlpKind::SwiGlu {
        buf("mlp up", rows * c.inter)?
    } else {
        buf("unused", 1)?
    };
    let att_rows = buf("attention sums", att_words(c, tokens))?;
    let loss_rows = buf("loss terms", 3 * rows)?;
    let recs = buf(
        "statistics records",
        layout.total_records * crate::gpu::layout::RECORD_WORDS,
    )?;
    let (cos, sin) = m.rope_tables(tokens.seq);
    let (cos_b, sin_b) = (
        ctx.storage_from("rope cos", &cos),
        ctx.storage_from("rope sin", &sin),
    );
    let red = gpu.kernels(Activation::Linear)?;
    let n = &m.names;
    let mut batch = Batch::default();

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
            &[&x, chunk, &tok_buf, pos],
            ew_groups(ctx, rows * e)?,
        );
    }
    red.reduce(&mut batch, &x, rows * e, layout.rec("embed"), None, &recs)?;
    let (h, kvh, hd) = (c.heads, c.kv_heads, c.head_dim);
    let layers = n.blocks.len() as f64;
    for (i, b) in n.blocks.iter().enumerate() {
        let l = i + 1;
        pass.norm(&mut batch, &b.ln1, &x, &hn, rows)?;
        red.reduce(
            &mut batch,
            &hn,
            rows * e,
            layout.rec(&format!("{l}.ln1")),
            None,
            &recs,
        )?;
        let mut col = 0;
        for p in &b.qkv {
            pass.gemm(&mut batch, p, &hn, rows, &qkv, ld, col)?;
            col += p.n_out;
        }
        qkv_bias(&pass, &mut batch, &b.qkv, &qkv, rows, ld)?;
        if !c.inv_freq.is_empty() {
            for (heads, q_col) in [(h, 0), (kvh, h * hd)] {
                let p = TfParams {
                    rows: rows as u32,
                    seq: tokens.seq as u32,
                    heads: heads as u32,
                    head_dim: hd as u32,
                    ld: ld as u32,
                    q_col: q_col as u32,
                    ..TfParams::default()
                };
                Pass::push(
                    &mut batch,
                    &pass.k.rope,
                    &p,
                    &[&qkv, &cos_b, &sin_b],
                    ew_groups(ctx, rows * heads * (hd / 2))?,
                );
            }
        }
        let p = TfParams {
            rows: rows as u32,
            seq: tokens.seq as u32,
            heads: h as u32,
            kv_heads: kvh as u32,
            head_dim: hd as u32,
            ld: ld as u32,
            q_col: 0,
            k_col: (h * hd) as u32,
            v_col: ((h + kvh) * hd) as u32,
            lo: c.window as u32,
            hi: (i as u64 * 2 * rows * h) as u32,
            inv_n: c.score_scale,
            ..TfParams::default()
        };
        Pass::push(
            &mut batch,
            &pass.k.attention,
            &p,
            &[&qkv, &att, &att_rows],
            ctx.dispatch_2d(rows * h)?,
        );
        pass.linear(&mut batch, &b.o, &att, rows, &br)?;
        red.reduce(
            &mut batch,
            &br,
            rows * e,
            layout.rec(&format!("{l}.attn")),
            None,
            &recs,
        )?;
        pass.ew(&mut batch, &pass.k.residual, &[&x, &br], rows * e)?;
        red.reduce(
            &mut batch,
            &x,
            rows * e,
            layout.rec(&format!("{l}.mid")),
            None,
            &recs,
        )?;
        pass.norm(&mut batch, &b.ln2, &x, &hn, rows)?;
        red.reduce(
            &mut batch,
            &hn,
            rows * e,
            layout.rec(&format!("{l}.ln2")),
            None,
            &recs,
        )?;
        pass.linear(&mut batch, &b.mlp_in[0], &hn, rows, &f)?;
        match c.mlp {
            MlpKind::Gelu => pass.ew(&mut batch, &pass.k.gelu, &[&f], rows * c.inter)?,
            MlpKind::SwiGlu => {
                pass.linear(&mut batch, &b.mlp_in[1], &hn, rows, &u)?;
                pass.ew(&mut batch, &pass.k.swiglu, &[&f, &u], rows * c.inter)?;
            }
        }
        pass.linear(&mut batch, &b.mlp_out, &f, rows, &br)?;
        red.reduce(
            &mut batch,
            &br,
            rows * e,
            layout.rec(&format!("{l}.mlp")),
            None,
            &recs,
        )?;
        pass.ew(&mut batch, &pass.k.residual, &[&x, &br], rows * e)?;
        red.reduce(
            &mut batch,
            &x,
            rows * e,
            layout.rec(&format!("{l}.out")),
            None,
            &recs,
        )?;
        std::mem::take(&mut batch).submit(ctx)?;
        if let Some(pr) = progress {
            ctx.wait_idle("running the transformer")?;
            pr.update(l as f64, layers + 1.0);
        }
    }
    pass.norm(&mut batch, &n.ln_f, &x, &hn, rows)?;
    red.reduce(&mut batch, &hn, rows * e, layout.rec("ln_f"), None, &recs)?;
    if let Some(head) = &n.head {
        let v = c.vocab;
        let logits = buf("logits", layout.logit_rows * v)?;
        let mut rec = layout.rec("logits");
        let mut r0 = 0;
        while r0 < rows {
            let nr = layout.logit_rows.min(rows - r0);
            for (v0, nv, chunk) in &pass.tensor(head)?.chunks {
                let p = GemmParams {
                    m: nr as u32,
                    n: *nv as u32,
                    k: e as u32,
                    lda: e as u32,
                    ldb: e as u32,
                    ldc: v as u32,
                    a_off: (r0 * e) as u32,
                    c_off: *v0 as u32,
                    ..GemmParams::default()
                };
                gpu.gemm()
                    .record(&mut batch, GemmForm::Nt, &p, &hn, chunk, &logits)?;
            }
            red.reduce(&mut batch, &logits, nr * v, rec, None, &recs)?;
            rec += crate::net::mirror::records(nr * v);
            let p = TfParams {
                rows: nr as u32,
                row0: r0 as u32,
                width: v as u32,
                seq: tokens.seq as u32,
                ..TfParams::default()
            };
            Pass::push(
                &mut batch,
                &pass.k.lm_loss,
                &p,
                &[&logits, &tok_buf, &loss_rows],
                ctx.dispatch_2d(nr)?,
            );
            std::mem::take(&mut batch).submit(ctx)?;
            r0 += nr;
        }
    }
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("transformer"),
        });
    std::mem::take(&mut batch).record(ctx, &mut enc)?;
    let words = |b: u64| 4 * b;
    let raw_len = RawTfm::zeroed(c, tokens, &layout);
    let out = ctx.read_back(
        enc,
        &[
            (&recs, words(raw_len.recs.len() as u64)),
            (&att_rows, words(raw_len.att.len().max(1) as u64)),
            (&loss_rows, words(raw_len.loss.len().max(1) as u64)),
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
    };
    if let Some(pr) = progress {
        pr.update(layers + 1.0, layers + 1.0);
    }
    Ok((raw, layout))
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
        all.extend_from_slice(pass.m.weights.get(b)?);
    }
    let b = pass.ctx().storage_from("q|k|v bias", &all);
    pass.add_bias(batch, out, rows, &b, ld)
}
