//! The CPU backend: the reference mapping of [`crate::rng::dist`], run on all cores.
//! It is both the fallback where no GPU adapter exists and the reference the
//! GPU output is checked against.

use crate::error::{Error, Result};
use crate::gpu::{GenRequest, Kernel};
use crate::rng::dist::{self, Dist};

/// Number of worker threads: the machine's available parallelism.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total physical memory in bytes, where the OS tells us (Linux `/proc/meminfo`).
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One contiguous piece per worker thread (at least 4096 elements each).
fn pieces(n: usize) -> usize {
    n.div_ceil(threads().min(n.div_ceil(4096)).max(1)).max(1)
}

/// Splits `out` into one contiguous piece per thread and runs `f(start, piece)`
/// on each, where `start` is the element index of the piece's first element.
fn par_chunks<T: Send>(out: &mut [T], start: u64, f: impl Fn(u64, &mut [T]) + Sync) {
    let per = pieces(out.len());
    std::thread::scope(|s| {
        for (i, piece) in out.chunks_mut(per).enumerate() {
            let f = &f;
            s.spawn(move || f(start + (i * per) as u64, piece));
        }
    });
}

/// Maps `f(start, piece)` over one contiguous piece of `xs` per thread and
/// returns the results in order (a panicked worker yields `None`).
fn par_map<T: Sync, R: Send>(
    xs: &[T],
    start: u64,
    f: impl Fn(u64, &[T]) -> R + Sync,
) -> Vec<Option<R>> {
    let per = pieces(xs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = xs
            .chunks(per)
            .enumerate()
            .map(|(i, piece)| {
                let f = &f;
                s.spawn(move || f(start + (i * per) as u64, piece))
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    })
}

/// Elements `start .. start + out.len()` of the tensor, with the reference
/// mapping, on all cores.
pub fn fill(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    par_chunks(out, start, |s, piece| {
        dist::fill_reference(dist, scale, seed, tensor_id, s, piece)
    });
}

/// Elements `start .. start + out.len()` with the fast f32 path
/// ([`crate::rng::fast`]: within the GPU's bound of the reference; uniform
/// bit-identical), on all cores.
pub fn fill_fast(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    par_chunks(out, start, |s, piece| {
        crate::rng::fast::fill(dist, scale, seed, tensor_id, s, piece)
    });
}

/// Raw element words `start ..` on all cores.
pub fn fill_words(seed: u64, tensor_id: u32, start: u64, out: &mut [u32]) {
    par_chunks(out, start, |s, piece| {
        dist::fill_words(seed, tensor_id, s, piece)
    });
}

/// Generates the range `req` describes (a [`Kernel::Dist`] request) in chunks
/// of at most `chunk` elements, handing each to `sink(offset, values)`: the CPU
/// twin of [`crate::gpu::Generator::generate`].
pub fn generate(
    req: &GenRequest,
    chunk: u64,
    mut sink: impl FnMut(u64, &[f32]) -> Result<()>,
) -> Result<()> {
    let Kernel::Dist(dist) = req.kernel else {
        return Err(Error::invalid(
            "kernel",
            "the CPU backend generates distributions; use fill_words for raw bits",
        ));
    };
    if req.count == 0 {
        return Ok(());
    }
    req.start
        .checked_add(req.count)
        .ok_or_else(|| Error::invalid("element range", "start + count overflows a 64-bit index"))?;
    let chunk = chunk.clamp(1, req.count);
    let mut buf = host_vec::<f32>(chunk)?;
    let mut off = 0;
    while off < req.count {
        let n = chunk.min(req.count - off) as usize;
        fill(
            dist,
            req.scale,
            req.seed,
            req.tensor_id,
            req.start + off,
            &mut buf[..n],
        );
        sink(off, &buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// A zeroed host vector of `n` 4-byte elements, or a clear error if the host
/// cannot hold it (more than its physical memory, or an allocation failure).
pub fn host_vec<T: bytemuck::Zeroable + Clone>(n: u64) -> Result<Vec<T>> {
    let limit = host_memory_bytes();
    let too_big = || Error::LimitExceeded {
        what: "tensor in host memory (bytes)".into(),
        got: n.saturating_mul(4),
        max: limit.unwrap_or(isize::MAX as u64),
        hint: "; write it to a file with --out, which streams it chunk by chunk".into(),
    };
    let bytes = n.checked_mul(4).ok_or_else(too_big)?;
    if limit.is_some_and(|mem| bytes > mem) {
        return Err(too_big());
    }
    let n = usize::try_from(n).map_err(|_| too_big())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_big())?;
    v.resize(n, T::zeroed());
    Ok(v)
}

/// How far a backend's output is from the CPU reference over a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Elements compared.
    pub compared: u64,
    /// Largest |got - reference| over finite differences.
    pub max_abs_diff: f64,
    /// The derived bound ([`dist::gpu_tolerance`]) at the element with the largest difference.
    pub bound_at_max: f64,
    /// Element index (within the tensor) of the largest difference.
    pub max_at: u64,
    /// Elements whose difference exceeds their bound (NaN counts as exceeding).
    pub exceeding: u64,
}

impl Comparison {
    /// Combines two comparisons of disjoint ranges.
    pub fn merge(self, o: Comparison) -> Comparison {
        let (max_abs_diff, bound_at_max, max_at) = if o.max_abs_diff > self.max_abs_diff {
            (o.max_abs_diff, o.bound_at_max, o.max_at)
        } else {
            (self.max_abs_diff, self.bound_at_max, self.max_at)
        };
        Comparison {
            compared: self.compared + o.compared,
            max_abs_diff,
            bound_at_max,
            max_at,
            exceeding: self.exceeding + o.exceeding,
        }
    }

    /// True when every element is within its bound.
    pub fn within_bounds(&self) -> bool {
        self.exceeding == 0
    }
}

fn compare_serial(
    dist: Dist,
    scale: f32,
    seed: u64,
    tensor_id: u32,
    start: u64,
    got: &[f32],
) -> Comparison {
    let mut c = Comparison::default();
    let mut e = start;
    let mut i = 0;
    while i < got.len() {
        let x = crate::rng::philox::block_words(seed, tensor_id, e >> 2);
        for lane in (e & 3) as usize..4 {
            if i == got.len() {
                break;
            }
            let want = dist::element_value(dist, scale, x, lane);
            let tol = dist::gpu_tolerance(dist, scale, dist::tolerance_unit(dist, x, lane));
            let diff = (f64::from(got[i]) - f64::from(want)).abs();
            if diff.is_nan() || diff > tol {
                c.exceeding += 1;
            }
            if diff > c.max_abs_diff {
                c.max_abs_diff = diff;
                c.bound_at_max = tol;
                c.max_at = e;
            }
            c.compared += 1;
            i += 1;
            e += 1;
        }
    }
    c
}

/// Compares `got` (elements `start ..` of the tensor) with the CPU reference,
/// element by element against the derived bound, on all cores.
pub fn compare(
    dist: Dist,
    scale: f32,
    seed: u64,
    tensor_id: u32,
    start: u64,
    got: &[f32],
) -> Comparison {
    par_map(got, start, |s, piece| {
        compare_serial(dist, scale, seed, tensor_id, s, piece)
    })
    .into_iter()
    .map(|c| {
        c.unwrap_or(Comparison {
            exceeding: 1,
            ..Default::default()
        })
    })
    .fold(Comparison::default(), Comparison::merge)
}

/// Counts the words of `got` (elements `start ..`) that differ from the reference words.
pub fn count_word_mismatches(seed: u64, tensor_id: u32, start: u64, got: &[u32]) -> u64 {
    par_map(got, start, |s, piece| {
        let mut want = vec![0u32; piece.len()];
        dist::fill_words(seed, tensor_id, s, &mut want);
        want.iter().zip(piece).filter(|(a, b)| a != b).count() as u64
    })
    .into_iter()
    .map(|c| c.unwrap_or(u64::MAX))
    .fold(0, u64::saturating_add)
}
