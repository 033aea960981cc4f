//! The CPU reference network: the same MLP in f32 with the same weights
//! (the CPU reference values of the same RNG elements), the same inputs and
//! the same statistics, using the multi-threaded `gemm` crate.

use crate::error::{Error, Result};
use crate::net::{self, Fault, LayerStats, NetConfig, NetStats, TensorStats};
use crate::rng::cpu;
use std::time::Instant;

/// `c[m x n] (+)= a[m x k] * b`, where `b` is `k x n` with row stride `b_rs`
/// and column stride `b_cs` (so `b_rs = 1, b_cs = ldb` reads a row-major
/// `n x k` matrix transposed). All matrices dense row-major otherwise.
/// Checks every slice against the extents before handing pointers to `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    accumulate: bool,
) -> Result<()> {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    if c.len() < m * n || a.len() < last(m, k, k, 1) || b.len() < last(k, n, b_rs, b_cs) {
        return Err(Error::invalid(
            "matrix multiply",
            "operand slices shorter than their extents",
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: the extents above keep every access inside the slices; `c` does
    // not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(cpu::threads()),
        );
    }
    Ok(())
}

fn stats(xs: &[f32], saturation: Option<(f32, f32)>) -> TensorStats {
    let mut sum = 0.0f64;
    let mut sq = 0.0f64;
    let (mut count, mut zeros, mut sat, mut nonfinite) = (0u64, 0u64, 0u64, 0u64);
    for &x in xs {
        if x.is_finite() {
            let v = f64::from(x);
            sum += v;
            sq += v * v;
            count += 1;
            zeros += u64::from(x == 0.0);
            if let Some((lo, hi)) = saturation {
                sat += u64::from(x < lo || x > hi);
            }
        } else {
            nonfinite += 1;
        }
    }
    TensorStats::from_sums(count, sum, sq, zeros, sat, nonfinite)
}

fn gram(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    let mut g = vec![0f32; rows * rows];
    sgemm(rows, rows, cols, &mut g, x, x, 1, cols, false)?;
    Ok(g)
}

/// W_l (n_out x n_in, scaled by the fault's factor), drawn as every backend draws it.
pub(crate) fn weights(cfg: &NetConfig, l: usize, std: f64, fault: &Fault) -> Result<Vec<f32>> {
    let n = cfg.widths[l] * cfg.widths[l - 1];
    let mut w = crate::io::host::host_vec::<f32>(n)?;
    cpu::fill(
        cfg.dist,
        cfg.dist.kernel_scale(std * fault.weight_factor(l)),
        cfg.seed,
        l as u32,
        0,
        &mut w,
    );
    Ok(w)
}

/// `n` values of the normal tensor `tensor` with standard deviation `std`.
pub(crate) fn normal(seed: u64, tensor: u32, n: u64, std: f64) -> Result<Vec<f32>> {
    let mut v = crate::io::host::host_vec::<f32>(n)?;
    let d = crate::rng::dist::Dist::Normal;
    cpu::fill(d, d.kernel_scale(std), seed, tensor, 0, &mut v);
    Ok(v)
}

/// The network input: `input` if given (`batch x n_0`, row-major), else N(0, 1)
/// from the RNG (tensor [`net::INPUT_TENSOR`]).
pub(crate) fn input(cfg: &NetConfig, input: Option<&[f32]>) -> Result<Vec<f32>> {
    let n = cfg.batch * cfg.widths[0];
    match input {
        Some(x) if x.len() as u64 == n => Ok(x.to_vec()),
        Some(x) => Err(Error::invalid(
            "input",
            format!("{} values, but batch x width = {n}", x.len()),
        )),
        None => normal(cfg.seed, net::INPUT_TENSOR, n, 1.0),
    }
}

/// Host bytes the CPU reference holds at its peak: every layer's
/// pre-activations and input Gram matrix (kept for the backward pass), plus
/// the largest layer's weights and two activation buffers.
pub(crate) fn host_bytes(cfg: &NetConfig) -> u64 {
    let b = cfg.batch;
    let per_layer: u64 = cfg.widths[1..]
        .iter()
        .map(|&w| b.saturating_mul(w).saturating_add(b.saturating_mul(b)))
        .fold(0u64, u64::saturating_add);
    let max_w = cfg.widths.iter().copied().max().unwrap_or(1);
    let weights = cfg
        .widths
        .windows(2)
        .map(|p| p[0].saturating_mul(p[1]))
        .max()
        .unwrap_or(0);
    per_layer
        .saturating_add(weights)
        .saturating_add(b.saturating_mul(max_w).saturating_mul(4))
        .saturating_mul(4)
}

/// Refuses a network whose CPU reference would not fit in host memory, with
/// the depth that would.
pub(crate) fn check_host_memory(cfg: &NetConfig) -> Result<()> {
    let Some(mem) = crate::io::host::host_memory_bytes() else {
        return Ok(());
    };
    let need = host_bytes(cfg);
    if need <= mem {
        return Ok(());
    }
    let b = cfg.batch;
    let per = cfg.widths[1..].iter().copied().max().unwrap_or(1);
    let per_layer = 4 * b.saturating_mul(per).saturating_add(b.saturating_mul(b));
    let fixed = need.saturating_sub(per_layer.saturating_mul(cfg.depth() as u64));
    let max_depth = mem.saturating_sub(fixed) / per_layer.max(1);
    Err(Error::LimitExceeded {
        what: "the CPU reference's memory (bytes)".into(),
        got: need,
        max: mem,
        hint: format!(
            " of host memory; reduce the depth (at most {max_depth} at batch {b} and width {per}) \
             or the batch"
        ),
    })
}

/// Runs the network forward and backward on the CPU.
pub fn run(cfg: &NetConfig, x: Option<&[f32]>) -> Result<NetStats> {
    run_observed(cfg, x, &Fault::default(), None, &mut |_, _| {})
}

/// [`run`] with `fault` injected (tests only; `Fault::default()` is none),
/// handing every layer's activations `a_l` (`batch x n_l`) to
/// `observe(l, a_l)` during the forward pass (for histograms).
pub(crate) fn run_observed(
    cfg: &NetConfig,
    x: Option<&[f32]>,
    fault: &Fault,
    progress: Option<&crate::progress::Progress>,
    observe: &mut dyn FnMut(usize, &[f32]),
) -> Result<NetStats> {
    let start = Instant::now();
    let stds = cfg.validate()?;
    let depth = cfg.depth();
    let b = cfg.batch as usize;
    let a0 = input(cfg, x)?;
    let input_stats = stats(&a0, None);
    // Forward, keeping z_l for the backward pass and the Gram of a_{l-1}.
    let mut zs: Vec<Vec<f32>> = Vec::with_capacity(depth);
    let mut grams_a: Vec<Vec<f32>> = Vec::with_capacity(depth);
    let mut layers = vec![LayerStats::default(); depth];
    let mut kept = WeightCache::new(cfg);
    let mut a = a0;
    for l in 1..=depth {
        let n_in = cfg.widths[l - 1] as usize;
        grams_a.push(gram(&a, b, n_in)?);
        let w = weights(cfg, l, stds[l - 1], fault)?;
        let z = pre_activation(cfg, l, &w, fault, &a)?;
        kept.offer(l, w);
        let post: Vec<f32> = z.iter().map(|&v| cfg.act.f32(v)).collect();
        observe(l, &post);
        layers[l - 1] = forward_stats(cfg, l, &z, &post, &grams_a[l - 1]);
        zs.push(z);
        a = post;
        if let Some(p) = progress {
            p.update(l as f64, 2.0 * depth as f64);
        }
    }
    let final_gram: Vec<f64> = gram(&a, b, cfg.widths[depth] as usize)?
        .into_iter()
        .map(f64::from)
        .collect();
    drop(a);
    // Backward.
    let n_last = cfg.widths[depth];
    let mut delta = normal(cfg.seed, net::LOSS_TENSOR, cfg.batch * n_last, 1.0)?;
    for l in (1..=depth).rev() {
        let z = &zs[l - 1];
        for (d, &zz) in delta.iter_mut().zip(z) {
            *d *= cfg.act.df32(zz);
        }
        let n_l = cfg.widths[l] as usize;
        if let Some(p) = progress {
            p.update((2 * depth - l) as f64, 2.0 * depth as f64);
        }
        layers[l - 1].grad = stats(&delta, None);
        let g_delta = gram(&delta, b, n_l)?;
        let (norm, conc, coh) = net::gram_summary(&g_delta, &grams_a[l - 1], b);
        layers[l - 1].grad_w_norm = norm;
        layers[l - 1].input_concentration = conc;
        layers[l - 1].grad_w_coherence = coh;
        if l > 1 {
            let n_prev = cfg.widths[l - 1] as usize;
            let w = match kept.take(l) {
                Some(w) => w,
                None => weights(cfg, l, stds[l - 1], fault)?,
            };
            let mut next = crate::io::host::host_vec::<f32>((b * n_prev) as u64)?;
            // delta_{l-1} = delta_l W_l: W is n_l x n_prev row-major.
            sgemm(b, n_prev, n_l, &mut next, &delta, &w, n_prev, 1, false)?;
            delta = next;
        }
    }
    Ok(NetStats {
        input: input_stats,
        layers,
        final_gram,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Layer weights kept from the forward pass for the backward pass, so they
/// are drawn once instead of twice, within a byte budget: half of the host
/// memory the run does not otherwise need (see [`host_bytes`]), at most
/// [`WEIGHT_CACHE_MAX_BYTES`]. Layers beyond the budget are drawn again (the
/// same bits: the values depend only on seed, tensor and element).
struct WeightCache {
    layers: Vec<Option<Vec<f32>>>,
    left: u64,
}

/// The most bytes of weights the CPU reference keeps between its passes.
pub(crate) const WEIGHT_CACHE_MAX_BYTES: u64 = 2 << 30;

impl WeightCache {
    fn new(cfg: &NetConfig) -> WeightCache {
        let free = crate::io::host::host_memory_bytes()
            .map_or(0, |m| m.saturating_sub(host_bytes(cfg)) / 2);
        WeightCache {
            layers: vec![None; cfg.depth() + 1],
            left: free.min(WEIGHT_CACHE_MAX_BYTES),
        }
    }

    /// Keeps layer `l`'s weights if they fit (layer 1's are never needed again).
    fn offer(&mut self, l: usize, w: Vec<f32>) {
        let bytes = 4 * w.len() as u64;
        if l > 1 && bytes <= self.left {
            self.left -= bytes;
            self.layers[l] = Some(w);
        }
    }

    fn take(&mut self, l: usize) -> Option<Vec<f32>> {
        self.layers.get_mut(l).and_then(Option::take)
    }

    #[cfg(test)]
    fn with_budget(depth: usize, bytes: u64) -> WeightCache {
        WeightCache {
            layers: vec![None; depth + 1],
            left: bytes,
        }
    }
}

/// z_l = a_{l-1} W_l^T (+ b_l), with the fault's zeroed tile if any.
fn pre_activation(
    cfg: &NetConfig,
    l: usize,
    w: &[f32],
    fault: &Fault,
    a: &[f32],
) -> Result<Vec<f32>> {
    let b = cfg.batch as usize;
    let (n_in, n_out) = (cfg.widths[l - 1] as usize, cfg.widths[l] as usize);
    let mut z = crate::io::host::host_vec::<f32>((b * n_out) as u64)?;
    // z = a W^T: W is n_out x n_in row-major, read as n_in x n_out (rs 1, cs n_in).
    sgemm(b, n_out, n_in, &mut z, a, w, 1, n_in, false)?;
    if let Some((rows, cols)) = fault.tile(l, cfg.batch, n_out as u64) {
        for row in z.chunks_mut(n_out).take(rows as usize) {
            row[..cols as usize].fill(0.0);
        }
    }
    if cfg.bias_std > 0.0 {
        let bias = normal(
            cfg.seed,
            net::BIAS_TENSOR | l as u32,
            n_out as u64,
            cfg.bias_std,
        )?;
        for row in z.chunks_mut(n_out) {
            for (v, bb) in row.iter_mut().zip(&bias) {
                *v += bb;
            }
        }
    }
    Ok(z)
}

/// Layer l's forward statistics from z_l, a_l and the Gram of a_{l-1}.
fn forward_stats(cfg: &NetConfig, l: usize, z: &[f32], post: &[f32], gram_a: &[f32]) -> LayerStats {
    let b = cfg.batch as usize;
    let (n_in, n_out) = (cfg.widths[l - 1], cfg.widths[l] as usize);
    let dead = (0..n_out)
        .filter(|&j| (0..b).all(|r| post[r * n_out + j] == 0.0))
        .count();
    let unit_mean_sq = (0..n_out)
        .map(|j| {
            let m: f64 = (0..b).map(|r| f64::from(z[r * n_out + j])).sum::<f64>() / b as f64;
            m * m
        })
        .sum::<f64>()
        / n_out as f64;
    LayerStats {
        layer: l,
        pre_unit_mean_sq: unit_mean_sq,
        input_centred_mean_sq: net::centred_mean_sq(gram_a, b, n_in),
        pre: stats(z, None),
        post: stats(post, cfg.act.saturation()),
        dead_frac: dead as f64 / n_out as f64,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_cache_keeps_what_fits_and_hands_each_layer_back_once() {
        // 3 layers of 4 weights (16 bytes each), room for 2 of them.
        let mut c = WeightCache::with_budget(3, 32);
        c.offer(1, vec![1.0; 4]); // layer 1 is never needed by the backward pass
        c.offer(2, vec![2.0; 4]);
        c.offer(3, vec![3.0; 4]);
        assert_eq!(c.left, 0);
        assert_eq!(c.take(1), None);
        assert_eq!(c.take(3), Some(vec![3.0; 4]));
        assert_eq!(c.take(3), None, "handed back once");
        assert_eq!(c.take(2), Some(vec![2.0; 4]));
        // Over budget: not kept, drawn again by the caller.
        let mut c = WeightCache::with_budget(2, 8);
        c.offer(2, vec![0.0; 4]);
        assert_eq!((c.take(2), c.left), (None, 8));
    }

    #[test]
    fn sgemm_matches_naive_products_exactly_on_integers() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 - 3.0).collect(); // n x k
        let mut c = vec![f32::NAN; m * n];
        sgemm(m, n, k, &mut c, &a, &bt, 1, k, false).unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum();
                assert_eq!(c[i * n + j], want);
            }
        }
        assert!(sgemm(m, n, k, &mut c, &a[..3], &bt, 1, k, false).is_err());
    }
}
