//! Result files that are complete or absent, and never replace what they
//! must not.
//!
//! # The rules
//! - **Checked first.** A [`Destination`] is validated before any work starts:
//!   its directory exists and accepts a new file, and the path is not a
//!   directory or a special file. Errors name the user's path.
//! - **Atomic.** Data goes to a short hidden temporary file in the same
//!   directory (`.deepinit-PID-N.tmp`), is synced, then renamed into place:
//!   a failure, a dropped writer or SIGINT/SIGTERM/SIGHUP leaves no partial
//!   output.
//! - **No clobbering.** Without `--force` the final rename refuses, atomically,
//!   to replace an existing file, even one that appeared while deepinit ran
//!   (Linux `renameat2(RENAME_NOREPLACE)`; elsewhere, or where the file system
//!   does not support it, `link()` then `unlink()`, which also fails on an
//!   existing name).
//! - **Never special.** Device nodes, FIFOs, sockets and directories are never
//!   replaced, `--force` or not.
//! - **Symlinks.** A symlink at the destination is a name like any other: it
//!   counts as existing (refused without `--force`) and with `--force` the
//!   *link itself* is replaced by the new file; what it pointed to is never
//!   written or touched.
//! - **Stale temporaries** of a killed run (SIGKILL, power loss) are
//!   recognised by their name and the dead PID in it, and removed the next
//!   time deepinit writes into that directory.
//! - **Output directories** of `demo` and `sweep` hold a manifest
//!   (`.deepinit-manifest.json`) of the files deepinit wrote there; rerunning
//!   replaces those files while they are unchanged (same size and
//!   modification time), and refuses to replace anything else without
//!   `--force`. The directory is created only when the results are written.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Temporary files in flight, removed by the signal handler.
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Directories this run created for its output, removed (when empty) by the
/// signal handler.
static CREATED_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Files moved aside by [`commit_all`] (destination, backup): put back by
/// the signal handler if the process is interrupted mid-commit.
static ASIDE: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
/// Directories already swept for stale temporaries by this process.
static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Temporary file names start with this.
pub(crate) const TEMP_PREFIX: &str = ".deepinit-";
/// And end with this.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// The manifest of an output directory.
pub(crate) const MANIFEST: &str = ".deepinit-manifest.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes every temporary file in flight, puts back files a commit had
/// moved aside, and removes the empty directories this run created: for a
/// process about to exit early (a signal, a closed standard output). The
/// library never exits the process itself; the command line's signal
/// handler calls this, then exits.
pub(crate) fn remove_temporaries() {
    remove_all_temps();
}

fn remove_all_temps() {
    // Claims on checkpoint directories first: their markers must go before
    // the directories this run created can be removed.
    crate::io::lock::release_all();
    // Old files moved aside by an interrupted commit go back first.
    for (dest, bak) in lock(&ASIDE).drain(..).rev() {
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::rename(&bak, &dest);
    }
    for p in lock(&TEMPS).drain(..) {
        let _ = std::fs::remove_file(p);
    }
    for d in lock(&CREATED_DIRS).drain(..).rev() {
        // Fails harmlessly when something else is in it.
        let _ = std::fs::remove_dir(d);
    }
}

/// Bytes available to this user on the file system holding `dir`, where the
/// platform tells us.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).ok()?;
        s.f_bavail.checked_mul(s.f_frsize)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// `path` made absolute with its directory resolved (symlinks followed where
/// it exists; `.` and `..` removed lexically where it does not yet), so two
/// names of one file compare equal.
pub(crate) fn normalized(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path))
    };
    let (dir, name) = match (abs.parent(), abs.file_name()) {
        (Some(d), Some(n)) => (d.to_path_buf(), n.to_os_string()),
        _ => return abs,
    };
    if let Ok(d) = std::fs::canonicalize(&dir) {
        return d.join(name);
    }
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Errors when two outputs of one run name the same file (`what` names
/// them), before any work: one would overwrite the other.
pub(crate) fn check_distinct(outputs: &[(String, PathBuf)]) -> Result<()> {
    let norm: Vec<PathBuf> = outputs.iter().map(|(_, p)| normalized(p)).collect();
    for (i, a) in norm.iter().enumerate() {
        if let Some(j) = norm[..i].iter().position(|b| b == a) {
            return Err(Error::path(
                &outputs[i].1,
                format!(
                    "is both {} and {} of this run; give them different names",
                    outputs[j].0, outputs[i].0
                ),
            ));
        }
    }
    Ok(())
}

/// Creates the output directory `dir` if it does not exist (its parent
/// must), returning whether it did; a directory created here is removed
/// again, if empty, by the signal handler or [`release_dir`].
pub(crate) fn create_output_dir(dir: &Path) -> Result<bool> {
    match existing(dir)? {
        Existing::Nothing => {
            let parent = parent_of(dir);
            if !parent.is_dir() {
                return Err(Error::path(
                    dir,
                    format!("the directory {} does not exist", parent.display()),
                ));
            }
            lock(&CREATED_DIRS).push(dir.to_path_buf());
            match std::fs::create_dir(dir) {
                Ok(()) => Ok(true),
                // Another process (a rank of the same job) made it first.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
                    lock(&CREATED_DIRS).retain(|d| d != dir);
                    Ok(false)
                }
                Err(e) => {
                    lock(&CREATED_DIRS).retain(|d| d != dir);
                    Err(Error::path(
                        dir,
                        format!("cannot create the directory: {e}"),
                    ))
                }
            }
        }
        _ if dir.is_dir() => Ok(false),
        _ => Err(Error::path(dir, "exists and is not a directory")),
    }
}

/// Ends the tracking of a directory from [`create_output_dir`]: removed if
/// `remove` (and empty), kept otherwise.
pub(crate) fn release_dir(dir: &Path, remove: bool) {
    lock(&CREATED_DIRS).retain(|d| d != dir);
    if remove {
        let _ = std::fs::remove_dir(dir);
    }
}

/// What is at a path, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Nothing,
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Symlink,
    /// A directory.
    Directory,
    /// A FIFO, socket or device node.
    Special(&'static str),
}

/// Classifies `path` with `lstat`.
pub(crate) fn existing(path: &Path) -> Result<Existing> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(io_err(path)(e)),
        Ok(m) => {
            let t = m.file_type();
            Ok(if t.is_symlink() {
                Existing::Symlink
            } else if t.is_file() {
                Existing::File
            } else if t.is_dir() {
                Existing::Directory
            } else {
                Existing::Special(special_kind(&t))
            })
        }
    }
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Refuses what may never be replaced; `force` decides about existing files.
fn check_replaceable(path: &Path, force: bool) -> Result<()> {
    match existing(path)? {
        Existing::Nothing => Ok(()),
        Existing::File | Existing::Symlink if force => Ok(()),
        // A link to something that is not a regular file: --force would
        // replace the link, never write where it points, so it is not the
        // advice.
        Existing::Symlink if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) => {
            Err(Error::path(
                path,
                "is a symbolic link to a directory, device or other special file; deepinit \
                 never writes through links: choose another name",
            ))
        }
        Existing::File | Existing::Symlink => Err(Error::WouldOverwrite {
            path: path.to_path_buf(),
        }),
        Existing::Directory => Err(Error::path(path, "is a directory, not a file")),
        Existing::Special(kind) => Err(Error::path(
            path,
            format!(
                "is {kind}; deepinit only writes regular files and never replaces \
                 special files, even with --force"
            ),
        )),
    }
}

/// Checks that `dir` exists, is a directory and accepts a new file (by
/// creating and removing a probe), naming `for_path` in errors.
fn check_dir_writable(dir: &Path, for_path: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(_) => {
            return Err(Error::path(
                for_path,
                format!("the directory {} does not exist", dir.display()),
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::path(
                for_path,
                format!("{} is not a directory", dir.display()),
            ))
        }
        Ok(_) => {}
    }
    let probe = TempPath::create(dir)?;
    drop(probe);
    Ok(())
}

/// A file to write, validated before the work starts.
#[derive(Debug, Clone)]
pub struct Destination {
    path: PathBuf,
    force: bool,
}

impl Destination {
    /// Validates `path` as an output file (`force`: an existing regular file
    /// or symlink may be replaced).
    pub fn check(path: &Path, force: bool) -> Result<Destination> {
        if path.file_name().is_none() {
            return Err(Error::path(path, "has no file name"));
        }
        check_replaceable(path, force)?;
        check_dir_writable(parent_of(path), path)?;
        Ok(Destination {
            path: path.to_path_buf(),
            force,
        })
    }

    /// The user's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a temporary file for streaming; [`TempFile::commit`] puts it in place.
    pub(crate) fn create(&self) -> Result<TempFile> {
        let tmp = TempPath::create(parent_of(&self.path))?;
        let file = OpenOptions::new()
            .write(true)
            .open(&tmp.0)
            .map_err(io_err(&self.path))?;
        Ok(TempFile {
            dest: self.clone(),
            tmp,
            file: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Writes `bytes` atomically.
    pub(crate) fn write(&self, bytes: &[u8]) -> Result<()> {
        let mut f = self.create()?;
        f.write_all(bytes)?;
        f.commit()
    }

    /// A small file (an index, a config) finished and ready to go in with
    /// others through [`commit_all`], or `None` when the same bytes are
    /// already there (left as they are). A file with the same bytes that
    /// appears before the commit (another rank of the job wrote it) counts
    /// as placed, not as a file in the way.
    pub(crate) fn prepare(&self, bytes: &[u8]) -> Result<Option<Finished>> {
        if crate::io::read::same_contents(&self.path, bytes) {
            return Ok(None);
        }
        let mut f = self.create()?;
        f.write_all(bytes)?;
        let mut done = f.finish()?;
        done.same_ok = Some(bytes.to_vec());
        Ok(Some(done))
    }
}

/// A registered temporary path: removed when dropped (unless disarmed) and
/// by the signal handler.
struct TempPath(PathBuf);

impl TempPath {
    /// Creates an empty, uniquely named temporary file in `dir`.
    fn create(dir: &Path) -> Result<TempPath> {
        sweep_stale(dir);
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = dir.join(format!("{TEMP_PREFIX}{pid}-{n}{TEMP_SUFFIX}"));
            // Register first, so a signal between create and register cannot leak it.
            lock(&TEMPS).push(p.clone());
            match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(_) => return Ok(TempPath(p)),
                Err(e) => {
                    lock(&TEMPS).retain(|q| q != &p);
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(Error::path(dir, format!("cannot create a file here: {e}")));
                    }
                }
            }
        }
    }

    /// Forgets the path (it was renamed into place).
    fn disarm(self) {
        lock(&TEMPS).retain(|q| q != &self.0);
        std::mem::forget(self);
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        lock(&TEMPS).retain(|q| q != &self.0);
    }
}

/// A temporary file being written; dropped without [`TempFile::commit`], it
/// is removed.
pub(crate) struct TempFile {
    dest: Destination,
    tmp: TempPath,
    file: BufWriter<File>,
}

impl TempFile {
    /// Appends bytes (buffered); errors name the destination.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(io_err(&self.dest.path))
    }

    /// The destination's path.
    pub(crate) fn path(&self) -> &Path {
        &self.dest.path
    }

    /// Flushes what is buffered and waits until the data written so far is
    /// on the device (`fdatasync`): a long writer calls it now and then so
    /// the disk works while data is still being made, instead of all at the
    /// final sync.
    pub(crate) fn sync_data(&mut self) -> Result<()> {
        self.file.flush().map_err(io_err(&self.dest.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.dest.path))
    }

    /// Syncs and renames the file into place under the no-clobber rules.
    pub(crate) fn commit(self) -> Result<()> {
        self.finish()?.commit()
    }

    /// Flushes, syncs and closes the file without putting it in place yet
    /// (a set of files can then appear together, closer to all at once).
    pub(crate) fn finish(self) -> Result<Finished> {
        let TempFile { dest, tmp, file } = self;
        let file = file
            .into_inner()
            .map_err(|e| io_err(&dest.path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&dest.path))?;
        drop(file);
        Ok(Finished {
            dest,
            tmp,
            same_ok: None,
        })
    }
}

/// Puts a set of finished files in place, all or nothing: every destination
/// is checked first; with `--force`, the files being replaced are moved
/// aside (`.deepinit-PID-N.bak` beside them) before any new file goes in,
/// and moved back if any step fails, so a failure leaves the old files as
/// they were and a success leaves only the new ones. (A process killed in
/// the moment between the two renames leaves the `.bak` files, which are
/// never swept automatically: they hold the user's data.)
pub(crate) fn commit_all(files: Vec<Finished>) -> Result<()> {
    let identical = |path: &Path, same_ok: &Option<Vec<u8>>| {
        same_ok
            .as_deref()
            .is_some_and(|b| crate::io::read::same_contents(path, b))
    };
    // Files already there byte for byte (another rank of the job placed
    // them, before or during this check) are left out; every other
    // destination must be replaceable before anything moves.
    let mut files: Vec<Finished> = {
        let mut keep = Vec::with_capacity(files.len());
        for f in files {
            if identical(&f.dest.path, &f.same_ok) {
                continue;
            }
            match check_replaceable(&f.dest.path, f.dest.force) {
                Ok(()) => keep.push(f),
                Err(Error::WouldOverwrite { .. }) if identical(&f.dest.path, &f.same_ok) => {}
                Err(e) => return Err(e),
            }
        }
        keep
    };
    // Prepared files (an index, a config) go in last, after every file they
    // describe.
    files.sort_by_key(|f| f.same_ok.is_some());
    // Moves the old files back; a failure is named, never silent.
    let restore = |extra: Error| -> Error {
        let aside: Vec<(PathBuf, PathBuf)> = lock(&ASIDE).drain(..).collect();
        let mut kept = Vec::new();
        for (dest, bak) in aside.iter().rev() {
            if std::fs::rename(bak, dest).is_err() {
                kept.push(format!("{} is kept at {}", dest.display(), bak.display()));
            }
        }
        if kept.is_empty() {
            extra
        } else {
            Error::invalid(
                "replacing files",
                format!("{extra}; and restoring failed: {}", kept.join("; ")),
            )
        }
    };
    for f in &files {
        if f.dest.force && existing(&f.dest.path)? != Existing::Nothing {
            // A fresh name (never one an older backup holds).
            let mut moved = Err(Error::internal("replacing files", "no backup name"));
            for _ in 0..16 {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let bak = parent_of(&f.dest.path)
                    .join(format!("{TEMP_PREFIX}{}-{n}.bak", std::process::id()));
                match rename_noreplace(&f.dest.path, &bak) {
                    Err(Error::WouldOverwrite { .. }) => continue,
                    // Gone meanwhile (another rank of the job moved the
                    // shared index aside first): nothing to keep.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        moved = Ok(());
                        break;
                    }
                    Err(e) => {
                        moved = Err(e);
                        break;
                    }
                    Ok(()) => {
                        lock(&ASIDE).push((f.dest.path.clone(), bak));
                        moved = Ok(());
                        break;
                    }
                }
            }
            if let Err(e) = moved {
                return Err(restore(e));
            }
        }
    }
    let mut placed: Vec<PathBuf> = Vec::new();
    for f in files {
        let path = f.dest.path.clone();
        let same_ok = f.same_ok.clone();
        match f.commit() {
            Ok(()) => placed.push(path),
            // Placed meanwhile by another rank of the job, byte for byte.
            Err(Error::WouldOverwrite { .. }) if identical(&path, &same_ok) => {}
            Err(e) => {
                for p in &placed {
                    let _ = std::fs::remove_file(p);
                }
                return Err(restore(e));
            }
        }
    }
    for (_, bak) in lock(&ASIDE).drain(..) {
        let _ = std::fs::remove_file(bak);
    }
    Ok(())
}

/// A complete, synced and closed temporary file; dropped without
/// [`Finished::commit`], it is removed.
pub(crate) struct Finished {
    dest: Destination,
    tmp: TempPath,
    /// Set by [`Destination::prepare`]: these bytes at the destination
    /// already are this file.
    same_ok: Option<Vec<u8>>,
}

impl Finished {
    /// Renames the file into place under the no-clobber rules.
    pub(crate) fn commit(self) -> Result<()> {
        let Finished { dest, tmp, .. } = self;
        if dest.force {
            // Re-check: something special may have appeared meanwhile.
            check_replaceable(&dest.path, true)?;
            std::fs::rename(&tmp.0, &dest.path).map_err(io_err(&dest.path))?;
        } else {
            rename_noreplace(&tmp.0, &dest.path)?;
        }
        tmp.disarm();
        Ok(())
    }
}

/// Renames `from` to `to` unless `to` exists, atomically.
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    let exists = || Error::WouldOverwrite {
        path: to.to_path_buf(),
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::EXIST) => return Err(exists()),
            // Not supported by this kernel or file system: fall back below.
            Err(rustix::io::Errno::INVAL)
            | Err(rustix::io::Errno::NOSYS)
            | Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(io_err(to)(e.into())),
        }
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(io_err(to)(e)),
    }
}

/// Whether process `pid` still exists (true when unsure).
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return true;
        };
        !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The PID in a temporary file name, if `name` is one of ours.
pub(crate) fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(TEMP_SUFFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes temporaries left in `dir` by deepinit processes that no longer
/// exist (once per directory per run; best effort).
fn sweep_stale(dir: &Path) {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    {
        let mut swept = lock(&SWEPT);
        if swept.contains(&key) {
            return;
        }
        swept.push(key);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else {
            continue;
        };
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if pid != me && is_file && !alive(pid) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically, replacing an existing regular file
/// (for files deepinit owns, such as its cache; user outputs go through
/// [`Destination`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Destination::check(path, true)?.write(bytes)
}

/// An output directory for a fixed set of result files, checked before work
/// starts and created only when the results are written (see the module docs
/// for the manifest rule).
#[derive(Debug, Clone)]
pub struct OutputDir {
    dir: PathBuf,
    force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    len: u64,
    mtime_ns: u128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    let mtime_ns = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(Stamp {
        len: m.len(),
        mtime_ns,
    })
}

impl OutputDir {
    /// Validates `dir` for the files `names` (which must not be replaced
    /// unless deepinit wrote them, or `force`).
    pub fn check(dir: &Path, names: &[&str], force: bool) -> Result<OutputDir> {
        let out = OutputDir {
            dir: dir.to_path_buf(),
            force,
        };
        let is_dir = std::fs::metadata(dir).is_ok_and(|m| m.is_dir());
        match existing(dir)? {
            // A directory, or a symlink to one: its files follow the manifest rule.
            Existing::Directory | Existing::Symlink if is_dir => {
                let owned = out.manifest();
                for name in names {
                    let p = dir.join(name);
                    let ours = owned.get(*name).is_some_and(|s| stamp(&p) == Some(*s));
                    check_replaceable(&p, force || ours)?;
                }
                check_dir_writable(dir, dir)?;
            }
            Existing::Nothing => {
                // Created later: its parent must exist and accept it.
                check_dir_writable(parent_of(dir), dir)?;
            }
            _ => return Err(Error::path(dir, "exists and is not a directory")),
        }
        Ok(out)
    }

    fn manifest(&self) -> BTreeMap<String, Stamp> {
        crate::io::read::read_bytes(&self.dir.join(MANIFEST), 16 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the files (name, bytes), creating the directory if needed;
    /// returns their paths. Each file is atomic; the manifest is updated.
    pub(crate) fn write(&self, files: &[(&str, Vec<u8>)]) -> Result<Vec<PathBuf>> {
        let created = !self.dir.exists();
        if created {
            std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        }
        let result = self.write_files(files);
        if result.is_err() && created {
            // Leave no empty directory behind (fails harmlessly if not empty).
            let _ = std::fs::remove_dir(&self.dir);
        }
        result
    }

    fn write_files(&self, files: &[(&str, Vec<u8>)]) -> Result<Vec<PathBuf>> {
        let mut owned = self.manifest();
        let mut paths = Vec::with_capacity(files.len());
        let save = |owned: &BTreeMap<String, Stamp>| -> Result<()> {
            let text = serde_json::to_vec_pretty(owned)
                .map_err(|e| Error::internal("manifest", e.to_string()))?;
            write_atomic(&self.dir.join(MANIFEST), &text)
        };
        for (name, bytes) in files {
            let p = self.dir.join(name);
            let ours = owned.get(*name).is_some_and(|s| stamp(&p) == Some(*s));
            let written = Destination::check(&p, self.force || ours).and_then(|d| d.write(bytes));
            if let Err(e) = written {
                // What was written so far stays ours: recorded in the manifest
                // (so a rerun replaces it), or removed if even that fails.
                if save(&owned).is_err() {
                    for q in &paths {
                        let _ = std::fs::remove_file(q);
                    }
                }
                return Err(e);
            }
            if let Some(s) = stamp(&p) {
                owned.insert((*name).to_string(), s);
            }
            paths.push(p);
        }
        save(&owned)?;
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn no_clobber_is_atomic_and_force_replaces_only_regular_files_and_links() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        let dest = Destination::check(&p, false).unwrap();
        // A file appears after the check: the commit must refuse it.
        std::fs::write(&p, b"theirs").unwrap();
        assert!(matches!(
            dest.write(b"ours"),
            Err(Error::WouldOverwrite { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
        assert_eq!(listing(d.path()), ["out.bin"], "no temporary left");
        assert!(Destination::check(&p, false).is_err());
        Destination::check(&p, true)
            .unwrap()
            .write(b"ours")
            .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ours");
        // A symlink is replaced itself; its target is untouched.
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("link");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&target, &link).unwrap();
            assert!(Destination::check(&link, false).is_err());
            Destination::check(&link, true)
                .unwrap()
                .write(b"new")
                .unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"keep");
            assert_eq!(existing(&link).unwrap(), Existing::File);
        }
        // Directories are refused.
        assert!(Destination::check(d.path(), true).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_set_of_files_is_replaced_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.bin"), d.path().join("b.bin"));
        let listing = || {
            let mut v: Vec<String> = std::fs::read_dir(d.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let finished = |bytes: [&[u8]; 2]| -> Vec<Finished> {
            [&a, &b]
                .iter()
                .zip(bytes)
                .map(|(p, data)| {
                    let mut t = Destination::check(p, true).unwrap().create().unwrap();
                    t.write_all(data).unwrap();
                    t.finish().unwrap()
                })
                .collect()
        };
        std::fs::write(&a, b"old a").unwrap();
        std::fs::write(&b, b"old b").unwrap();
        // b's name becomes a directory after the run checked it: nothing
        // is replaced, a keeps its old bytes, nothing temporary is left.
        let f = finished([b"new a", b"new b"]);
        std::fs::remove_file(&b).unwrap();
        std::fs::create_dir(&b).unwrap();
        assert!(commit_all(f).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(listing(), ["a.bin", "b.bin"]);
        // The placement itself fails after the old files were moved aside
        // (a third file's temporary vanished): a and b get their old bytes
        // back and no backup is left.
        std::fs::remove_dir(&b).unwrap();
        std::fs::write(&b, b"old b").unwrap();
        let c = d.path().join("c.bin");
        let before: Vec<String> = listing();
        let mut t = Destination::check(&c, false).unwrap().create().unwrap();
        t.write_all(b"new c").unwrap();
        let c_done = t.finish().unwrap();
        // c's temporary is the one new file so far.
        let temp_of_c: Vec<String> = listing()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        assert_eq!(temp_of_c.len(), 1);
        std::fs::remove_file(d.path().join(&temp_of_c[0])).unwrap();
        let mut f = finished([b"new a", b"new b"]);
        f.push(c_done);
        assert!(commit_all(f).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
        assert_eq!(listing(), ["a.bin", "b.bin"]);
        // Both replaced, no backup left.
        commit_all(finished([b"new a", b"new b"])).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        assert_eq!(listing(), ["a.bin", "b.bin"]);
    }

    #[cfg(unix)]
    #[test]
    fn prepared_small_files_go_in_with_the_set_and_identical_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let (shard, index) = (d.path().join("s.bin"), d.path().join("index.json"));
        std::fs::write(&shard, b"old shard").unwrap();
        std::fs::write(&index, b"old index").unwrap();
        let shard_done = || {
            let mut t = Destination::check(&shard, true).unwrap().create().unwrap();
            t.write_all(b"new shard").unwrap();
            t.finish().unwrap()
        };
        // The index's name becomes a directory before the commit: the new
        // shard does not go in either.
        let idx = Destination::check(&index, true).unwrap();
        let prepared = idx.prepare(b"new index").unwrap().expect("differs");
        std::fs::remove_file(&index).unwrap();
        std::fs::create_dir(&index).unwrap();
        assert!(commit_all(vec![shard_done(), prepared]).is_err());
        assert_eq!(std::fs::read(&shard).unwrap(), b"old shard");
        assert_eq!(listing(d.path()), ["index.json", "s.bin"]);
        // Without the obstacle both go in together.
        std::fs::remove_dir(&index).unwrap();
        std::fs::write(&index, b"old index").unwrap();
        let prepared = idx.prepare(b"new index").unwrap().expect("differs");
        commit_all(vec![shard_done(), prepared]).unwrap();
        assert_eq!(std::fs::read(&index).unwrap(), b"new index");
        assert_eq!(std::fs::read(&shard).unwrap(), b"new shard");
        // Identical bytes already there: nothing to prepare.
        assert!(idx.prepare(b"new index").unwrap().is_none());
        // Another rank places the same index between prepare and commit,
        // without --force: this rank's set still goes in.
        std::fs::remove_file(&index).unwrap();
        let no_force = Destination::check(&index, false).unwrap();
        let prepared = no_force.prepare(b"same").unwrap().expect("absent");
        std::fs::write(&index, b"same").unwrap();
        commit_all(vec![prepared]).unwrap();
        // A different file there instead is refused.
        std::fs::remove_file(&index).unwrap();
        let prepared = no_force.prepare(b"ours").unwrap().expect("absent");
        std::fs::write(&index, b"theirs").unwrap();
        assert!(matches!(
            commit_all(vec![prepared]),
            Err(Error::WouldOverwrite { .. })
        ));
        assert_eq!(std::fs::read(&index).unwrap(), b"theirs");
        assert_eq!(listing(d.path()), ["index.json", "s.bin"]);
    }

    #[test]
    fn a_failed_output_dir_write_keeps_what_it_wrote_as_its_own() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        // The second file cannot be written: its name became a directory
        // after the run checked it.
        let o = OutputDir::check(&dir, &["a.json", "b.svg"], false).unwrap();
        std::fs::create_dir(dir.join("b.svg")).unwrap();
        assert!(o
            .write(&[("a.json", b"1".to_vec()), ("b.svg", b"2".to_vec())])
            .is_err());
        assert!(
            o.manifest().contains_key("a.json"),
            "a.json is recorded as ours"
        );
        // With the obstacle gone, the rerun replaces its own file without --force.
        std::fs::remove_dir(dir.join("b.svg")).unwrap();
        let o = OutputDir::check(&dir, &["a.json", "b.svg"], false).unwrap();
        o.write(&[("a.json", b"3".to_vec()), ("b.svg", b"4".to_vec())])
            .unwrap();
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), b"3");
    }

    #[test]
    fn special_files_are_never_replaced_even_with_force() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let e = Destination::check(&fifo, true).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        assert_eq!(existing(&fifo).unwrap(), Existing::Special("a FIFO"));
    }

    #[test]
    fn temporaries_are_short_and_stale_ones_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // A 250-character name is legal; the temporary's name does not grow with it.
        let long = "x".repeat(246) + ".npy";
        Destination::check(&d.path().join(&long), false)
            .unwrap()
            .write(b"1")
            .unwrap();
        // A temporary of a dead process (a PID beyond Linux's pid_max) is
        // swept the next time deepinit writes there; other files stay.
        let stale = d
            .path()
            .join(format!("{TEMP_PREFIX}4194999-0{TEMP_SUFFIX}"));
        std::fs::write(&stale, b"junk").unwrap();
        std::fs::write(d.path().join("keep.tmp"), b"not ours").unwrap();
        lock(&SWEPT).clear();
        Destination::check(&d.path().join("b"), false).unwrap();
        assert_eq!(listing(d.path()), ["keep.tmp".to_string(), long]);
        assert_eq!(temp_pid(".deepinit-12-3.tmp"), Some(12));
        assert_eq!(temp_pid(".deepinit-12.tmp"), None);
    }

    #[test]
    fn output_dirs_replace_their_own_files_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("results");
        let out = OutputDir::check(&dir, &["a.json"], false).unwrap();
        assert!(!dir.exists(), "created only when written");
        out.write(&[("a.json", b"1".to_vec())]).unwrap();
        // A rerun replaces deepinit's own file.
        let again = OutputDir::check(&dir, &["a.json"], false).unwrap();
        again.write(&[("a.json", b"2".to_vec())]).unwrap();
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), b"2");
        // Once a user edits it, it is theirs.
        std::fs::write(dir.join("a.json"), b"edited by hand").unwrap();
        assert!(matches!(
            OutputDir::check(&dir, &["a.json"], false),
            Err(Error::WouldOverwrite { .. })
        ));
        OutputDir::check(&dir, &["a.json"], true).unwrap();
        // A missing parent is refused up front, naming the directory.
        let e = OutputDir::check(&d.path().join("no/such"), &["a"], false).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
