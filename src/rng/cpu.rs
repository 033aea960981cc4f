//! The CPU backend: the mapping of [`crate::rng::dist`] on SIMD lanes
//! ([`crate::rng::fast`]), run on all cores. It is both the fallback where no
//! GPU adapter exists and the reference the GPU output is checked against,
//! bit for bit.

use crate::error::{Error, Result};
use crate::rng::dist::{self, Dist};
use crate::rng::request::{GenRequest, Kernel};

/// Number of worker threads: the machine's available parallelism.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

/// Elements `start .. start + out.len()` of the tensor, on all cores: the
/// bits of [`dist::element_value`] for every element.
pub fn fill(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    par_chunks(out, start, |s, piece| {
        crate::rng::fast::fill(dist, scale, seed, tensor_id, s, piece)
    });
}

/// [`fill`] of elements `at ..` of `req`'s tensor (its seed, tensor id and
/// scale; `dist` its distribution), then each thread encodes its own piece
/// into `bytes` as `dtype` (`bytes.len()` = `out.len()` x the dtype's size):
/// generation and encoding in one parallel pass.
pub(crate) fn fill_encoded(
    dist: Dist,
    req: &GenRequest,
    at: u64,
    out: &mut [f32],
    dtype: crate::io::dtype::DType,
    bytes: &mut [u8],
) {
    let per = pieces(out.len());
    let size = dtype.size() as usize;
    std::thread::scope(|s| {
        for (i, (piece, b)) in out
            .chunks_mut(per)
            .zip(bytes.chunks_mut(per * size))
            .enumerate()
        {
            s.spawn(move || {
                let start = at + (i * per) as u64;
                crate::rng::fast::fill(dist, req.scale, req.seed, req.tensor_id, start, piece);
                dtype.encode_into(piece, b);
            });
        }
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
    let mut buf = crate::io::host::host_vec::<f32>(chunk)?;
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

/// A backend's output against the CPU reference over a range: bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Elements compared.
    pub compared: u64,
    /// Elements whose bit pattern differs from the reference's.
    pub mismatched: u64,
    /// Element index (within the tensor) of the first differing element.
    pub first_mismatch: Option<u64>,
    /// Largest |got - reference| (NaN where either is NaN); 0 when identical.
    pub max_abs_diff: f64,
}

impl Comparison {
    /// Combines two comparisons; `self` covers the earlier range.
    pub(crate) fn merge(self, o: Comparison) -> Comparison {
        Comparison {
            compared: self.compared + o.compared,
            mismatched: self.mismatched + o.mismatched,
            first_mismatch: self.first_mismatch.or(o.first_mismatch),
            max_abs_diff: if o.max_abs_diff > self.max_abs_diff || o.max_abs_diff.is_nan() {
                o.max_abs_diff
            } else {
                self.max_abs_diff
            },
        }
    }

    /// True when every element compared is bit-identical to the reference.
    pub fn identical(&self) -> bool {
        self.mismatched == 0
    }
}

/// Compares `got` (elements `start ..` of the tensor) with the CPU reference,
/// bit for bit, on all cores.
pub fn compare(
    dist: Dist,
    scale: f32,
    seed: u64,
    tensor_id: u32,
    start: u64,
    got: &[f32],
) -> Comparison {
    par_map(got, start, |s, piece| {
        let mut want = vec![0f32; piece.len()];
        crate::rng::fast::fill(dist, scale, seed, tensor_id, s, &mut want);
        let mut c = Comparison {
            compared: piece.len() as u64,
            ..Default::default()
        };
        for (i, (g, w)) in piece.iter().zip(&want).enumerate() {
            if g.to_bits() != w.to_bits() {
                c.mismatched += 1;
                c.first_mismatch.get_or_insert(s + i as u64);
                let d = (f64::from(*g) - f64::from(*w)).abs();
                if d > c.max_abs_diff || d.is_nan() {
                    c.max_abs_diff = d;
                }
            }
        }
        c
    })
    .into_iter()
    .map(|c| {
        c.unwrap_or(Comparison {
            mismatched: 1,
            ..Default::default()
        })
    })
    .fold(Comparison::default(), Comparison::merge)
}

/// Counts the words of `got` (elements `start ..`) that differ from the reference words.
pub(crate) fn count_word_mismatches(seed: u64, tensor_id: u32, start: u64, got: &[u32]) -> u64 {
    par_map(got, start, |s, piece| {
        let mut want = vec![0u32; piece.len()];
        dist::fill_words(seed, tensor_id, s, &mut want);
        want.iter().zip(piece).filter(|(a, b)| a != b).count() as u64
    })
    .into_iter()
    .map(|c| c.unwrap_or(u64::MAX))
    .fold(0, u64::saturating_add)
}
