//! Writers of one checkpoint directory never mix. Every `deepinit model`
//! run holds a shared lock on `.deepinit-writing` in its directory, a file
//! that names the checkpoint being written (a fingerprint of its spec, seed,
//! dtype, sharding and tensor-parallel part). Runs writing the same
//! checkpoint (the ranks of one job, each writing its shards) share it; a
//! run writing a different checkpoint into that directory while one is in
//! progress is refused with a message, before it writes anything. The file
//! is removed by the last writer out; one left by a killed run holds no
//! lock and is taken over by the next run.
//!
//! The check-and-set is serialized by an exclusive lock on the directory
//! itself (Unix), held only for that moment. Locks are advisory `flock`s,
//! released by the kernel when a process dies. On local file systems the
//! claim is exact; on NFS, where the client emulates `flock` with POSIX
//! locks (per process, and not on a directory opened read-only), it is
//! best effort: it still refuses a different checkpoint whose writer holds
//! the marker, but two first writers can race.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The marker's name.
pub(crate) const MARKER: &str = ".deepinit-writing";

/// A held claim on a directory; released (and the marker removed if this
/// was the last writer) on drop, or by [`release_all`] when the process is
/// interrupted.
#[derive(Debug)]
pub(crate) struct DirLock {
    id: u64,
}

/// The claims this process holds: id, directory, the marker's open file.
static HELD: Mutex<Vec<(u64, PathBuf, File)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn held() -> std::sync::MutexGuard<'static, Vec<(u64, PathBuf, File)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets go of a claim: unlocks the marker and removes it if no other
/// writer holds it.
fn release(dir: &Path, f: File) {
    let _mutex = dir_mutex(dir);
    let _ = f.unlock();
    if f.try_lock().is_ok() {
        let _ = std::fs::remove_file(dir.join(MARKER));
    }
}

/// Releases every claim of this process (for the signal handler, before it
/// exits).
pub(crate) fn release_all() {
    let claims: Vec<_> = held().drain(..).collect();
    for (_, dir, f) in claims {
        release(&dir, f);
    }
}

/// The directory's mutex: the directory itself where it can be opened as a
/// file (Unix); elsewhere none (the marker's own exclusive lock is then the
/// only guard, which leaves a narrow race between two first writers).
fn dir_mutex(dir: &Path) -> Option<File> {
    let f = File::open(dir).ok()?;
    f.lock().ok()?;
    Some(f)
}

impl DirLock {
    /// Claims `dir` for writing the checkpoint `fingerprint`.
    pub(crate) fn acquire(dir: &Path, fingerprint: &str) -> Result<DirLock> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        let path = dir.join(MARKER);
        let mutex = dir_mutex(dir);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match f.try_lock() {
            Ok(()) => {
                // Nobody is writing here: record what we write, then share.
                f.set_len(0).map_err(io(&path))?;
                f.seek(SeekFrom::Start(0)).map_err(io(&path))?;
                f.write_all(fingerprint.as_bytes()).map_err(io(&path))?;
                f.unlock().map_err(io(&path))?;
                f.lock_shared().map_err(io(&path))?;
            }
            Err(TryLockError::WouldBlock) => {
                // A fingerprint is short: never read more than a few of them.
                let mut theirs = String::new();
                (&mut f)
                    .take(1024)
                    .read_to_string(&mut theirs)
                    .map_err(io(&path))?;
                if theirs != fingerprint {
                    return Err(Error::path(
                        dir,
                        "another deepinit run is writing a different checkpoint into this \
                         directory (a different spec, seed, dtype, sharding or \
                         tensor-parallel part); wait for it to finish or use another directory",
                    ));
                }
                f.lock_shared().map_err(io(&path))?;
            }
            Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        drop(mutex);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        held().push((id, dir.to_path_buf(), f));
        Ok(DirLock { id })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let claim = {
            let mut h = held();
            h.iter()
                .position(|(id, _, _)| *id == self.id)
                .map(|i| h.swap_remove(i))
        };
        if let Some((_, dir, f)) = claim {
            release(&dir, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_checkpoint_shares_a_different_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(d.path(), "plan-1").unwrap();
        let b = DirLock::acquire(d.path(), "plan-1").unwrap();
        let e = DirLock::acquire(d.path(), "plan-2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("another deepinit run"), "{e}");
        drop(a);
        assert!(d.path().join(MARKER).exists(), "b still writes");
        assert!(DirLock::acquire(d.path(), "plan-2").is_err());
        drop(b);
        assert!(
            !d.path().join(MARKER).exists(),
            "the last one out removes it"
        );
        // A marker left by a killed run holds no lock: taken over.
        std::fs::write(d.path().join(MARKER), "plan-1").unwrap();
        let c = DirLock::acquire(d.path(), "plan-3").unwrap();
        drop(c);
        assert!(!d.path().join(MARKER).exists());
    }
}
