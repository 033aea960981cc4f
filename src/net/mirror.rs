//! The CPU mirror of the device's deep pass: the same weights, the same
//! operation sequences and the same reduction trees as `net::device`, in the
//! device's arithmetic class ([`crate::act::arith`]), so a conforming device's
//! raw results -- every statistics record, dead-unit counter and Gram matrix
//! -- are reproduced bit for bit and compared by equality.
//!
//! What the device computes, and so what this file computes:
//! - every product (forward `z = a W^T`, backward `delta W`, Gram matrices,
//!   column sums) as each element's ascending-k chain `acc = fma(a, b, acc)`
//!   from `acc = +0`; a backward product split into row blocks of `W` adds
//!   each later block's chain to the partial result (`C = C + acc`);
//! - bias and activation as `shaders/net/network.wgsl` and
//!   `shaders/net/activation.wgsl` order them;
//! - the statistics records of `shaders/net/reduce.wgsl`: per workgroup of
//!   `RED_WORKGROUP` lanes, each lane's `RED_ITEMS` strided elements in
//!   order, then the halving tree;
//! - the dead-unit counts of `shaders/net/dead.wgsl`.

use crate::act::arith::{self, Arith};
use crate::error::{Error, Result};
use crate::gpu::layout::{RECORD_ELEMS, RECORD_WORDS, RED_ITEMS, RED_WORKGROUP};
use crate::gpu::probe::FmaMode;
use crate::net::kernels::fold_records;
use crate::net::{self, reference, Fault, LayerStats, NetConfig, NetStats};
use crate::rng::cpu;
use serde::Serialize;

/// A pass's raw results as the device leaves them in its buffers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPass {
    /// Statistics records, [`RECORD_WORDS`] words each.
    pub recs: Vec<u32>,
    /// Dead units per layer (index 0 unused).
    pub dead: Vec<u32>,
    /// Gram matrices, batch x batch each: a_{l-1} at slot 2(l-1), delta_l at
    /// 2(l-1)+1, the final a_L at 2L.
    pub grams: Vec<f32>,
}

/// Where each tensor's statistics records lie, and how the backward product
/// of each layer is split into row blocks of W (as the device split it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassLayout {
    /// Records of layer l: [z, a, delta]; the input's start at 0.
    pub rec: Vec<[u64; 3]>,
    /// Records of layer l's column sums.
    pub rec_cols: Vec<u64>,
    /// All records.
    pub total_records: u64,
    /// Rows of W_l per block (index l - 1).
    pub block_rows: Vec<u64>,
}

/// Records of a tensor of `n` elements.
pub(crate) fn records(n: u64) -> u64 {
    n.div_ceil(RECORD_ELEMS)
}

impl PassLayout {
    /// The layout of `cfg`'s records, with `block_rows[l - 1]` rows of W_l per block.
    pub(crate) fn new(cfg: &NetConfig, block_rows: Vec<u64>) -> PassLayout {
        let depth = cfg.depth();
        let (b, w) = (cfg.batch, &cfg.widths);
        let mut rec = vec![[0u64; 3]; depth + 1];
        let mut total = records(b * w[0]);
        for l in 1..=depth {
            let r = records(b * w[l]);
            rec[l] = [total, total + r, total + 2 * r];
            total += 3 * r;
        }
        let mut rec_cols = vec![0u64; depth + 1];
        for l in 1..=depth {
            rec_cols[l] = total;
            total += records(w[l]);
        }
        PassLayout {
            rec,
            rec_cols,
            total_records: total,
            block_rows,
        }
    }

    /// What record `r` holds: (layer, statistic).
    fn record_name(&self, cfg: &NetConfig, r: u64) -> (usize, &'static str) {
        let depth = cfg.depth();
        for l in 1..=depth {
            let n = records(cfg.batch * cfg.widths[l]);
            for (i, what) in [
                "Var(z)/E[z] (pre-activations)",
                "Var(a)/E[a] (activations)",
                "Var(delta) (gradients)",
            ]
            .into_iter()
            .enumerate()
            {
                if (self.rec[l][i]..self.rec[l][i] + n).contains(&r) {
                    return (l, what);
                }
            }
            if (self.rec_cols[l]..self.rec_cols[l] + records(cfg.widths[l])).contains(&r) {
                return (l, "column sums of z (the weight test)");
            }
        }
        (0, "the input")
    }
}

/// The statistics of a raw pass: what both the device and the mirror report.
pub(crate) fn fold(cfg: &NetConfig, layout: &PassLayout, raw: &RawPass) -> Result<NetStats> {
    let depth = cfg.depth();
    let (b, w) = (cfg.batch, &cfg.widths);
    let gram_elems = b * b;
    let need = gram_elems * (2 * depth as u64 + 1);
    if (raw.grams.len() as u64) < need || raw.dead.len() < depth + 1 {
        return Err(Error::internal(
            "network statistics",
            "raw results too short",
        ));
    }
    let g =
        |slot: u64| &raw.grams[(slot * gram_elems) as usize..((slot + 1) * gram_elems) as usize];
    let mut layers = Vec::with_capacity(depth);
    for l in 1..=depth {
        let r = records(b * w[l]);
        let (a_slot, d_slot) = (2 * (l as u64 - 1), 2 * (l as u64 - 1) + 1);
        let (grad_w_norm, input_concentration, grad_w_coherence) =
            net::gram_summary(g(d_slot), g(a_slot), b as usize);
        let cols = fold_records(&raw.recs, layout.rec_cols[l], records(w[l]))?;
        layers.push(LayerStats {
            layer: l,
            pre: fold_records(&raw.recs, layout.rec[l][0], r)?,
            post: fold_records(&raw.recs, layout.rec[l][1], r)?,
            dead_frac: f64::from(raw.dead[l]) / w[l] as f64,
            grad: fold_records(&raw.recs, layout.rec[l][2], r)?,
            grad_w_norm,
            input_concentration,
            input_centred_mean_sq: net::centred_mean_sq(g(a_slot), b as usize, w[l - 1]),
            pre_unit_mean_sq: cols.mean_sq / (b * b) as f64,
            grad_w_coherence,
        });
    }
    Ok(NetStats {
        input: fold_records(&raw.recs, 0, records(b * w[0]))?,
        layers,
        final_gram: g(2 * depth as u64).iter().map(|&v| f64::from(v)).collect(),
        seconds: 0.0,
    })
}

/// The first difference between the device's raw results and the mirror's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The layer (0: the input).
    pub layer: usize,
    /// Which statistic.
    pub statistic: String,
    /// The device's and the mirror's word (bit patterns).
    pub device: u32,
    /// See `device`.
    pub mirror: u32,
}

/// What an equality comparison covered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Words compared: statistics records, dead-unit counters, Gram entries.
    pub words: u64,
    /// Layers whose every statistic was compared.
    pub layers: usize,
    /// The first difference, in the order the pass computes, if any.
    pub first_difference: Option<Difference>,
    /// Per layer (index l - 1): every one of its statistics bit-identical.
    pub layer_equal: Vec<bool>,
}

/// Compares the device's raw results with the mirror's: records and counters
/// word for word, Gram entries by bit pattern (NaN as a class). The first
/// difference is the first in the order the pass computes: the forward pass
/// layer by layer, then the backward pass from the last layer down.
pub fn compare(cfg: &NetConfig, layout: &PassLayout, dev: &RawPass, cpu: &RawPass) -> Comparison {
    let depth = cfg.depth();
    // (pass, step): forward steps (0, l), backward steps (1, depth - l).
    let mut first: Option<((u8, usize), Difference)> = None;
    let mut layer_equal = vec![true; depth];
    let mut note = |key: (u8, usize), d: Difference| {
        if let Some(e) = d.layer.checked_sub(1).and_then(|i| layer_equal.get_mut(i)) {
            *e = false;
        }
        if first.as_ref().is_none_or(|(k, _)| key < *k) {
            first = Some((key, d));
        }
    };
    let words = (layout.total_records * RECORD_WORDS) as usize;
    let fields = [
        "scale",
        "sum",
        "sum of squares",
        "finite count",
        "zeros",
        "saturated",
        "non-finite",
        "pad",
    ];
    for (i, (&d, &c)) in dev.recs.iter().zip(&cpu.recs).take(words).enumerate() {
        if d != c {
            let r = i as u64 / RECORD_WORDS;
            let (layer, what) = layout.record_name(cfg, r);
            let backward = what.starts_with("Var(delta)");
            let key = if backward {
                (1, depth - layer)
            } else {
                (0, layer)
            };
            note(
                key,
                Difference {
                    layer,
                    statistic: format!(
                        "{what}, record {r} ({})",
                        fields[i % RECORD_WORDS as usize]
                    ),
                    device: d,
                    mirror: c,
                },
            );
        }
    }
    for l in 1..=depth {
        if dev.dead.get(l) != cpu.dead.get(l) {
            note(
                (0, l),
                Difference {
                    layer: l,
                    statistic: "dead-unit count".into(),
                    device: dev.dead.get(l).copied().unwrap_or(u32::MAX),
                    mirror: cpu.dead.get(l).copied().unwrap_or(u32::MAX),
                },
            );
        }
    }
    let bb = (cfg.batch * cfg.batch) as usize;
    for (i, (d, c)) in dev.grams.iter().zip(&cpu.grams).enumerate() {
        let same = d.to_bits() == c.to_bits() || (d.is_nan() && c.is_nan());
        if !same {
            let slot = i / bb;
            // Slot 2l holds the Gram matrix of a_l (the input of layer l + 1,
            // the final activations for l = depth); slot 2l + 1 that of delta_{l+1}.
            let (key, layer, what) = if slot.is_multiple_of(2) {
                let l = slot / 2;
                (
                    (0, l),
                    l,
                    if l == 0 {
                        "Gram matrix of the input"
                    } else {
                        "Gram matrix of the activations"
                    },
                )
            } else {
                (
                    (1, depth - (slot / 2 + 1)),
                    slot / 2 + 1,
                    "Gram matrix of delta (||dW||)",
                )
            };
            note(
                key,
                Difference {
                    layer,
                    statistic: format!("{what}, entry {}", i % bb),
                    device: d.to_bits(),
                    mirror: c.to_bits(),
                },
            );
        }
    }
    let lengths_agree =
        dev.recs.len() >= words && cpu.recs.len() >= words && dev.grams.len() == cpu.grams.len();
    if !lengths_agree {
        note(
            (0, 0),
            Difference {
                layer: 0,
                statistic: "the raw results' lengths".into(),
                device: dev.grams.len() as u32,
                mirror: cpu.grams.len() as u32,
            },
        );
    }
    if first.as_ref().is_some_and(|(_, d)| d.layer == 0) {
        // The input differs: nothing downstream was computed from the same data.
        layer_equal.iter_mut().for_each(|e| *e = false);
    }
    Comparison {
        words: words as u64 + depth as u64 + dev.grams.len().min(cpu.grams.len()) as u64,
        layers: depth,
        first_difference: first.map(|(_, d)| d),
        layer_equal,
    }
}

/// `run` in the probed arithmetic class: fused `fma`, else two roundings.
pub fn run_in(
    class: FmaMode,
    cfg: &NetConfig,
    input: Option<&[f32]>,
    layout: &PassLayout,
) -> Result<RawPass> {
    match class {
        FmaMode::Fused => run::<arith::Fused>(cfg, input, layout),
        _ => run::<arith::Unfused>(cfg, input, layout),
    }
}

/// How [`run_in`] names a class in reports.
pub(crate) fn class_name(class: FmaMode) -> &'static str {
    match class {
        FmaMode::Fused => "fused fma",
        _ => "two-rounding fma",
    }
}

/// Runs the mirror of the device's pass in arithmetic class `A`.
pub(crate) fn run<A: Arith>(
    cfg: &NetConfig,
    input: Option<&[f32]>,
    layout: &PassLayout,
) -> Result<RawPass> {
    let stds = cfg.validate()?;
    let depth = cfg.depth();
    let (b, w) = (cfg.batch as usize, &cfg.widths);
    let mut raw = RawPass {
        recs: vec![0; (layout.total_records * RECORD_WORDS) as usize],
        dead: vec![0; depth + 1],
        grams: vec![0.0; b * b * (2 * depth + 1)],
    };
    let bb = b * b;
    let a0 = reference::input(cfg, input)?;
    reduce::<A>(&a0, None, &mut raw.recs, 0);
    let mut a = a0;
    let mut zs: Vec<Vec<f32>> = Vec::with_capacity(depth);
    for l in 1..=depth {
        let (n_in, n_out) = (w[l - 1] as usize, w[l] as usize);
        gram::<A>(
            &a,
            b,
            n_in,
            &mut raw.grams[2 * (l - 1) * bb..(2 * (l - 1) + 1) * bb],
        );
        let wt = reference::weights(cfg, l, stds[l - 1], &Fault::default())?;
        // z = a W^T: op(B)[k][j] = W[j][k].
        let w_kn = transpose(&wt, n_out, n_in);
        let mut z = vec![0f32; b * n_out];
        chain::<A>(b, n_out, n_in, &a, &w_kn, &mut z, false);
        if cfg.bias_std > 0.0 {
            let bias = reference::normal(
                cfg.seed,
                net::BIAS_TENSOR | l as u32,
                n_out as u64,
                cfg.bias_std,
            )?;
            for row in z.chunks_mut(n_out) {
                for (v, bv) in row.iter_mut().zip(&bias) {
                    *v += bv;
                }
            }
        }
        let next: Vec<f32> = z.iter().map(|&v| arith::act::<A>(cfg.act, v)).collect();
        reduce::<A>(&z, None, &mut raw.recs, layout.rec[l][0]);
        let mut colsum = vec![0f32; n_out];
        // 1^T z: the chain over the batch of fma(1, z, acc) = acc + z.
        chain::<A>(1, n_out, b, &vec![1.0; b], &z, &mut colsum, false);
        reduce::<A>(&colsum, None, &mut raw.recs, layout.rec_cols[l]);
        reduce::<A>(&next, cfg.act.saturation(), &mut raw.recs, layout.rec[l][1]);
        raw.dead[l] = (0..n_out)
            .filter(|&j| (0..b).all(|r| next[r * n_out + j] == 0.0))
            .count() as u32;
        zs.push(z);
        a = next;
    }
    gram::<A>(
        &a,
        b,
        w[depth] as usize,
        &mut raw.grams[2 * depth * bb..(2 * depth + 1) * bb],
    );
    let mut delta = reference::normal(cfg.seed, net::LOSS_TENSOR, (b as u64) * w[depth], 1.0)?;
    for l in (1..=depth).rev() {
        let n_l = w[l] as usize;
        for (d, &z) in delta.iter_mut().zip(&zs[l - 1]) {
            *d *= arith::dact::<A>(cfg.act, z);
        }
        reduce::<A>(&delta, None, &mut raw.recs, layout.rec[l][2]);
        let slot = 2 * (l - 1) + 1;
        gram::<A>(&delta, b, n_l, &mut raw.grams[slot * bb..(slot + 1) * bb]);
        if l == 1 {
            break;
        }
        let n_prev = w[l - 1] as usize;
        let wt = reference::weights(cfg, l, stds[l - 1], &Fault::default())?; // n_l x n_prev: op(B) = W
        let mut out = vec![0f32; b * n_prev];
        let rows = layout
            .block_rows
            .get(l - 1)
            .copied()
            .unwrap_or(n_l as u64)
            .max(1) as usize;
        // delta[:, r0..r0+r] times rows r0..r0+r of W, block by block.
        chain_pieces::<A>((b, n_prev, n_l), rows, &delta, &wt, &mut out, false);
        delta = out;
    }
    Ok(raw)
}

/// `C (+)= A B` (A: m x k, B: k x n, row-major) with k cut into
/// consecutive pieces of at most `piece`, each later piece's chain added to
/// C: how the device runs a product it records in pieces (the MLP's
/// generated row blocks of W, the transformer's pieces of k). One piece is
/// [`chain`] itself.
pub(crate) fn chain_pieces<A: Arith>(
    (m, n, k): (usize, usize, usize),
    piece: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let piece = piece.max(1);
    if k <= piece {
        return chain::<A>(m, n, k, a, b, c, accumulate);
    }
    let mut k0 = 0;
    while k0 < k {
        let kk = piece.min(k - k0);
        let sub: Vec<f32> = a
            .chunks(k)
            .take(m)
            .flat_map(|row| row[k0..k0 + kk].iter().copied())
            .collect();
        chain::<A>(
            m,
            n,
            kk,
            &sub,
            &b[k0 * n..(k0 + kk) * n],
            c,
            accumulate || k0 > 0,
        );
        k0 += kk;
    }
}

pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for (i, row) in m.chunks(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

/// The Gram matrix x x^T of `x` (rows of `n`) into `out` (b x b).
fn gram<A: Arith>(x: &[f32], b: usize, n: usize, out: &mut [f32]) {
    let xt = transpose(x, b, n);
    chain::<A>(b, b, n, x, &xt, out, false);
}

/// Rows and columns of C that one register tile of [`chain`] holds.
const MR: usize = 4;
const NR: usize = 16;

/// C (m x n) = [C +] A (m x k) B (k x n), all row-major and dense: each
/// element the ascending-k chain `acc = fma(a, b, acc)` from +0, then stored
/// or added to C. B is packed into panels of 16 columns; each 4 x 16 tile
/// of C stays in registers for the whole chain; rows are split across threads.
/// Blocking changes which elements are computed together, never an
/// element's own sequence of operations.
pub(crate) fn chain<A: Arith>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let mut bp = vec![0f32; panels * k * NR];
    for kk in 0..k {
        for p in 0..panels {
            let (j0, w) = (p * NR, NR.min(n - p * NR));
            bp[(p * k + kk) * NR..(p * k + kk) * NR + w]
                .copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
        }
    }
    let per = m.div_ceil(cpu::threads()).max(MR).next_multiple_of(MR);
    let bp = &bp;
    std::thread::scope(|s| {
        for (t, rows) in c[..m * n].chunks_mut(per * n).enumerate() {
            let a = &a[t * per * k..];
            s.spawn(move || chain_rows::<A>(rows, n, k, a, bp, accumulate));
        }
    });
}

fn chain_rows<A: Arith>(
    c: &mut [f32],
    n: usize,
    k: usize,
    a: &[f32],
    bp: &[f32],
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were detected.
        return unsafe { chain_rows_avx2::<A>(c, n, k, a, bp, accumulate) };
    }
    chain_body::<A>(c, n, k, a, bp, accumulate)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chain_rows_avx2<A: Arith>(
    c: &mut [f32],
    n: usize,
    k: usize,
    a: &[f32],
    bp: &[f32],
    accumulate: bool,
) {
    chain_body::<A>(c, n, k, a, bp, accumulate)
}

#[inline(always)]
fn chain_body<A: Arith>(
    c: &mut [f32],
    n: usize,
    k: usize,
    a: &[f32],
    bp: &[f32],
    accumulate: bool,
) {
    let rows = c.len() / n;
    let panels = n.div_ceil(NR);
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(MR);
        // Rows past the end read the last row again; their results are dropped.
        let off: [usize; MR] = std::array::from_fn(|q| (i0 + q).min(rows - 1) * k);
        for p in 0..panels {
            let panel = &bp[p * k * NR..(p + 1) * k * NR];
            let mut acc = [[0f32; NR]; MR];
            for (kk, bv) in panel.chunks_exact(NR).enumerate() {
                let av: [f32; MR] = std::array::from_fn(|q| a[off[q] + kk]);
                for q in 0..MR {
                    for j in 0..NR {
                        acc[q][j] = A::fma(av[q], bv[j], acc[q][j]);
                    }
                }
            }
            let (j0, w) = (p * NR, NR.min(n - p * NR));
            for (q, tile_row) in acc.iter().enumerate().take(r) {
                let dst = &mut c[(i0 + q) * n + j0..(i0 + q) * n + j0 + w];
                if accumulate {
                    for (d, s) in dst.iter_mut().zip(tile_row) {
                        *d += s;
                    }
                } else {
                    dst.copy_from_slice(&tile_row[..w]);
                }
            }
        }
        i0 += r;
    }
}

/// `frexp(m).exp` for a finite m > 0: m = f 2^e with f in [1/2, 1).
fn frexp_exp(m: f32) -> i32 {
    let bits = m.to_bits();
    let field = (bits >> 23) & 0xFF;
    if field == 0 {
        frexp_exp(m * f32::from_bits(0x5F80_0000)) - 64 // m 2^64
    } else {
        field as i32 - 126
    }
}

/// 2^e for -126 <= e <= 127.
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

fn finite(x: f32) -> bool {
    x.to_bits() & 0x7F80_0000 != 0x7F80_0000
}

/// The records of `x` as `partial_stats` writes them, from record `rec` on.
pub(crate) fn reduce<A: Arith>(x: &[f32], sat: Option<(f32, f32)>, recs: &mut [u32], rec: u64) {
    let (wg, items) = (RED_WORKGROUP as usize, RED_ITEMS as usize);
    let n = x.len();
    let groups = records(n as u64) as usize;
    let mut f = vec![0f32; wg];
    let mut g = vec![0f32; wg];
    let mut u = vec![[0u32; 4]; wg];
    for grp in 0..groups {
        let base = grp * wg * items;
        for (l, fl) in f.iter_mut().enumerate() {
            let mut mx = 0f32;
            for q in 0..items {
                let i = base + q * wg + l;
                if i < n && finite(x[i]) {
                    mx = mx.max(x[i].abs());
                }
            }
            *fl = mx;
        }
        let mut s = wg / 2;
        while s > 0 {
            for l in 0..s {
                f[l] = f[l].max(f[l + s]);
            }
            s /= 2;
        }
        let m = f[0];
        let e = if m > 0.0 {
            frexp_exp(m).clamp(-126, 126)
        } else {
            0
        };
        let inv = pow2(-e);
        for l in 0..wg {
            let (mut s1, mut s2) = (0f32, 0f32);
            let mut c = [0u32; 4];
            for q in 0..items {
                let i = base + q * wg + l;
                if i >= n {
                    continue;
                }
                let v = x[i];
                if finite(v) {
                    let y = v * inv;
                    s1 += y;
                    s2 = A::fma(y, y, s2);
                    c[0] += 1;
                    c[1] += u32::from(v == 0.0);
                    if let Some((lo, hi)) = sat {
                        c[2] += u32::from(v < lo || v > hi);
                    }
                } else {
                    c[3] += 1;
                }
            }
            f[l] = s1;
            g[l] = s2;
            u[l] = c;
        }
        let mut s = wg / 2;
        while s > 0 {
            for l in 0..s {
                f[l] += f[l + s];
                g[l] += g[l + s];
                let add = u[l + s];
                for (a, b) in u[l].iter_mut().zip(add) {
                    *a += b;
                }
            }
            s /= 2;
        }
        let r = (rec as usize + grp) * RECORD_WORDS as usize;
        if let Some(out) = recs.get_mut(r..r + RECORD_WORDS as usize) {
            out.copy_from_slice(&[
                pow2(e).to_bits(),
                f[0].to_bits(),
                g[0].to_bits(),
                u[0][0],
                u[0][1],
                u[0][2],
                u[0][3],
                0,
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::arith::{Fused, Unfused};
    use crate::act::Activation;

    #[test]
    fn chains_equal_a_scalar_loop_in_both_classes() {
        let (m, n, k) = (7, 13, 29);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 11.0)
            .collect();
        for fused in [false, true] {
            let mut c = vec![f32::NAN; m * n];
            if fused {
                chain::<Fused>(m, n, k, &a, &b, &mut c, false);
            } else {
                chain::<Unfused>(m, n, k, &a, &b, &mut c, false);
            }
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0f32;
                    for p in 0..k {
                        let (x, y) = (a[i * k + p], b[p * n + j]);
                        acc = if fused {
                            x.mul_add(y, acc)
                        } else {
                            x * y + acc
                        };
                    }
                    assert_eq!(c[i * n + j].to_bits(), acc.to_bits(), "{fused} ({i}, {j})");
                }
            }
        }
        // Accumulating adds the chain to what is there.
        let mut c = vec![1.0f32; m * n];
        chain::<Unfused>(m, n, k, &a, &b, &mut c, true);
        let mut d = vec![0f32; m * n];
        chain::<Unfused>(m, n, k, &a, &b, &mut d, false);
        assert!(c
            .iter()
            .zip(&d)
            .all(|(x, y)| x.to_bits() == (1.0 + y).to_bits()));
    }

    #[test]
    fn frexp_matches_its_definition() {
        for m in [
            1.0f32,
            0.5,
            0.75,
            3.0,
            1e-40,
            f32::MIN_POSITIVE,
            1e30,
            2f32.powi(-149),
        ] {
            let e = frexp_exp(m);
            let f = f64::from(m) / 2f64.powi(e);
            assert!((0.5..1.0).contains(&f), "{m}: {e} {f}");
        }
    }

    #[test]
    fn the_mirror_folds_to_the_cpu_reference_statistics() {
        // The mirror and the gemm-crate reference sum in different orders, so
        // their statistics agree closely, not exactly: this checks the mirror
        // computes the same network (a wrong weight or layer would be off by
        // far more than 1e-4).
        let cfg = NetConfig::uniform(crate::init::scheme::Scheme::HE, Activation::Tanh, 64, 5, 16);
        let layout = PassLayout::new(&cfg, vec![64; 5]);
        let raw = run::<Unfused>(&cfg, None, &layout).expect("mirror");
        let mine = fold(&cfg, &layout, &raw).expect("fold");
        let reference = crate::net::reference::run(&cfg, None).expect("reference");
        for (a, b) in mine.layers.iter().zip(&reference.layers) {
            for (x, y) in [
                (a.pre.var, b.pre.var),
                (a.grad.var, b.grad.var),
                (a.grad_w_norm, b.grad_w_norm),
            ] {
                assert!((x / y - 1.0).abs() < 1e-4, "layer {}: {x} vs {y}", a.layer);
            }
            assert_eq!(a.dead_frac, b.dead_frac);
        }
        // Blocked backward products equal whole ones only up to rounding, but
        // are deterministic.
        let blocked = PassLayout::new(&cfg, vec![24; 5]);
        let r1 = run::<Unfused>(&cfg, None, &blocked).expect("blocked");
        assert_eq!(r1, run::<Unfused>(&cfg, None, &blocked).expect("again"));
        assert_eq!(compare(&cfg, &layout, &raw, &raw).first_difference, None);
    }
}
