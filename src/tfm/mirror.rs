//! The CPU mirror of the device's transformer pass ([`super::device`]): the
//! same operation sequences as `shaders/transformer.wgsl` and the GEMM
//! variants, in the device's arithmetic class ([`crate::net::arith`]), so a
//! conforming device's raw results are reproduced bit for bit.
//!
//! - every linear map is each output's ascending-k chain `acc = fma(x, w,
//!   acc)` from +0 ([`crate::net::mirror::chain`]), then the bias added;
//! - norms, attention and the loss terms are per row, every sum sequential in
//!   index order, as the kernels run them;
//! - the statistics records are `partial_stats`' ([`crate::net::mirror`]).

use super::{att_words, Linear, MlpKind, Model, NormKind, PassLayout, RawTfm, Tokens};
use crate::error::Result;
use crate::gpu::layout::RED_WORKGROUP;

/// Lanes of an attention workgroup (`ATT_WG` in the shader).
const ATT_WG: usize = 64;
use crate::gpu::probe::FmaMode;
use crate::model::spec::Layout;
use crate::net::arith::{self, exp_neg, recip12, sigmoid2, Arith};
use crate::net::mirror::{chain, reduce, transpose};

/// [`run`] in the probed arithmetic class: fused `fma`, else two roundings.
pub fn run_in(class: FmaMode, m: &Model, tokens: &Tokens, layout: &PassLayout) -> Result<RawTfm> {
    match class {
        FmaMode::Fused => run::<arith::Fused>(m, tokens, layout),
        _ => run::<arith::Unfused>(m, tokens, layout),
    }
}

/// `x W^T` or `x W` (by the weight's layout) plus the bias: rows x n_out.
fn linear<A: Arith>(m: &Model, l: &Linear, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    let w = m.weights.get(&l.weight)?;
    let (k, n) = (l.n_in as usize, l.n_out as usize);
    let mut y = vec![0f32; rows * n];
    match m.weights.layout(&l.weight) {
        Layout::InOut => chain::<A>(rows, n, k, x, w, &mut y, false),
        Layout::OutIn => chain::<A>(rows, n, k, x, &transpose(w, n, k), &mut y, false),
    }
    if let Some(b) = &l.bias {
        add_bias(&mut y, m.weights.get(b)?);
    }
    Ok(y)
}

/// `y[i] += b[i % width]`, the `add_bias` kernel.
fn add_bias(y: &mut [f32], b: &[f32]) {
    for row in y.chunks_mut(b.len()) {
        for (v, &bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

/// 1 / sqrt(a): `rsqrt_newton` of the shader.
#[inline(always)]
pub fn rsqrt_newton<A: Arith>(a: f32) -> f32 {
    let mut y = f32::from_bits(0x5f37_59df_u32.wrapping_sub(a.to_bits() >> 1));
    let h = a * 0.5;
    for _ in 0..3 {
        let yy = y * y;
        y *= A::fma(-h, yy, 1.5);
    }
    y
}

/// 1 / s for s >= 1: the exponent split off by its bits, `recip12` of the
/// fraction, the exponent subtracted from the result's field.
#[inline(always)]
pub fn recip_split<A: Arith>(s: f32) -> f32 {
    let bits = s.to_bits();
    let p = (bits >> 23).wrapping_sub(127);
    let f = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    f32::from_bits(recip12::<A>(f).to_bits().wrapping_sub(p << 23))
}

/// The halving tree's sum of `lanes` (`tree_sum` / `att_tree` of the shader).
fn tree_sum(lanes: &mut [f32]) -> f32 {
    let mut s = lanes.len() / 2;
    while s > 0 {
        for l in 0..s {
            lanes[l] += lanes[l + s];
        }
        s /= 2;
    }
    lanes[0]
}

/// The halving tree's maximum of `lanes` (`select(a, b, b > a)`).
fn tree_max(lanes: &mut [f32]) -> f32 {
    let mut s = lanes.len() / 2;
    while s > 0 {
        for l in 0..s {
            if lanes[l + s] > lanes[l] {
                lanes[l] = lanes[l + s];
            }
        }
        s /= 2;
    }
    lanes[0]
}

/// The `norm` kernel over every row of `x` (width n): per row, each of
/// [`RED_WORKGROUP`] lanes folds its strided elements in order, then the tree.
fn norm<A: Arith>(
    m: &Model,
    (w, b): &(String, Option<String>),
    x: &[f32],
    n: usize,
) -> Result<Vec<f32>> {
    let w = m.weights.get(w)?;
    let b = match b {
        Some(b) => Some(m.weights.get(b)?),
        None => None,
    };
    let inv_n = (1.0 / n as f64) as f32;
    let eps = m.cfg.eps;
    let rms = m.cfg.norm == NormKind::Rms;
    let wg = RED_WORKGROUP as usize;
    let mut y = vec![0f32; x.len()];
    let mut lanes = vec![0f32; wg];
    for (row, out) in x.chunks(n).zip(y.chunks_mut(n)) {
        let mut mean = 0f32;
        if !rms {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let mut s = 0f32;
                for &v in row.iter().skip(l).step_by(wg) {
                    s += v;
                }
                *lane = s;
            }
            mean = tree_sum(&mut lanes) * inv_n;
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut d2 = 0f32;
            for &v in row.iter().skip(l).step_by(wg) {
                let d = v - mean;
                d2 = A::fma(d, d, d2);
            }
            *lane = d2;
        }
        let inv = rsqrt_newton::<A>(A::fma(tree_sum(&mut lanes), inv_n, eps));
        for c in 0..n {
            out[c] = if rms {
                w[c] * (row[c] * inv)
            } else {
                let t = (row[c] - mean) * inv;
                match b {
                    Some(b) => A::fma(t, w[c], b[c]),
                    None => t * w[c],
                }
            };
        }
    }
    Ok(y)
}

/// The `rope` kernel on `heads` heads from column `col` of rows of `ld`.
#[allow(clippy::too_many_arguments)]
fn rope<A: Arith>(
    qkv: &mut [f32],
    ld: usize,
    col: usize,
    heads: usize,
    hd: usize,
    seq: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let half = hd / 2;
    for (r, row) in qkv.chunks_mut(ld).enumerate() {
        let t = r % seq;
        for h in 0..heads {
            for i in 0..half {
                let (ai, bi) = (col + h * hd + i, col + h * hd + i + half);
                let (a, b) = (row[ai], row[bi]);
                let (c, s) = (cos[t * half + i], sin[t * half + i]);
                row[ai] = A::fma(a, c, -(b * s));
                row[bi] = A::fma(b, c, a * s);
            }
        }
    }
}

/// The `attention` kernel: output rows x (heads x hd), and the row sums.
fn attention<A: Arith>(m: &Model, qkv: &[f32], seq: usize, out: &mut [f32], sums: &mut [u32]) {
    let c = &m.cfg;
    let (h, kvh, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    let ld = c.qkv_width() as usize;
    let (k_col, v_col) = (h * hd, (h + kvh) * hd);
    let (scale, window) = (c.score_scale, c.window as usize);
    let rows = qkv.len() / ld;
    let one_row = |r: usize, out: &mut [f32], sums: &mut [u32]| {
        let t = r % seq;
        let j0 = if window != 0 && t + 1 > window {
            r + 1 - window
        } else {
            r - t
        };
        let keys = r + 1 - j0;
        let mut sc = vec![0f32; keys];
        let mut la = [0f32; ATT_WG];
        let mut lb = [0f32; ATT_WG];
        for hh in 0..h {
            let g = hh / (h / kvh);
            let q = &qkv[r * ld + hh * hd..r * ld + (hh + 1) * hd];
            for (i, s) in sc.iter_mut().enumerate() {
                let j = j0 + i;
                let k = &qkv[j * ld + k_col + g * hd..j * ld + k_col + (g + 1) * hd];
                let mut acc = 0f32;
                for d in 0..hd {
                    acc = A::fma(q[d], k[d], acc);
                }
                *s = acc * scale;
            }
            for (l, lane) in la.iter_mut().enumerate() {
                let mut m = f32::NEG_INFINITY;
                for &s in sc.iter().skip(l).step_by(ATT_WG) {
                    if s > m {
                        m = s;
                    }
                }
                *lane = m;
            }
            let mx = tree_max(&mut la);
            for l in 0..ATT_WG {
                let (mut sum, mut ent) = (0f32, 0f32);
                for i in (l..keys).step_by(ATT_WG) {
                    let z = sc[i] - mx;
                    let e = exp_neg::<A>(z);
                    sc[i] = e;
                    sum += e;
                    ent = A::fma(e, z, ent);
                }
                la[l] = sum;
                lb[l] = ent;
            }
            let total = tree_sum(&mut la);
            let ent = tree_sum(&mut lb);
            let inv = recip_split::<A>(total);
            let acc = &mut out[hh * hd..(hh + 1) * hd];
            for (d, a) in acc.iter_mut().enumerate() {
                let mut v = 0f32;
                for (i, &e) in sc.iter().enumerate() {
                    v = A::fma(e * inv, qkv[(j0 + i) * ld + v_col + g * hd + d], v);
                }
                *a = v;
            }
            sums[2 * hh] = total.to_bits();
            sums[2 * hh + 1] = ent.to_bits();
        }
    };
    let per = rows.div_ceil(crate::rng::cpu::threads()).max(1);
    std::thread::scope(|s| {
        for (i, (o, sm)) in out
            .chunks_mut(per * h * hd)
            .zip(sums.chunks_mut(per * 2 * h))
            .enumerate()
        {
            let one_row = &one_row;
            s.spawn(move || {
                for (k, (o, sm)) in o.chunks_mut(h * hd).zip(sm.chunks_mut(2 * h)).enumerate() {
                    one_row(i * per + k, o, sm);
                }
            });
        }
    });
}

/// The `lm_loss` kernel for the rows `row0 ..` of a logits block: per row,
/// each of [`RED_WORKGROUP`] lanes folds its strided elements in order, then
/// the halving tree.
fn lm_loss<A: Arith>(logits: &[f32], vocab: usize, row0: usize, tokens: &Tokens, out: &mut [u32]) {
    let seq = tokens.seq as usize;
    let wg = RED_WORKGROUP as usize;
    let mut lanes = vec![0f32; wg];
    for (r, row) in logits.chunks(vocab).enumerate() {
        let gr = row0 + r;
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut m = f32::NEG_INFINITY;
            for &x in row.iter().skip(l).step_by(wg) {
                if x > m {
                    m = x;
                }
            }
            *lane = m;
        }
        let mx = tree_max(&mut lanes);
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut sum = 0f32;
            for &x in row.iter().skip(l).step_by(wg) {
                sum += exp_neg::<A>(x - mx);
            }
            *lane = sum;
        }
        let total = tree_sum(&mut lanes);
        let mut next = 0f32;
        if gr % seq + 1 < seq {
            let tok = tokens.ids[gr + 1] as usize;
            if tok < vocab {
                next = row[tok];
            }
        }
        out[3 * gr] = mx.to_bits();
        out[3 * gr + 1] = total.to_bits();
        out[3 * gr + 2] = next.to_bits();
    }
}

/// Runs the mirror of the device's pass in arithmetic class `A`.
pub fn run<A: Arith>(m: &Model, tokens: &Tokens, layout: &PassLayout) -> Result<RawTfm> {
    let c = &m.cfg;
    let mut raw = RawTfm::zeroed(c, tokens, layout);
    let (rows, e, seq) = (
        tokens.rows() as usize,
        c.hidden as usize,
        tokens.seq as usize,
    );
    let n = &m.names;
    // Embedding.
    let tok = m.weights.get(&n.tok)?;
    let pos = match &n.pos {
        Some(p) => Some(m.weights.get(p)?),
        None => None,
    };
    let mut x = vec![0f32; rows * e];
    for (r, row) in x.chunks_mut(e).enumerate() {
        let t = tokens.ids[r] as usize;
        row.copy_from_slice(&tok[t * e..(t + 1) * e]);
        if let Some(p) = pos {
            let p = &p[(r % seq) * e..(r % seq + 1) * e];
            for (v, &pv) in row.iter_mut().zip(p) {
                *v += pv;
            }
        }
    }
    reduce::<A>(&x, None, &mut raw.recs, layout.rec("embed"));
    let (cos, sin) = m.rope_tables(tokens.seq);
    let (h, kvh, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    let ld = c.qkv_width() as usize;
    let per_layer = (att_words(c, tokens) / c.layers.max(1)) as usize;
    for (i, b) in n.blocks.iter().enumerate() {
        let l = i + 1;
        let hn = norm::<A>(m, &b.ln1, &x, e)?;
        reduce::<A>(&hn, None, &mut raw.recs, layout.rec(&format!("{l}.ln1")));
        // q|k|v rows.
        let mut qkv = vec![0f32; rows * ld];
        let mut col = 0;
        for p in &b.qkv {
            let y = linear::<A>(m, p, &hn, rows)?;
            let w = p.n_out as usize;
            for (dst, src) in qkv.chunks_mut(ld).zip(y.chunks(w)) {
                dst[col..col + w].copy_from_slice(src);
            }
            col += w;
        }
        if !c.inv_freq.is_empty() {
            rope::<A>(&mut qkv, ld, 0, h, hd, seq, &cos, &sin);
            rope::<A>(&mut qkv, ld, h * hd, kvh, hd, seq, &cos, &sin);
        }
        let mut att = vec![0f32; rows * h * hd];
        attention::<A>(
            m,
            &qkv,
            seq,
            &mut att,
            &mut raw.att[i * per_layer..(i + 1) * per_layer],
        );
        let a = linear::<A>(m, &b.o, &att, rows)?;
        reduce::<A>(&a, None, &mut raw.recs, layout.rec(&format!("{l}.attn")));
        for (v, &d) in x.iter_mut().zip(&a) {
            *v += d;
        }
        reduce::<A>(&x, None, &mut raw.recs, layout.rec(&format!("{l}.mid")));
        let h2 = norm::<A>(m, &b.ln2, &x, e)?;
        reduce::<A>(&h2, None, &mut raw.recs, layout.rec(&format!("{l}.ln2")));
        let mut f = linear::<A>(m, &b.mlp_in[0], &h2, rows)?;
        match c.mlp {
            MlpKind::Gelu => f
                .iter_mut()
                .for_each(|v| *v = arith::act::<A>(crate::net::act::Activation::Gelu, *v)),
            MlpKind::SwiGlu => {
                let u = linear::<A>(m, &b.mlp_in[1], &h2, rows)?;
                for (g, &u) in f.iter_mut().zip(&u) {
                    *g = (*g * sigmoid2::<A>(*g).0) * u;
                }
            }
        }
        let o = linear::<A>(m, &b.mlp_out, &f, rows)?;
        reduce::<A>(&o, None, &mut raw.recs, layout.rec(&format!("{l}.mlp")));
        for (v, &d) in x.iter_mut().zip(&o) {
            *v += d;
        }
        reduce::<A>(&x, None, &mut raw.recs, layout.rec(&format!("{l}.out")));
    }
    let xf = norm::<A>(m, &n.ln_f, &x, e)?;
    reduce::<A>(&xf, None, &mut raw.recs, layout.rec("ln_f"));
    if let Some(head) = &n.head {
        let v = c.vocab as usize;
        let wt = transpose(m.weights.get(head)?, v, e);
        let mut rec = layout.rec("logits");
        let blk = layout.logit_rows as usize;
        let mut r0 = 0;
        while r0 < rows {
            let nr = blk.min(rows - r0);
            let mut logits = vec![0f32; nr * v];
            chain::<A>(
                nr,
                v,
                e,
                &xf[r0 * e..(r0 + nr) * e],
                &wt,
                &mut logits,
                false,
            );
            reduce::<A>(&logits, None, &mut raw.recs, rec);
            rec += crate::net::mirror::records((nr * v) as u64);
            lm_loss::<A>(&logits, v, r0, tokens, &mut raw.loss);
            r0 += nr;
        }
    }
    Ok(raw)
}
