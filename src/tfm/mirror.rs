//! The CPU mirror of the device's transformer pass ([`super::device`]): the
//! same operation sequences as `shaders/net/transformer.wgsl` and the GEMM
//! variants, in the device's arithmetic class ([`crate::act::arith`]), so a
//! conforming device's raw results are reproduced bit for bit.
//!
//! - every linear map is each output's ascending-k chain `acc = fma(x, w,
//!   acc)` from +0 (`chain`), then the bias added;
//! - norms, attention and the loss terms are per row, every sum sequential in
//!   index order, as the kernels run them;
//! - the statistics records are `partial_stats`' ([`crate::net::mirror`]).

use super::{
    att_words, BlockNames, Linear, MlpKind, Model, NormKind, PassLayout, RawTfm, Tokens, K_PIECE,
};
use crate::error::{Error, Result};
use crate::gpu::layout::RED_WORKGROUP;

/// Lanes of an attention workgroup (`ATT_WG` in the shader).
const ATT_WG: usize = 64;
use crate::act::arith::{self, exp_neg, recip12, sigmoid2, Arith};
use crate::gpu::probe::FmaMode;
use crate::model::spec::Layout;
use crate::net::mirror::{chain_pieces, reduce, transpose};

/// [`run`] in the probed arithmetic class: fused `fma`, else two roundings.
pub fn run_in(class: FmaMode, m: &Model, tokens: &Tokens, layout: &PassLayout) -> Result<RawTfm> {
    match class {
        FmaMode::Fused => run::<arith::Fused>(m, tokens, layout),
        _ => run::<arith::Unfused>(m, tokens, layout),
    }
}

/// `x W^T` or `x W` (by the weight's layout) plus the bias: rows x n_out.
fn linear<A: Arith>(m: &Model, l: &Linear, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    let w = &*m.weights.get(&l.weight)?;
    let (k, n) = (l.n_in as usize, l.n_out as usize);
    let mut y = vec![0f32; rows * n];
    match m.weights.layout(&l.weight) {
        Layout::InOut => chain_k::<A>(rows, n, k, x, w, &mut y, false),
        Layout::OutIn => chain_k::<A>(rows, n, k, x, &transpose(w, n, k), &mut y, false),
    }
    if let Some(b) = &l.bias {
        add_bias(&mut y, &m.weights.get(b)?);
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
pub(crate) fn rsqrt_newton<A: Arith>(a: f32) -> f32 {
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
pub(crate) fn recip_split<A: Arith>(s: f32) -> f32 {
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

/// A row's (mean, inverse root, sum of centred squares): the shader's
/// `norm_stats`, shared by the
/// norm and its backward. Each of [`RED_WORKGROUP`] lanes folds its strided
/// elements in order, then the tree.
fn norm_stats<A: Arith>(
    row: &[f32],
    rms: bool,
    (inv_n, eps): (f32, f32),
    lanes: &mut [f32],
) -> (f32, f32, f32) {
    let wg = lanes.len();
    let lane_sum = |lanes: &mut [f32], f: &dyn Fn(f32, f32) -> f32| {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = row.iter().skip(l).step_by(wg).fold(0f32, |s, &v| f(s, v));
        }
        tree_sum(lanes)
    };
    let mean = if rms {
        0.0
    } else {
        lane_sum(lanes, &|s, v| s + v) * inv_n
    };
    let d2 = lane_sum(lanes, &|s, v| {
        let d = v - mean;
        A::fma(d, d, s)
    });
    (mean, rsqrt_newton::<A>(A::fma(d2, inv_n, eps)), d2)
}

/// The `norm_var` kernel: each row's sum of centred squares times 1/width
/// into `out`.
fn norm_vars<A: Arith>(m: &Model, x: &[f32], n: usize, out: &mut [u32]) {
    let inv_n = (1.0 / n as f64) as f32;
    let rms = m.cfg.norm == NormKind::Rms;
    let mut lanes = vec![0f32; RED_WORKGROUP as usize];
    for (row, o) in x.chunks(n).zip(out) {
        let (_, _, d2) = norm_stats::<A>(row, rms, (inv_n, m.cfg.eps), &mut lanes);
        *o = (d2 * inv_n).to_bits();
    }
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
    Ok(norm_with::<A>(m, &w, b.as_deref(), x, n))
}

/// The `norm` kernel with weight `w` and bias `b` (unit weight and no bias:
/// the normalized input itself).
fn norm_with<A: Arith>(m: &Model, w: &[f32], b: Option<&[f32]>, x: &[f32], n: usize) -> Vec<f32> {
    let inv_n = (1.0 / n as f64) as f32;
    let eps = m.cfg.eps;
    let rms = m.cfg.norm == NormKind::Rms;
    let wg = RED_WORKGROUP as usize;
    let mut y = vec![0f32; x.len()];
    let mut lanes = vec![0f32; wg];
    for (row, out) in x.chunks(n).zip(y.chunks_mut(n)) {
        let (mean, inv, _) = norm_stats::<A>(row, rms, (inv_n, eps), &mut lanes);
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
    y
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

/// The first key row query row `r` sees and how many: its sequence's rows
/// up to `r`, the last `window` of them when `window > 0` (the shaders'
/// `key_range`). The forward and the backward share it.
fn key_range(r: usize, seq: usize, window: usize) -> (usize, usize) {
    let t = r % seq;
    if window == u32::MAX as usize {
        // Bidirectional: every row of the sequence.
        return (r - t, seq);
    }
    let j0 = if window != 0 && t + 1 > window {
        r + 1 - window
    } else {
        r - t
    };
    (j0, r + 1 - j0)
}

/// One element of a GEMM over `n` terms `(a_u, b_u)`: the ascending chain
/// `acc = fma(a, b, acc)` from +0 in pieces of at most [`K_PIECE`] terms,
/// each later piece's chain added to the result (the device's
/// `record_split`).
fn piece_chain<A: Arith>(n: usize, term: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut out = 0f32;
    for k0 in (0..n).step_by(K_PIECE) {
        let mut acc = 0f32;
        for u in k0..n.min(k0 + K_PIECE) {
            let (a, b) = term(u);
            acc = A::fma(a, b, acc);
        }
        out = if k0 == 0 { acc } else { out + acc };
    }
    out
}

/// The attention tile (see [`super::tiles`]) holding row `r` of `rows`:
/// `(first row, rows)`.
fn tile_of(r: usize, seq: usize, rows: usize) -> (usize, usize) {
    let full = super::tile_seqs(seq as u64) as usize * seq;
    let t0 = r / full * full;
    (t0, full.min(rows - t0))
}

/// Attention (the device's tiles: scores, `att_softmax`, P V): output rows x
/// (heads x hd), and the row sums.
fn attention<A: Arith>(m: &Model, qkv: &[f32], seq: usize, out: &mut [f32], sums: &mut [u32]) {
    let c = &m.cfg;
    let (h, kvh, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    let ld = c.qkv_width() as usize;
    let (k_col, v_col) = (h * hd, (h + kvh) * hd);
    let (scale, window) = (c.score_scale, c.att_window() as usize);
    let rows = qkv.len() / ld;
    let one_row = |r: usize, out: &mut [f32], sums: &mut [u32]| {
        let (j0, keys) = key_range(r, seq, window);
        let mut sc = vec![0f32; keys];
        let mut la = [0f32; ATT_WG];
        let mut lb = [0f32; ATT_WG];
        for hh in 0..h {
            let g = c.kv_head(hh as u64) as usize;
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
            // P V over every key of the tile, the ones not seen with
            // probability 0 (the device's GEMM).
            let (s0, span) = tile_of(r, seq, rows);
            let p: Vec<f32> = (s0..s0 + span)
                .map(|j| {
                    if j >= j0 && j < j0 + keys {
                        sc[j - j0] * inv
                    } else {
                        0.0
                    }
                })
                .collect();
            let acc = &mut out[hh * hd..(hh + 1) * hd];
            for (d, a) in acc.iter_mut().enumerate() {
                *a = piece_chain::<A>(span, |u| (p[u], qkv[(s0 + u) * ld + v_col + g * hd + d]));
            }
            sums[3 * hh] = total.to_bits();
            sums[3 * hh + 1] = ent.to_bits();
            sums[3 * hh + 2] = mx.to_bits();
        }
    };
    let per = rows.div_ceil(crate::rng::cpu::threads()).max(1);
    std::thread::scope(|s| {
        for (i, (o, sm)) in out
            .chunks_mut(per * h * hd)
            .zip(sums.chunks_mut(per * 3 * h))
            .enumerate()
        {
            let one_row = &one_row;
            s.spawn(move || {
                for (k, (o, sm)) in o.chunks_mut(h * hd).zip(sm.chunks_mut(3 * h)).enumerate() {
                    one_row(i * per + k, o, sm);
                }
            });
        }
    });
}

/// The `lm_loss` kernel for the rows `row0 ..` of a logits block: per row,
/// each of [`RED_WORKGROUP`] lanes folds its strided elements in order, then
/// the halving tree.
fn lm_loss<A: Arith>(
    logits: &[f32],
    (vocab, shift): (usize, usize),
    row0: usize,
    tokens: &Tokens,
    out: &mut [u32],
) {
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
        if gr % seq + shift < seq {
            let tok = tokens.ids[gr + shift] as usize;
            if tok < vocab {
                next = row[tok];
            }
        }
        out[3 * gr] = mx.to_bits();
        out[3 * gr + 1] = total.to_bits();
        out[3 * gr + 2] = next.to_bits();
    }
}

/// The attention branch from the stream `x` (see the device's
/// `attn_branch`): (norm1 output, q|k|v, attention output, projection).
#[allow(clippy::type_complexity)]
fn attn_branch<A: Arith>(
    m: &Model,
    b: &BlockNames,
    x: &[f32],
    tokens: &Tokens,
    (cos, sin): (&[f32], &[f32]),
    sums: &mut [u32],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    let hn = norm::<A>(m, &b.ln1, x, m.cfg.hidden as usize)?;
    let (qkv, att, br) = attn_core::<A>(m, b, &hn, tokens, (cos, sin), sums)?;
    Ok((hn, qkv, att, br))
}

/// Attention on `hn` (see the device's `attn_core`): (q|k|v, attention
/// output, projection).
#[allow(clippy::type_complexity)]
fn attn_core<A: Arith>(
    m: &Model,
    b: &BlockNames,
    hn: &[f32],
    tokens: &Tokens,
    (cos, sin): (&[f32], &[f32]),
    sums: &mut [u32],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let c = &m.cfg;
    let (rows, seq) = (tokens.rows() as usize, tokens.seq as usize);
    let (h, kvh, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    let ld = c.qkv_width() as usize;
    let mut qkv = vec![0f32; rows * ld];
    let mut col = 0;
    for p in &b.qkv {
        let y = linear::<A>(m, p, hn, rows)?;
        let w = p.n_out as usize;
        for (dst, src) in qkv.chunks_mut(ld).zip(y.chunks(w)) {
            dst[col..col + w].copy_from_slice(src);
        }
        col += w;
    }
    if !c.inv_freq.is_empty() {
        rope::<A>(&mut qkv, ld, 0, h, hd, seq, cos, sin);
        rope::<A>(&mut qkv, ld, h * hd, kvh, hd, seq, cos, sin);
    }
    let mut att = vec![0f32; rows * h * hd];
    attention::<A>(m, &qkv, seq, &mut att, sums);
    let br = linear::<A>(m, &b.o, &att, rows)?;
    Ok((qkv, att, br))
}

/// The MLP branch's values (see the device's `mlp_branch`).
struct MlpValues {
    hn: Vec<f32>,
    z: Vec<f32>,
    u: Vec<f32>,
    f: Vec<f32>,
    br: Vec<f32>,
}

fn mlp_branch<A: Arith>(m: &Model, b: &BlockNames, x: &[f32], rows: usize) -> Result<MlpValues> {
    let hn = norm::<A>(m, &b.ln2, x, m.cfg.hidden as usize)?;
    mlp_core::<A>(m, b, hn, rows)
}

/// The MLP on `hn` (see the device's `mlp_core`).
fn mlp_core<A: Arith>(m: &Model, b: &BlockNames, hn: Vec<f32>, rows: usize) -> Result<MlpValues> {
    let c = &m.cfg;
    let z = linear::<A>(m, &b.mlp_in[0], &hn, rows)?;
    let (u, f): (Vec<f32>, Vec<f32>) = match c.mlp {
        MlpKind::Gelu => (
            Vec::new(),
            z.iter().map(|&v| arith::act::<A>(m.cfg.gelu, v)).collect(),
        ),
        MlpKind::SwiGlu => {
            let u = linear::<A>(m, &b.mlp_in[1], &hn, rows)?;
            let f = z
                .iter()
                .zip(&u)
                .map(|(&g, &u)| (g * sigmoid2::<A>(g).0) * u)
                .collect();
            (u, f)
        }
    };
    let br = linear::<A>(m, &b.mlp_out, &f, rows)?;
    Ok(MlpValues { hn, z, u, f, br })
}

/// Runs the mirror of the device's pass in arithmetic class `A`.
pub fn run<A: Arith>(m: &Model, tokens: &Tokens, layout: &PassLayout) -> Result<RawTfm> {
    tokens.check(&m.cfg)?;
    let c = &m.cfg;
    let mut raw = RawTfm::zeroed(c, tokens, layout);
    let (rows, e, seq) = (
        tokens.rows() as usize,
        c.hidden as usize,
        tokens.seq as usize,
    );
    let n = &m.names;
    // Embedding.
    let tok = &*m.weights.get(&n.tok)?;
    let pos = match &n.pos {
        Some(p) => Some(m.weights.get(p)?),
        None => None,
    };
    let pos = pos.as_deref();
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
    // BERT: the token-type table's first row (every token of type 0), then
    // the embeddings' norm.
    if let Some(t) = &n.types {
        let table = m.weights.get(t)?;
        let row = table.get(..e).ok_or_else(|| {
            Error::internal(
                "transformer mirror",
                "token-type table shorter than the width",
            )
        })?;
        add_bias(&mut x, row);
    }
    let mut emb_sum = None;
    if let Some(ln) = &n.ln_e {
        let y = norm::<A>(m, ln, &x, e)?;
        emb_sum = Some(std::mem::replace(&mut x, y));
    }
    reduce::<A>(&x, None, &mut raw.recs, layout.rec("embed"));
    let (cos, sin) = m.rope_tables(tokens.seq);
    let per_layer = (att_words(c, tokens) / c.layers.max(1)) as usize;
    let mut saved = Vec::new();
    for (i, b) in n.blocks.iter().enumerate() {
        let l = i + 1;
        let x_in = (layout.backward && !c.post_norm).then(|| x.clone());
        let sums = &mut raw.att[i * per_layer..(i + 1) * per_layer];
        if c.post_norm {
            // x = norm1(x + attn(x)); x = norm2(x + mlp(x)) (the device's
            // records: the sums as `mid` and `out`).
            // The device's `add_norm`: the branch's record, the addition,
            // its sum's row variances into norm slot k and its record, the
            // norm and its record.
            let add_norm =
                |x: &[f32], br: &[f32], k: usize, ln, names: [&str; 3], raw: &mut RawTfm| {
                    let rec = |name: &str| layout.rec(&format!("{l}.{name}"));
                    reduce::<A>(br, None, &mut raw.recs, rec(names[0]));
                    let sum: Vec<f32> = x.iter().zip(br).map(|(&v, &d)| v + d).collect();
                    norm_vars::<A>(m, &sum, e, &mut raw.norm_vars[(2 * i + k) * rows..]);
                    reduce::<A>(&sum, None, &mut raw.recs, rec(names[1]));
                    let y = norm::<A>(m, ln, &sum, e)?;
                    reduce::<A>(&y, None, &mut raw.recs, rec(names[2]));
                    Ok::<_, crate::error::Error>((sum, y))
                };
            let (_, _, a) = attn_core::<A>(m, b, &x, tokens, (&cos, &sin), sums)?;
            let (s1, y1) = add_norm(&x, &a, 0, &b.ln1, ["attn", "mid", "ln1"], &mut raw)?;
            let mv = mlp_core::<A>(m, b, y1.clone(), rows)?;
            let (s2, y) = add_norm(&y1, &mv.br, 1, &b.ln2, ["mlp", "out", "ln2"], &mut raw)?;
            x = y;
            // The backward pass keeps the sums (the device's saved pair).
            if layout.backward {
                saved.push((s1, s2));
            }
            continue;
        }
        norm_vars::<A>(m, &x, e, &mut raw.norm_vars[2 * i * rows..]);
        let (hn, _, _, a) = attn_branch::<A>(m, b, &x, tokens, (&cos, &sin), sums)?;
        reduce::<A>(&hn, None, &mut raw.recs, layout.rec(&format!("{l}.ln1")));
        reduce::<A>(&a, None, &mut raw.recs, layout.rec(&format!("{l}.attn")));
        for (v, &d) in x.iter_mut().zip(&a) {
            *v += d;
        }
        reduce::<A>(&x, None, &mut raw.recs, layout.rec(&format!("{l}.mid")));
        if let Some(x_in) = x_in {
            saved.push((x_in, x.clone()));
        }
        norm_vars::<A>(m, &x, e, &mut raw.norm_vars[(2 * i + 1) * rows..]);
        let mv = mlp_branch::<A>(m, b, &x, rows)?;
        reduce::<A>(&mv.hn, None, &mut raw.recs, layout.rec(&format!("{l}.ln2")));
        reduce::<A>(&mv.br, None, &mut raw.recs, layout.rec(&format!("{l}.mlp")));
        for (v, &d) in x.iter_mut().zip(&mv.br) {
            *v += d;
        }
        reduce::<A>(&x, None, &mut raw.recs, layout.rec(&format!("{l}.out")));
    }
    // BERT's masked-LM head: dense, GELU, then the final norm.
    // (Its pre-activation is kept for the backward pass.)
    let (z_t, x_t) = match &n.transform {
        Some(t) => {
            let z = linear::<A>(m, t, &x, rows)?;
            let y: Vec<f32> = z.iter().map(|&v| arith::act::<A>(c.gelu, v)).collect();
            (z, Some(y))
        }
        None => (Vec::new(), None),
    };
    let final_in: &[f32] = x_t.as_deref().unwrap_or(&x);
    norm_vars::<A>(
        m,
        final_in,
        e,
        &mut raw.norm_vars[2 * n.blocks.len() * rows..],
    );
    let xf = norm::<A>(m, &n.ln_f, final_in, e)?;
    reduce::<A>(&xf, None, &mut raw.recs, layout.rec("ln_f"));
    // Without the loss, the backward pass starts from a fixed random
    // direction.
    let mut tied_m = Vec::new();
    let mut dxf = if layout.backward && !layout.from_loss {
        super::direction(c, tokens, m.seed)
    } else {
        Vec::new()
    };
    if let Some(head) = &n.head {
        let v = c.vocab as usize;
        let w_head = &*m.weights.get(head)?;
        let wt = transpose(w_head, v, e);
        let head_chunks = layout.chunks(v as u64, e as u64);
        let mut rec = layout.rec("logits");
        let blk = layout.logit_rows as usize;
        let targets = (tokens.batch * (tokens.seq - c.loss_shift())).max(1);
        let inv_count = (1.0 / targets as f64) as f32;
        if layout.from_loss {
            dxf = vec![0f32; rows * e];
        }
        // A tied table's cross term: M[r, r'] = dlogits[r', id_r] (the
        // device's tied_gather).
        let cross = layout.has(&super::cross_rec(&n.tok));
        if cross {
            tied_m = vec![0f32; rows * rows];
        }
        let mut r0 = 0;
        while r0 < rows {
            let nr = blk.min(rows - r0);
            let mut logits = vec![0f32; nr * v];
            chain_k::<A>(
                nr,
                v,
                e,
                &xf[r0 * e..(r0 + nr) * e],
                &wt,
                &mut logits,
                false,
            );
            if let Some(hb) = &n.head_bias {
                add_bias(&mut logits, &m.weights.get(hb)?);
            }
            reduce::<A>(&logits, None, &mut raw.recs, rec);
            rec += crate::net::mirror::records((nr * v) as u64);
            lm_loss::<A>(
                &logits,
                (v, c.loss_shift() as usize),
                r0,
                tokens,
                &mut raw.loss,
            );
            if layout.from_loss {
                dlogits::<A>(
                    &mut logits,
                    (v, c.loss_shift() as usize),
                    (r0, 0),
                    tokens,
                    &raw.loss,
                    inv_count,
                );
                if cross {
                    for r in 0..rows {
                        let id = tokens.ids[r] as usize;
                        if c.pad == Some(id as u64) || id >= v {
                            continue;
                        }
                        for b in 0..nr {
                            tied_m[r * rows + r0 + b] = logits[b * v + id];
                        }
                    }
                }
                if layout.has("dW:head") && blk >= rows {
                    weight_grad::<A>(
                        (&xf, e),
                        (&logits, v),
                        rows,
                        &mut raw.recs,
                        (layout.rec("dW:head"), super::head_bias_rec(m, layout)),
                    );
                }
                chain_split::<A>(
                    (nr, e, v),
                    &logits,
                    w_head,
                    &mut dxf[r0 * e..(r0 + nr) * e],
                    &head_chunks,
                    false,
                );
            }
            r0 += nr;
        }
        if layout.backward && blk < rows && layout.has("dW:head") {
            let chunks = layout.chunks(v as u64, e as u64);
            head_grad_by_columns::<A>(
                (&xf, w_head, &chunks),
                (blk * v, e, inv_count, c.loss_shift() as usize),
                tokens,
                &raw.loss,
                (
                    (layout.rec("dW:head"), super::head_bias_rec(m, layout)),
                    &mut raw.recs,
                ),
            );
        }
    }
    if layout.backward {
        let ln_f = (&n.ln_f, final_in);
        let mut dx = norm_through::<A>(m, ln_f, (&dxf, e), rows, (layout, &mut raw.recs))?;
        if let Some(t) = &n.transform {
            // Through the GELU, then the dense map from the stream.
            for (d, &z) in dx.iter_mut().zip(&z_t) {
                *d *= arith::dact::<A>(c.gelu, z);
            }
            let wrec = super::grad_recs(layout, t);
            weight_grad::<A>((&x, e), (&dx, e), rows, &mut raw.recs, wrec);
            let mut dy = vec![0f32; rows * e];
            linear_bwd::<A>(m, layout, t, (&dx, e, 0), rows, &mut dy, false)?;
            dx = dy;
        }
        reduce::<A>(&dx, None, &mut raw.recs, layout.rec("d.final"));
        for (i, b) in n.blocks.iter().enumerate().rev() {
            let sums = raw.att[i * per_layer..(i + 1) * per_layer].to_vec();
            if c.post_norm {
                // The block's input as the device recomputes it: the
                // previous block's second norm, or the embeddings' norm.
                let x_in = match (i.checked_sub(1), &n.ln_e, &emb_sum) {
                    (Some(p), _, _) => norm::<A>(m, &n.blocks[p].ln2, &saved[p].1, e)?,
                    (None, Some(ln), Some(s)) => norm::<A>(m, ln, s, e)?,
                    _ => {
                        return Err(Error::internal(
                            "transformer mirror",
                            "a post-norm model without the embeddings' norm",
                        ))
                    }
                };
                backward_post::<A>(
                    m,
                    (i, b),
                    (&saved[i], &x_in),
                    &sums,
                    &mut dx,
                    tokens,
                    layout,
                    &mut raw.recs,
                )?;
                continue;
            }
            backward_block::<A>(
                m,
                (i, b),
                &saved[i],
                &sums,
                &mut dx,
                tokens,
                layout,
                &mut raw.recs,
            )?;
        }
        // BERT: back through the embeddings' norm to their sum.
        if let (Some(ln), Some(sum)) = (&n.ln_e, &emb_sum) {
            dx = norm_through::<A>(m, (ln, sum), (&dx, e), rows, (layout, &mut raw.recs))?;
        }
        embedding_grads::<A>(m, &dx, tokens, (layout, &mut raw.recs));
        let cross = super::cross_rec(&n.tok);
        if layout.has(&cross) {
            let rec = layout.rec(&cross);
            let mut g = vec![0f32; rows * rows];
            chain_k::<A>(rows, rows, e, &dx, &transpose(&xf, rows, e), &mut g, false);
            for (a, &b) in g.iter_mut().zip(&tied_m) {
                *a *= b;
            }
            reduce::<A>(&g, None, &mut raw.recs, rec);
        }
    }
    Ok(raw)
}

/// `C (+)= A B` (A: m x k, B: k x n, row-major) with k split at the chunk
/// boundaries `splits` (each later piece's chain added to C), as the device
/// runs a product whose B is stored in row chunks.
fn chain_split<A: Arith>(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    splits: &[(usize, usize)],
    accumulate: bool,
) {
    for (i, &(k0, nk)) in splits.iter().enumerate() {
        let sub: Vec<f32> = if k0 == 0 && nk == k {
            a.to_vec()
        } else {
            a.chunks(k)
                .flat_map(|row| row[k0..k0 + nk].iter().copied())
                .collect()
        };
        chain_k::<A>(
            m,
            n,
            nk,
            &sub,
            &b[k0 * n..(k0 + nk) * n],
            c,
            accumulate || i > 0,
        );
    }
}

/// `C (+)= A B` (A: m x k, B: k x n, dense row-major) as products over
/// pieces of at most [`K_PIECE`] of k, each later piece added to C: the
/// device's `record_split`.
fn chain_k<A: Arith>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    chain_pieces::<A>((m, n, k), K_PIECE, a, b, c, accumulate);
}

/// A rows x w matrix's Gram matrix a a^T, as the device forms it.
fn gram<A: Arith>(a: &[f32], rows: usize, w: usize) -> Vec<f32> {
    let mut g = vec![0f32; rows * rows];
    chain_k::<A>(rows, rows, w, a, &transpose(a, rows, w), &mut g, false);
    g
}

/// ||dL/dgamma||^2 and ||dL/dbeta||^2 of a norm with input `x`, as the
/// device forms them: the sums of dy dy^T and of (dy xhat)(dy xhat)^T.
fn norm_grads<A: Arith>(
    m: &Model,
    (weight, bias): &(String, Option<String>),
    (x, dy, e): (&[f32], &[f32], usize),
    rows: usize,
    (layout, recs): (&PassLayout, &mut [u32]),
) {
    if let Some(bias) = bias {
        let rec = layout.rec(&format!("db:{bias}"));
        reduce::<A>(&gram::<A>(dy, rows, e), None, recs, rec);
    }
    let mut xhat = norm_with::<A>(m, &vec![1.0; e], None, x, e);
    for (a, &d) in xhat.iter_mut().zip(dy) {
        *a *= d;
    }
    let rec = layout.rec(&format!("dg:{weight}"));
    reduce::<A>(&gram::<A>(&xhat, rows, e), None, recs, rec);
}

/// The embedding tables' ||dL/dE||^2 as the device forms them: dx dx^T
/// kept where two rows share the position (then the token id), summed.
fn embedding_grads<A: Arith>(
    m: &Model,
    dx: &[f32],
    tokens: &Tokens,
    (layout, recs): (&PassLayout, &mut [u32]),
) {
    let (rows, e, seq) = (
        tokens.rows() as usize,
        m.cfg.hidden as usize,
        tokens.seq as usize,
    );
    let g = gram::<A>(dx, rows, e);
    // Every token is of type 0: the sum of all of dx dx^T.
    if let Some(t) = &m.names.types {
        reduce::<A>(&g, None, recs, layout.rec(&format!("dE:{t}")));
    }
    let kept = |same: &dyn Fn(usize, usize) -> bool| -> Vec<f32> {
        (0..rows * rows)
            .map(|i| if same(i / rows, i % rows) { g[i] } else { 0.0 })
            .collect()
    };
    if let Some(pos) = &m.names.pos {
        let p = kept(&|r, s| r % seq == s % seq);
        reduce::<A>(&p, None, recs, layout.rec(&format!("dE:{pos}")));
    }
    let (ids, pad) = (&tokens.ids, m.cfg.pad);
    let t = kept(&|r, s| ids[r] == ids[s] && pad != Some(u64::from(ids[r])));
    reduce::<A>(&t, None, recs, layout.rec(&format!("dE:{}", m.names.tok)));
}

/// ||X^T dY||^2 as the device forms it: the Gram matrices, multiplied
/// element by element, reduced into the records from `rec`.
fn weight_grad<A: Arith>(
    (x, xw): (&[f32], usize),
    (dy, yw): (&[f32], usize),
    rows: usize,
    recs: &mut [u32],
    (rec, bias_rec): (u64, Option<u64>),
) {
    let g2 = gram::<A>(dy, rows, yw);
    gram_product::<A>((x, xw), &g2, rows, (rec, recs));
    if let Some(b) = bias_rec {
        reduce::<A>(&g2, None, recs, b);
    }
}

/// ||X^T dY||^2 from dY dY^T (`g2`) as the device forms it: X X^T, the two
/// multiplied element by element, reduced into the records from `rec`.
fn gram_product<A: Arith>(
    (x, xw): (&[f32], usize),
    g2: &[f32],
    rows: usize,
    (rec, recs): (u64, &mut [u32]),
) {
    let mut g1 = gram::<A>(x, rows, xw);
    for (a, b) in g1.iter_mut().zip(g2) {
        *a *= b;
    }
    reduce::<A>(&g1, None, recs, rec);
}

/// The head's ||dW||^2 by vocabulary column blocks, as the device forms it
/// when the logits ran in row blocks: per storage chunk of the head, blocks
/// of as many columns as `cap` floats hold for every row; each block's
/// logits, their loss gradient and its Gram matrix, added up; then the
/// element-wise product with X X^T, summed; and the sum of the Gram
/// matrix itself for the head's bias.
fn head_grad_by_columns<A: Arith>(
    (xf, w_head, chunks): (&[f32], &[f32], &[(usize, usize)]),
    (cap, e, inv_count, shift): (usize, usize, f32, usize),
    tokens: &Tokens,
    loss: &[u32],
    ((rec, bias_rec), recs): ((u64, Option<u64>), &mut [u32]),
) {
    let rows = tokens.rows() as usize;
    let per = (cap / rows).max(1);
    let mut g2 = vec![0f32; rows * rows];
    let mut first = true;
    for &(v0, nv) in chunks {
        let mut c0 = 0;
        while c0 < nv {
            let nc = per.min(nv - c0);
            let w = &w_head[(v0 + c0) * e..(v0 + c0 + nc) * e];
            let mut logits = vec![0f32; rows * nc];
            chain_k::<A>(rows, nc, e, xf, &transpose(w, nc, e), &mut logits, false);
            dlogits::<A>(
                &mut logits,
                (nc, shift),
                (0, v0 + c0),
                tokens,
                loss,
                inv_count,
            );
            let t = transpose(&logits, rows, nc);
            chain_k::<A>(rows, rows, nc, &logits, &t, &mut g2, !first);
            first = false;
            c0 += nc;
        }
    }
    gram_product::<A>((xf, e), &g2, rows, (rec, &mut *recs));
    if let Some(b) = bias_rec {
        reduce::<A>(&g2, None, recs, b);
    }
}

/// The `dlogits` kernel over a block of rows from `row0`, `v` columns from
/// `col0`, each row's target `shift` rows on.
fn dlogits<A: Arith>(
    logits: &mut [f32],
    (v, shift): (usize, usize),
    (row0, col0): (usize, usize),
    tokens: &Tokens,
    loss: &[u32],
    inv_count: f32,
) {
    let seq = tokens.seq as usize;
    for (r, row) in logits.chunks_mut(v).enumerate() {
        let gr = row0 + r;
        if gr % seq + shift >= seq {
            row.fill(0.0);
            continue;
        }
        let mx = f32::from_bits(loss[3 * gr]);
        let inv = recip_split::<A>(f32::from_bits(loss[3 * gr + 1]));
        let target = tokens.ids[gr + shift] as usize;
        for (j, l) in row.iter_mut().enumerate() {
            let p = exp_neg::<A>(*l - mx) * inv;
            let one = if col0 + j == target { 1.0 } else { 0.0 };
            *l = (p - one) * inv_count;
        }
    }
}

/// Back through the norm `ln` with input `x` (the device's
/// `norm_through`): its parameters' gradient norms, then norm'(x)^T dy.
fn norm_through<A: Arith>(
    m: &Model,
    (ln, x): (&(String, Option<String>), &[f32]),
    (dy, e): (&[f32], usize),
    rows: usize,
    (layout, recs): (&PassLayout, &mut [u32]),
) -> Result<Vec<f32>> {
    norm_grads::<A>(m, ln, (x, dy, e), rows, (layout, recs));
    let mut dx = vec![0f32; rows * e];
    norm_bwd::<A>(m, ln, x, dy, &mut dx)?;
    Ok(dx)
}

/// The `norm_bwd` kernel: `dx += norm'(x)^T dy` per row.
fn norm_bwd<A: Arith>(
    m: &Model,
    (w, _): &(String, Option<String>),
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let w = m.weights.get(w)?;
    let n = m.cfg.hidden as usize;
    let inv_n = (1.0 / n as f64) as f32;
    let eps = m.cfg.eps;
    let rms = m.cfg.norm == NormKind::Rms;
    let wg = RED_WORKGROUP as usize;
    let mut lanes = vec![0f32; wg];
    for ((row, dyr), dxr) in x.chunks(n).zip(dy.chunks(n)).zip(dx.chunks_mut(n)) {
        let lane_sum = |lanes: &mut [f32], f: &dyn Fn(usize, f32) -> f32| {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let mut s = 0f32;
                for c in (l..n).step_by(wg) {
                    s = f(c, s);
                }
                *lane = s;
            }
            tree_sum(lanes)
        };
        let (mean, inv, _) = norm_stats::<A>(row, rms, (inv_n, eps), &mut lanes);
        let mut a = 0f32;
        if !rms {
            a = lane_sum(&mut lanes, &|c, s| s + dyr[c] * w[c]) * inv_n;
        }
        let b = lane_sum(&mut lanes, &|c, s| {
            A::fma(dyr[c] * w[c], (row[c] - mean) * inv, s)
        }) * inv_n;
        for c in 0..n {
            let xh = (row[c] - mean) * inv;
            let g = dyr[c] * w[c];
            let t = A::fma(-xh, b, g - a);
            dxr[c] += inv * t;
        }
    }
    Ok(())
}

/// `dX (+)= dY W` (or `dY W^T` for `[in, out]` weights), dY being columns
/// `col .. col + n_out` of `dy` (rows of `ld`).
#[allow(clippy::too_many_arguments)]
fn linear_bwd<A: Arith>(
    m: &Model,
    layout: &PassLayout,
    l: &Linear,
    (dy, ld, col): (&[f32], usize, usize),
    rows: usize,
    dx: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    let w = &*m.weights.get(&l.weight)?;
    let (n_in, n_out) = (l.n_in as usize, l.n_out as usize);
    let a: Vec<f32> = dy
        .chunks(ld)
        .take(rows)
        .flat_map(|row| row[col..col + n_out].iter().copied())
        .collect();
    match m.weights.layout(&l.weight) {
        Layout::OutIn => chain_split::<A>(
            (rows, n_in, n_out),
            &a,
            w,
            dx,
            &layout.chunks(n_out as u64, n_in as u64),
            accumulate,
        ),
        Layout::InOut => chain_k::<A>(
            rows,
            n_in,
            n_out,
            &a,
            &transpose(w, n_in, n_out),
            dx,
            accumulate,
        ),
    }
    Ok(())
}

/// One block's backward pass (see the device's `backward_block`).
#[allow(clippy::too_many_arguments)]
fn backward_block<A: Arith>(
    m: &Model,
    (i, b): (usize, &BlockNames),
    (x_in, mid): &(Vec<f32>, Vec<f32>),
    sums: &[u32],
    dx: &mut [f32],
    tokens: &Tokens,
    layout: &PassLayout,
    recs: &mut [u32],
) -> Result<()> {
    let l = i + 1;
    let e = m.cfg.hidden as usize;
    let rows = tokens.rows() as usize;
    // The device's `norm_back`: the norm's parameters, dx += norm'(x)^T dh,
    // its record.
    let norm_back = |ln, x: &[f32], dh: &[f32], dx: &mut [f32], name: &str, recs: &mut [u32]| {
        norm_grads::<A>(m, ln, (x, dh, e), rows, (layout, &mut *recs));
        norm_bwd::<A>(m, ln, x, dh, dx)?;
        reduce::<A>(dx, None, recs, layout.rec(&format!("{l}.{name}")));
        Ok::<_, crate::error::Error>(())
    };
    // MLP.
    let mv = mlp_branch::<A>(m, b, mid, rows)?;
    let dh = mlp_bwd::<A>(m, b, &mv, dx, rows, layout, recs)?;
    norm_back(&b.ln2, mid, &dh, dx, "dmid", recs)?;
    // Attention.
    let (cos, sin) = m.rope_tables(tokens.seq);
    let mut scratch = vec![0u32; 3 * rows * m.cfg.heads as usize];
    let (hn, qkv, att, _) = attn_branch::<A>(m, b, x_in, tokens, (&cos, &sin), &mut scratch)?;
    let dh = attn_bwd::<A>(m, b, (&hn, &qkv, &att), sums, dx, tokens, layout, recs)?;
    norm_back(&b.ln1, x_in, &dh, dx, "din", recs)
}

/// A post-norm block's backward pass (see the device's `backward_post`):
/// `sums` = (s1, s2), the two sums before the norms, and `x_in` the block's
/// input (as the device recomputes it).
#[allow(clippy::too_many_arguments)]
fn backward_post<A: Arith>(
    m: &Model,
    (i, b): (usize, &BlockNames),
    ((s1, s2), x_in): (&(Vec<f32>, Vec<f32>), &[f32]),
    sums: &[u32],
    dx: &mut [f32],
    tokens: &Tokens,
    layout: &PassLayout,
    recs: &mut [u32],
) -> Result<()> {
    let l = i + 1;
    let e = m.cfg.hidden as usize;
    let rows = tokens.rows() as usize;
    let through_norm = |ln, s: &[f32], dy: &[f32], recs: &mut [u32]| {
        norm_through::<A>(m, (ln, s), (dy, e), rows, (layout, recs))
    };
    let add_residual = |d: &mut [f32], ds: &[f32], name: &str, recs: &mut [u32]| {
        for (a, &b) in d.iter_mut().zip(ds) {
            *a += b;
        }
        reduce::<A>(d, None, recs, layout.rec(&format!("{l}.{name}")));
    };
    // MLP, on y1 = norm1(s1).
    let ds2 = through_norm(&b.ln2, s2, dx, recs)?;
    let mv = mlp_core::<A>(m, b, norm::<A>(m, &b.ln1, s1, e)?, rows)?;
    let mut d = mlp_bwd::<A>(m, b, &mv, &ds2, rows, layout, recs)?;
    add_residual(&mut d, &ds2, "dmid", recs);
    // Attention, on the block's input.
    let ds1 = through_norm(&b.ln1, s1, &d, recs)?;
    let (cos, sin) = m.rope_tables(tokens.seq);
    let mut scratch = vec![0u32; 3 * rows * m.cfg.heads as usize];
    let (qkv, att, _) = attn_core::<A>(m, b, x_in, tokens, (&cos, &sin), &mut scratch)?;
    let mut d = attn_bwd::<A>(m, b, (x_in, &qkv, &att), sums, &ds1, tokens, layout, recs)?;
    add_residual(&mut d, &ds1, "din", recs);
    dx.copy_from_slice(&d);
    Ok(())
}

/// The MLP's backward pass from dL/d(output) `dx`: dL/d(input), the weight
/// gradients into their records (see the device's `mlp_bwd`).
fn mlp_bwd<A: Arith>(
    m: &Model,
    b: &BlockNames,
    mv: &MlpValues,
    dx: &[f32],
    rows: usize,
    layout: &PassLayout,
    recs: &mut [u32],
) -> Result<Vec<f32>> {
    let c = &m.cfg;
    let (e, inter) = (c.hidden as usize, c.inter as usize);
    let wrec = |lin: &Linear| super::grad_recs(layout, lin);
    let mut dh = vec![0f32; rows * e];
    weight_grad::<A>((&mv.f, inter), (dx, e), rows, recs, wrec(&b.mlp_out));
    let mut df = vec![0f32; rows * inter];
    linear_bwd::<A>(m, layout, &b.mlp_out, (dx, e, 0), rows, &mut df, false)?;
    match c.mlp {
        MlpKind::Gelu => {
            for (d, &z) in df.iter_mut().zip(&mv.z) {
                *d *= arith::dact::<A>(m.cfg.gelu, z);
            }
            weight_grad::<A>((&mv.hn, e), (&df, inter), rows, recs, wrec(&b.mlp_in[0]));
            linear_bwd::<A>(
                m,
                layout,
                &b.mlp_in[0],
                (&df, inter, 0),
                rows,
                &mut dh,
                false,
            )?;
        }
        MlpKind::SwiGlu => {
            let mut du = vec![0f32; rows * inter];
            for k in 0..rows * inter {
                let (g, u, da) = (mv.z[k], mv.u[k], df[k]);
                let s = sigmoid2::<A>(g).0;
                du[k] = da * (g * s);
                let ds = s * A::fma(g, 1.0 - s, 1.0);
                df[k] = (da * u) * ds;
            }
            weight_grad::<A>((&mv.hn, e), (&df, inter), rows, recs, wrec(&b.mlp_in[0]));
            weight_grad::<A>((&mv.hn, e), (&du, inter), rows, recs, wrec(&b.mlp_in[1]));
            linear_bwd::<A>(
                m,
                layout,
                &b.mlp_in[0],
                (&df, inter, 0),
                rows,
                &mut dh,
                false,
            )?;
            linear_bwd::<A>(
                m,
                layout,
                &b.mlp_in[1],
                (&du, inter, 0),
                rows,
                &mut dh,
                true,
            )?;
        }
    }
    Ok(dh)
}

/// Attention's backward pass from dL/d(output projection) `dx`, on its
/// input `hn`, q|k|v and output `att` with the forward's row sums `sums`:
/// dL/d(input), the weight gradients into their records (see the device's
/// `attn_bwd`).
#[allow(clippy::too_many_arguments)]
fn attn_bwd<A: Arith>(
    m: &Model,
    b: &BlockNames,
    (hn, qkv, att): (&[f32], &[f32], &[f32]),
    sums: &[u32],
    dx: &[f32],
    tokens: &Tokens,
    layout: &PassLayout,
    recs: &mut [u32],
) -> Result<Vec<f32>> {
    let c = &m.cfg;
    let (rows, e) = (tokens.rows() as usize, c.hidden as usize);
    let (h, kvh, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    let (ld, aw, seq) = (
        c.qkv_width() as usize,
        c.attn_width() as usize,
        tokens.seq as usize,
    );
    let wrec = |lin: &Linear| super::grad_recs(layout, lin);
    let (cos, sin) = m.rope_tables(tokens.seq);
    let mut dh = vec![0f32; rows * e];
    weight_grad::<A>((att, aw), (dx, e), rows, recs, wrec(&b.o));
    let mut d_o = vec![0f32; rows * aw];
    linear_bwd::<A>(m, layout, &b.o, (dx, e, 0), rows, &mut d_o, false)?;
    let dd: Vec<f32> = (0..rows * h)
        .map(|k| {
            let mut acc = 0f32;
            for d in 0..hd {
                acc = A::fma(d_o[k * hd + d], att[k * hd + d], acc);
            }
            acc
        })
        .collect();
    let mut dqkv = vec![0f32; rows * ld];
    let (k_col, v_col) = (h * hd, (h + kvh) * hd);
    let (scale, window) = (c.score_scale, c.att_window() as usize);
    let score = |r: usize, j: usize, hh: usize, g: usize| {
        let mut s = 0f32;
        for d in 0..hd {
            s = A::fma(
                qkv[r * ld + hh * hd + d],
                qkv[j * ld + k_col + g * hd + d],
                s,
            );
        }
        s * scale
    };
    // p and dS of query r and key j (the device's att_tile).
    let p_ds = |r: usize, j: usize, hh: usize, g: usize| {
        let a = 3 * (r * h + hh);
        let (s_sum, mx) = (f32::from_bits(sums[a]), f32::from_bits(sums[a + 2]));
        let p = exp_neg::<A>(score(r, j, hh, g) - mx) * recip_split::<A>(s_sum);
        let mut dp = 0f32;
        for d in 0..hd {
            dp = A::fma(
                d_o[(r * h + hh) * hd + d],
                qkv[j * ld + v_col + g * hd + d],
                dp,
            );
        }
        (p, p * (dp - dd[r * h + hh]) * scale)
    };
    let group = h / kvh;
    // The device's tiles, one (tile, head) at a time: P and dS, 0 where the
    // query does not see the key, then dq = dS K, dk = dS^T Q and
    // dv = P^T dO, every chain over all the tile's keys or queries.
    let tile = |(s0, span): (usize, usize), hh: usize| {
        let g = c.kv_head(hh as u64) as usize;
        let mut p = vec![0f32; span * span];
        let mut ds = vec![0f32; span * span];
        for t in 0..span {
            let (j0, keys) = key_range(s0 + t, seq, window);
            for j in j0..j0 + keys {
                (p[t * span + j - s0], ds[t * span + j - s0]) = p_ds(s0 + t, j, hh, g);
            }
        }
        let mut dq = vec![0f32; span * hd];
        let mut dk = vec![0f32; span * hd];
        let mut dv = vec![0f32; span * hd];
        for t in 0..span {
            for d in 0..hd {
                dq[t * hd + d] = piece_chain::<A>(span, |u| {
                    (ds[t * span + u], qkv[(s0 + u) * ld + k_col + g * hd + d])
                });
                dk[t * hd + d] = piece_chain::<A>(span, |u| {
                    (ds[u * span + t], qkv[(s0 + u) * ld + hh * hd + d])
                });
                dv[t * hd + d] = piece_chain::<A>(span, |u| {
                    (p[u * span + t], d_o[((s0 + u) * h + hh) * hd + d])
                });
            }
        }
        (dq, dk, dv)
    };
    let jobs: Vec<((usize, usize), usize)> = super::tiles(tokens)
        .flat_map(|(s0, span)| (0..h).map(move |hh| ((s0 as usize, span as usize), hh)))
        .collect();
    let per = jobs.len().div_ceil(crate::rng::cpu::threads()).max(1);
    let done: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|part| {
                let tile = &tile;
                sc.spawn(move || part.iter().map(|&(t, hh)| tile(t, hh)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| crate::error::Error::internal("CPU mirror", "a thread panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    let mut dkp = vec![0f32; rows * aw];
    let mut dvp = vec![0f32; rows * aw];
    for (&((s0, span), hh), (dq, dk, dv)) in jobs.iter().zip(&done) {
        for t in 0..span {
            let r = s0 + t;
            dqkv[r * ld + hh * hd..r * ld + (hh + 1) * hd]
                .copy_from_slice(&dq[t * hd..(t + 1) * hd]);
            dkp[(r * h + hh) * hd..(r * h + hh + 1) * hd]
                .copy_from_slice(&dk[t * hd..(t + 1) * hd]);
            dvp[(r * h + hh) * hd..(r * h + hh + 1) * hd]
                .copy_from_slice(&dv[t * hd..(t + 1) * hd]);
        }
    }
    for (part, col) in [(&dkp, k_col), (&dvp, v_col)] {
        for r in 0..rows {
            for g in 0..kvh {
                for d in 0..hd {
                    let mut acc = part[(r * h + g * group) * hd + d];
                    for e2 in 1..group {
                        acc += part[(r * h + g * group + e2) * hd + d];
                    }
                    dqkv[r * ld + col + g * hd + d] = acc;
                }
            }
        }
    }
    if !c.inv_freq.is_empty() {
        // The rotation's transpose: the same kernel with the sines negated.
        let sin_neg: Vec<f32> = sin.iter().map(|v| -v).collect();
        rope::<A>(&mut dqkv, ld, 0, h, hd, seq, &cos, &sin_neg);
        rope::<A>(&mut dqkv, ld, k_col, kvh, hd, seq, &cos, &sin_neg);
    }
    let mut col = 0;
    for (k, lin) in b.qkv.iter().enumerate() {
        let w = lin.n_out as usize;
        let cols: Vec<f32> = dqkv
            .chunks(ld)
            .flat_map(|row| row[col..col + w].iter().copied())
            .collect();
        weight_grad::<A>((hn, e), (&cols, w), rows, recs, wrec(lin));
        linear_bwd::<A>(m, layout, lin, (&dqkv, ld, col), rows, &mut dh, k > 0)?;
        col += w;
    }
    Ok(dh)
}
