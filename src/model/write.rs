//! Generating and writing a checkpoint's shards: streamed (the device fills
//! the next chunk while a writer thread stores the last; memory is a few
//! chunks, whatever the model's size) and atomic (every file is written to a
//! temporary and renamed into place only once all of them are complete; see
//! [`crate::io::output`] for the rules).

use super::plan::{requests, Item, Plan, INDEX};
use super::spec::{ModelSpec, Rule};
use crate::backend::{Backend, DeviceInfo};
use crate::error::{Error, Result};
use crate::io::dtype::DType;
use crate::io::output::{Destination, Finished, TempFile};
use crate::io::safetensors::{encode_header, Entry};
use crate::progress::Progress;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// Bytes handed to the writer thread at a time.
const STAGE_BYTES: usize = 16 << 20;
/// The writer syncs the data every this many bytes.
const SYNC_BYTES: usize = 64 << 20;
/// Elements generated per chunk (16 MiB of f32): big enough that a
/// discrete GPU's per-submission cost vanishes, small enough that the
/// device, the copy and the writer thread overlap.
const CHUNK_ELEMS: u64 = 4 << 20;

/// The files of one run, validated before any work.
#[derive(Debug)]
pub(crate) struct Targets {
    dir: PathBuf,
    created: bool,
    shards: Vec<(usize, Destination)>,
    index: Option<Destination>,
    extra: Vec<(Destination, Vec<u8>)>,
    /// The claim on the directory, held until the run ends.
    _lock: crate::io::lock::DirLock,
}

/// What identifies a checkpoint: FNV-1a-64 of its spec (as the metadata
/// records it), dtype, shard count and tensor-parallel part. Runs with the
/// same fingerprint write the same bytes, so they may share a directory.
pub(crate) fn fingerprint(spec: &ModelSpec, plan: &Plan) -> String {
    let text = format!(
        "{} {} {} {} {}",
        super::emit::to_json(spec),
        plan.dtype.name(),
        plan.shards.len(),
        plan.tp.size,
        plan.tp.rank
    );
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("deepinit checkpoint {h:016x}")
}

impl Targets {
    /// Checks that `dir` (created if missing, under an existing parent) can
    /// take shards `which` of `plan`, when sharded the index, and the `extra`
    /// files (`config.json`, ...: name and bytes), under the no-clobber rules
    /// (an index or extra file identical to ours is left as it is: every
    /// rank of a job writes the same ones).
    pub(crate) fn check(
        dir: &Path,
        spec: &ModelSpec,
        plan: &Plan,
        which: &[usize],
        extra: Vec<(String, Vec<u8>)>,
        force: bool,
    ) -> Result<Targets> {
        let created = crate::io::output::create_output_dir(dir)?;
        let result = (|| {
            // Claimed before anything is checked: no other checkpoint can be
            // written here until this run ends.
            let lock = crate::io::lock::DirLock::acquire(dir, &fingerprint(spec, plan))?;
            // Room for this run's shards (their data; headers are small), all
            // of which exist at once before they are put in place.
            let bytes: u64 = which.iter().map(|&i| plan.shards[i].bytes()).sum();
            if let Some(free) = crate::io::output::free_space(dir) {
                if bytes > free {
                    return Err(Error::LimitExceeded {
                        what: format!("checkpoint in {} (bytes)", dir.display()),
                        got: bytes,
                        max: free,
                        hint: " free on that file system".into(),
                    });
                }
            }
            let shards = which
                .iter()
                .map(|&i| {
                    Ok((
                        i,
                        Destination::check(&dir.join(&plan.shards[i].file), force)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let index = match plan.index_json() {
                None => None,
                Some(bytes) => {
                    let p = dir.join(INDEX);
                    let same = crate::io::read::same_contents(&p, &bytes);
                    Some(Destination::check(&p, force || same)?)
                }
            };
            let extra = extra
                .into_iter()
                .map(|(name, bytes)| {
                    let p = dir.join(&name);
                    let same = crate::io::read::same_contents(&p, &bytes);
                    Ok((Destination::check(&p, force || same)?, bytes))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Targets {
                dir: dir.to_path_buf(),
                created,
                shards,
                index,
                extra,
                _lock: lock,
            })
        })();
        if result.is_err() && created {
            crate::io::output::release_dir(dir, true);
        }
        result
    }
}

/// One written file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Tensors in it.
    pub tensors: usize,
    /// False for an index that was already there, identical (left as it is).
    pub written: bool,
}

/// What `deepinit model` did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Element type.
    pub dtype: DType,
    /// Tensors in the model.
    pub tensors: usize,
    /// Parameters in the model (the whole model, even under tensor parallelism).
    pub parameters: u64,
    /// Shard files of the checkpoint.
    pub shards: usize,
    /// Tensor-parallel size and rank.
    pub tensor_parallel: [u64; 2],
    /// Files written by this run (the index last).
    pub files: Vec<FileReport>,
    /// Bytes written by this run (a kept index not counted).
    pub bytes: u64,
    /// Wall-clock seconds of generation and writing.
    pub seconds: f64,
    /// bytes / seconds / 1e6.
    pub mb_per_s: f64,
    /// Where the values were generated.
    pub device: DeviceInfo,
}

/// The `__metadata__` of shard `i`: how the checkpoint was made.
pub(crate) fn metadata(spec: &ModelSpec, plan: &Plan, i: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| m.insert(k.to_string(), v);
    put("format", "pt".into());
    put("deepinit.version", env!("CARGO_PKG_VERSION").into());
    put("deepinit.seed", spec.seed.to_string());
    put("deepinit.dtype", plan.dtype.name().into());
    put(
        "deepinit.shard",
        format!("{} of {}", i + 1, plan.shards.len()),
    );
    if plan.tp.size > 1 {
        put(
            "deepinit.tensor_parallel",
            format!("rank {} of {}", plan.tp.rank, plan.tp.size),
        );
    }
    put(
        "deepinit.mapping",
        "element e of tensor NAME: Philox4x32-10 with key = seed, counter = \
         [e/4 low 32 bits, e/4 high 32 bits, FNV-1a-32(NAME), 0], word e%4, \
         mapped to the distribution as deepinit's docs/reference.md says"
            .into(),
    );
    put("deepinit.spec", super::emit::to_json(spec).to_string());
    m
}

/// Generates and writes the shards and index of `targets`; nothing appears
/// unless everything succeeded.
pub(crate) fn write(
    spec: &ModelSpec,
    plan: &Plan,
    targets: Targets,
    backend: &Backend,
    progress: Option<&Progress>,
) -> Result<Report> {
    let start = Instant::now();
    let result = write_all(spec, plan, &targets, backend, progress);
    let Targets {
        dir,
        created,
        _lock: claim,
        ..
    } = targets;
    // The claim's marker goes first, so a directory this run created and
    // failed to fill is empty again and removed.
    drop(claim);
    if created {
        crate::io::output::release_dir(&dir, result.is_err());
    }
    let files = result?;
    let bytes = files
        .iter()
        .filter(|f| f.written)
        .map(|f| f.bytes)
        .sum::<u64>();
    let seconds = start.elapsed().as_secs_f64();
    Ok(Report {
        seed: spec.seed,
        dtype: plan.dtype,
        tensors: spec.tensors.len(),
        parameters: spec.elements(),
        shards: plan.shards.len(),
        tensor_parallel: [plan.tp.size, plan.tp.rank],
        files,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds.max(1e-9) / 1e6,
        device: backend.info(),
    })
}

fn write_all(
    spec: &ModelSpec,
    plan: &Plan,
    targets: &Targets,
    backend: &Backend,
    progress: Option<&Progress>,
) -> Result<Vec<FileReport>> {
    let total: u64 = targets
        .shards
        .iter()
        .map(|(i, _)| plan.shards[*i].bytes())
        .sum();
    let mut done = 0u64;
    // The CPU backend's buffers, reused across tensors.
    let mut scratch = crate::backend::Scratch::default();
    // Closed as soon as complete, so a thousand shards need no thousand descriptors.
    let mut temps: Vec<(Finished, FileReport)> = Vec::new();
    for (i, dest) in &targets.shards {
        let shard = &plan.shards[*i];
        let entries: Vec<Entry> = shard.items.iter().map(|it| it.entry.clone()).collect();
        let header = encode_header(&metadata(spec, plan, *i), &entries)?;
        let tmp = dest.create()?;
        let tmp = stream(tmp, &header, |emit| {
            for item in &shard.items {
                produce(
                    spec,
                    plan.dtype,
                    item,
                    backend,
                    &mut scratch,
                    &mut |b: &[u8]| {
                        done += b.len() as u64;
                        if let Some(p) = progress {
                            p.update_bytes(done, total);
                        }
                        emit(b)
                    },
                )?;
            }
            Ok(())
        })?;
        let report = FileReport {
            path: dest.path().to_path_buf(),
            bytes: header.len() as u64 + shard.bytes(),
            tensors: shard.items.len(),
            written: true,
        };
        temps.push((tmp.finish()?, report));
    }
    // All or nothing, the index and config included (after the shards, so a
    // reader that sees the index finds its shards): a failure leaves
    // whatever was there before untouched.
    let (mut finished, mut files): (Vec<Finished>, Vec<FileReport>) = temps.into_iter().unzip();
    let index = plan
        .index_json()
        .and_then(|b| targets.index.as_ref().map(|d| (d, b)));
    let small = index
        .iter()
        .map(|(d, b)| (*d, b.as_slice()))
        .chain(targets.extra.iter().map(|(d, b)| (d, b.as_slice())));
    for (dest, bytes) in small {
        // None: identical to what is there (ranks of one job all write the
        // same; whichever lands first is kept).
        let prepared = dest.prepare(bytes)?;
        files.push(FileReport {
            path: dest.path().to_path_buf(),
            bytes: bytes.len() as u64,
            tensors: 0,
            written: prepared.is_some(),
        });
        finished.extend(prepared);
    }
    crate::io::output::commit_all(finished)?;
    Ok(files)
}

/// Runs `fill(emit)` while a writer thread appends what it emits (after
/// `header`) to `tmp`; returns the file, complete but not committed.
fn stream(
    mut tmp: TempFile,
    header: &[u8],
    fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<TempFile> {
    tmp.write_all(header)?;
    std::thread::scope(|s| {
        // Two staged buffers in the queue, one being written, one being filled.
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(2);
        let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
        let writer = s.spawn(move || -> Result<TempFile> {
            let mut unsynced = 0usize;
            for buf in rx {
                tmp.write_all(&buf)?;
                unsynced += buf.len();
                let _ = back_tx.send(buf);
                // Keep the disk busy while generation goes on: the final
                // sync then waits for at most this much.
                if unsynced >= SYNC_BYTES {
                    tmp.sync_data()?;
                    unsynced = 0;
                }
            }
            Ok(tmp)
        });
        let mut stage: Vec<u8> = Vec::with_capacity(STAGE_BYTES);
        let mut failed_send = false;
        let produced = {
            let mut emit = |mut b: &[u8]| -> Result<()> {
                while !b.is_empty() {
                    let take = (STAGE_BYTES - stage.len()).min(b.len());
                    stage.extend_from_slice(&b[..take]);
                    b = &b[take..];
                    if stage.len() == STAGE_BYTES {
                        let next = back_rx
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(STAGE_BYTES));
                        let full = std::mem::replace(&mut stage, next);
                        stage.clear();
                        if tx.send(full).is_err() {
                            failed_send = true;
                            return Err(Error::internal("checkpoint writer", "the writer stopped"));
                        }
                    }
                }
                Ok(())
            };
            fill(&mut emit)
        };
        if produced.is_ok() && !stage.is_empty() {
            failed_send |= tx.send(stage).is_err();
        }
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| Error::internal("checkpoint writer", "the writer thread panicked"))?;
        // A write error explains a failed send better than the send does.
        match (produced, written) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(_)) if failed_send => {
                Err(Error::internal("checkpoint writer", "data lost"))
            }
            (Ok(()), Ok(tmp)) => Ok(tmp),
        }
    })
}

/// Emits the bytes of `item`: a constant, or the block's element ranges
/// generated on `backend`.
fn produce(
    spec: &ModelSpec,
    dtype: DType,
    item: &Item,
    backend: &Backend,
    scratch: &mut crate::backend::Scratch,
    emit: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let t = &spec.tensors[item.tensor];
    let n = item.part.len();
    let (dist, std) = match &t.rule {
        Rule::Const(v) => return emit_constant(*v, n, dtype, emit),
        Rule::Draw { init, .. } => {
            let target = t
                .target()?
                .ok_or_else(|| Error::internal("model", "no target"))?;
            (init.dist(), target.std)
        }
    };
    let scale = dist.kernel_scale(std);
    // Drawn segments and zero rows (padding_idx), in storage order.
    let segments = zero_row_segments(
        &item.part.ranges,
        &t.zero_rows,
        t.shape.0.iter().skip(1).product(),
    );
    // The store and workgroup size tuned for this kernel (values never
    // depend on them).
    let gen = backend.generation_options(crate::gpu::Kernel::Dist(dist), n, CHUNK_ELEMS)?;
    for (range, zero) in segments {
        if zero {
            emit_constant(0.0, range.end - range.start, dtype, emit)?;
            continue;
        }
        let req = &requests(&[range], dist, spec.seed, t.id(), scale)[0];
        backend.generate_encoded(req, &gen, dtype, scratch, emit)?;
    }
    Ok(())
}

/// Emits `n` copies of `v` in `dtype`.
fn emit_constant(
    v: f32,
    n: u64,
    dtype: DType,
    emit: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut chunk = Vec::new();
    let reps = n.min(STAGE_BYTES as u64 / dtype.size()) as usize;
    dtype.encode(&vec![v; reps], &mut chunk);
    let mut left = n;
    while left > 0 {
        let k = left.min(reps as u64);
        emit(&chunk[..(k * dtype.size()) as usize])?;
        left -= k;
    }
    Ok(())
}

/// `ranges` (element ranges of a tensor with rows of `width` elements) cut
/// into segments that are drawn (`false`) or lie in one of `zero_rows`
/// (`true`), in order.
fn zero_row_segments(
    ranges: &[Range<u64>],
    zero_rows: &[u64],
    width: u64,
) -> Vec<(Range<u64>, bool)> {
    let mut rows: Vec<u64> = zero_rows.to_vec();
    rows.sort_unstable();
    rows.dedup();
    let mut out = Vec::new();
    for r in ranges {
        let mut at = r.start;
        for &z in &rows {
            let zr = (z * width).max(at)..((z + 1) * width).min(r.end);
            if zr.start >= zr.end {
                continue;
            }
            if at < zr.start {
                out.push((at..zr.start, false));
            }
            out.push((zr.clone(), true));
            at = zr.end;
        }
        if at < r.end {
            out.push((at..r.end, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn zero_rows_cut_ranges_into_drawn_and_zero_segments() {
        // A 4 x 3 tensor, row 1 zero; the whole tensor, then a column cut.
        assert_eq!(
            zero_row_segments(&[0..12], &[1], 3),
            vec![(0..3, false), (3..6, true), (6..12, false)]
        );
        assert_eq!(
            zero_row_segments(&[1..2, 4..5, 7..8], &[1, 1], 3),
            vec![(1..2, false), (4..5, true), (7..8, false)]
        );
        assert_eq!(zero_row_segments(&[0..6], &[], 3), vec![(0..6, false)]);
    }
}
