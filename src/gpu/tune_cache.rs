//! The GEMM tuner's persistent cache: one JSON file, `tune.json`, in the
//! user's cache directory (`$DEEPINIT_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/deepinit`, else `~/.cache/deepinit`; on Windows
//! `%LOCALAPPDATA%\deepinit`). `DEEPINIT_CACHE_DIR=` (set but empty) turns
//! persistence off.
//!
//! Each entry is one measurement: the device identity (adapter name,
//! backend, vendor and device ids, driver and its version, deepinit's version
//! and the GEMM kernel revision), what was tuned (a [`TuneKey`]: a GEMM shape
//! class, or a generation kernel with or without native int64), the winning
//! variant, its rate and the rate's [`Unit`], and every candidate's rate.
//! Files of an older format are ignored with a notice and replaced. It holds at most `MAX_ENTRIES` entries, the newest kept. A file
//! that does not parse is ignored (and replaced on the next save); entries
//! naming an unknown variant or another device or version simply never match.
//! Saves re-read the file, merge, and replace it atomically (a temporary file
//! renamed over it), so concurrent runs lose at most each other's newest entry.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most entries kept; the oldest go first.
pub(crate) const MAX_ENTRIES: usize = 512;

/// The `format` field of the file (version 1 keyed entries by a formatted
/// string, version 2 named candidates by strings and called their rates
/// `gflops`; their files are ignored with a notice).
pub(crate) const FORMAT: &str = "deepinit-tune-3";

/// What one entry tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TuneKey {
    /// A GEMM shape class: the variant for its products.
    Gemm(crate::gpu::tune::ShapeClass),
    /// A generation kernel: its store and workgroup size (and multiply),
    /// tuned apart with and without native 64-bit integers.
    Generate {
        /// The kernel.
        kernel: crate::rng::request::Kernel,
        /// Whether the device's native int64 was enabled.
        int64: bool,
    },
}

impl std::fmt::Display for TuneKey {
    /// `nt m128 n2048 k2048`, or `generate normal` (`(no int64)` appended
    /// when native int64 was off).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TuneKey::Gemm(c) => f.write_str(&c.label()),
            TuneKey::Generate { kernel, int64 } => write!(
                f,
                "generate {}{}",
                crate::gpu::gen_tune::kernel_name(*kernel),
                if *int64 { "" } else { " (no int64)" }
            ),
        }
    }
}

/// A generation kernel's settings: how it stores, at which workgroup size,
/// with which Philox multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenSetting {
    /// One word at a time, or one vec4 per Philox block.
    pub store: crate::gpu::shaders::Store,
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// Native 64-bit integers or 16-bit halves.
    pub mulhi: crate::gpu::shaders::MulHi,
}

impl std::fmt::Display for GenSetting {
    /// `<store>-wg<size>-<multiply>`, e.g. `vec4-wg128-int64`: how the
    /// candidate lists name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::gpu::gen_tune::candidate_name(
            self.store,
            self.workgroup_size,
            self.mulhi,
        ))
    }
}

/// What an entry chose: a GEMM variant (its name in the file), or a
/// generation kernel's settings (an object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Variant {
    /// For a [`TuneKey::Gemm`] entry.
    Gemm(crate::gpu::gemm::GemmVariant),
    /// For a [`TuneKey::Generate`] entry.
    Generate(GenSetting),
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::Gemm(v) => f.write_str(v.name()),
            Variant::Generate(g) => g.fmt(f),
        }
    }
}

/// The unit of an entry's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Billions of floating-point operations per second (GEMM).
    #[serde(rename = "GFLOP/s")]
    GflopPerS,
    /// Billions of generated values per second (generation).
    #[serde(rename = "Gsamples/s")]
    GsamplesPerS,
}

/// One candidate's measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    /// The candidate.
    pub variant: Variant,
    /// Its rate at the median time, in the entry's [`Unit`], or `None` if it
    /// was rejected.
    pub rate: Option<f64>,
    /// Why it was rejected (a wrong result, a failed build), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// One tuned shape class on one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// `device_key`: the adapter's identity, deepinit's
    /// version and the GEMM kernel revision.
    pub device: String,
    /// What was tuned.
    pub key: TuneKey,
    /// The problem actually timed, `[m, n, k]` (`[elements, 0, 0]` for
    /// generation).
    pub timed: [u32; 3],
    /// The fastest verified variant (a candidate this build does not know
    /// makes the entry unreadable: it is skipped).
    pub variant: Variant,
    /// Its rate, in `unit`.
    pub rate: f64,
    /// The unit of `rate` and of the candidates' rates.
    pub unit: Unit,
    /// Every candidate.
    pub candidates: Vec<Measured>,
    /// When it was measured, seconds since the Unix epoch.
    pub unix_time: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct File<E> {
    format: String,
    entries: Vec<E>,
}

/// Where the cache lives, or `None` if nowhere (persistence off, or no home).
pub(crate) fn default_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("DEEPINIT_CACHE_DIR") {
        return (!v.is_empty()).then(|| PathBuf::from(v));
    }
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if cfg!(windows) {
        return non_empty("LOCALAPPDATA").map(|d| PathBuf::from(d).join("deepinit"));
    }
    if let Some(x) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("deepinit"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("deepinit"))
}

/// The most bytes a cache file may have (its [`MAX_ENTRIES`] entries take
/// far less).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The cache file in `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join("tune.json")
}

/// Reads the entries of `path`. A missing file is empty; an unreadable or
/// unparsable one is empty with a note saying why.
pub fn load(path: &Path) -> (Vec<Entry>, Option<String>) {
    if !path.exists() && std::fs::symlink_metadata(path).is_err() {
        return (Vec::new(), None);
    }
    // Bounded and regular-only: a FIFO or a link to a device is ignored, not read.
    let text = match crate::io::read::read_text(path, MAX_FILE_BYTES) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), Some(format!("ignored the tuning cache: {e}"))),
    };
    match serde_json::from_str::<File<serde_json::Value>>(&text) {
        // Entries this build cannot read (a newer deepinit's) are skipped;
        // they never match anyway.
        Ok(f) if f.format == FORMAT => (
            f.entries
                .into_iter()
                .filter_map(|e| serde_json::from_value(e).ok())
                .collect(),
            None,
        ),
        Ok(f) => (
            Vec::new(),
            Some(format!(
                "ignored the tuning cache {}: format '{}', expected '{FORMAT}'",
                path.display(),
                f.format
            )),
        ),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "ignored the corrupt tuning cache {} ({e}); it will be rewritten",
                path.display()
            )),
        ),
    }
}

/// Merges `new` into the file at `path` (an entry replaces any of the same
/// device and shape), keeps the newest `MAX_ENTRIES`, and replaces the file
/// atomically. Creates the directory if needed.
pub fn save(path: &Path, new: &[Entry]) -> std::io::Result<()> {
    let (mut entries, _) = load(path);
    entries.retain(|e| !new.iter().any(|n| n.device == e.device && n.key == e.key));
    entries.extend(new.iter().cloned());
    entries.sort_by_key(|e| std::cmp::Reverse(e.unix_time));
    entries.truncate(MAX_ENTRIES);
    entries.sort_by(|a, b| (&a.device, &a.key).cmp(&(&b.device, &b.key)));
    let text = serde_json::to_string_pretty(&File {
        format: FORMAT.into(),
        entries,
    })
    .map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(device: &str, m: u32, t: u64) -> Entry {
        Entry {
            device: device.into(),
            key: TuneKey::Gemm(crate::gpu::tune::ShapeClass::of(
                crate::gpu::gemm::GemmForm::Nt,
                m,
                2,
                4,
            )),
            timed: [1, 2, 3],
            variant: Variant::Gemm(crate::gpu::gemm::GemmVariant::Tiled64),
            rate: 1.5,
            unit: Unit::GflopPerS,
            candidates: vec![Measured {
                variant: Variant::Gemm(crate::gpu::gemm::GemmVariant::Direct),
                rate: None,
                rejected: Some("wrong result".into()),
            }],
            unix_time: t,
        }
    }

    #[test]
    fn round_trips_merges_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(&dir.path().join("sub"));
        assert_eq!(load(&path), (Vec::new(), None), "missing file is empty");
        save(&path, &[entry("d", 1, 1)]).expect("save");
        assert_eq!(load(&path).0, vec![entry("d", 1, 1)]);
        // Same device and shape: replaced, not duplicated.
        save(&path, &[entry("d", 1, 2)]).expect("save");
        assert_eq!(load(&path).0, vec![entry("d", 1, 2)]);
        let many: Vec<Entry> = (0..MAX_ENTRIES as u64 + 10)
            .map(|i| entry(&format!("d{i}"), 1, 100 + i))
            .collect();
        save(&path, &many).expect("save");
        let kept = load(&path).0;
        assert_eq!(kept.len(), MAX_ENTRIES);
        // The oldest went first: the entry at time 2 and d0..d9's.
        assert!(kept.iter().all(|e| e.unix_time >= 110));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("tune.json")]);
    }

    #[test]
    #[cfg(unix)]
    fn special_or_huge_files_are_ignored_without_reading_them() {
        let d = tempfile::tempdir().unwrap();
        let p = file_in(d.path());
        // A FIFO would block a plain read forever.
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let (entries, note) = load(&p);
        assert!(entries.is_empty());
        assert!(note.unwrap().contains("not a regular file"));
        std::fs::remove_file(&p).unwrap();
        // Larger than any cache can be: refused by its size, unread.
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let (entries, note) = load(&p);
        assert!(entries.is_empty());
        assert!(note.unwrap().contains("more than the"));
    }

    #[test]
    fn keys_are_typed_in_the_file_and_unreadable_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(dir.path());
        let gen = Entry {
            key: TuneKey::Generate {
                kernel: crate::rng::request::Kernel::Dist(crate::rng::dist::Dist::Normal),
                int64: false,
            },
            unit: Unit::GsamplesPerS,
            ..entry("d", 1, 5)
        };
        save(&path, &[entry("d", 100, 1), gen.clone()]).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["format"], FORMAT);
        let keys: Vec<&serde_json::Value> = v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| &e["key"])
            .collect();
        assert!(keys.contains(
            &&serde_json::json!({"kind": "gemm", "form": "nt", "m": 128, "n": 2, "k": 4})
        ));
        assert!(keys.contains(
            &&serde_json::json!({"kind": "generate", "kernel": {"dist": "normal"}, "int64": false})
        ));
        assert_eq!(gen.key.to_string(), "generate normal (no int64)");
        assert_eq!(entry("d", 100, 1).key.to_string(), "nt m128 n2 k4");
        // An entry a later deepinit might write (an unknown kind) is skipped;
        // the others still load.
        let mut v = v;
        v["entries"]
            .as_array_mut()
            .expect("entries")
            .push(serde_json::json!({"device": "d", "key": {"kind": "fft"}}));
        std::fs::write(&path, v.to_string()).expect("write");
        let (entries, note) = load(&path);
        assert_eq!((entries.len(), note), (2, None));
        // Older formats' files are ignored with a notice naming both.
        for old in ["deepinit-gemm-tune-1", "deepinit-tune-2"] {
            let text = format!(r#"{{"format":"{old}","entries":[]}}"#);
            std::fs::write(&path, text).expect("write");
            let (entries, note) = load(&path);
            assert!(entries.is_empty());
            let note = note.expect("a notice");
            assert!(note.contains(old) && note.contains(FORMAT), "{note}");
        }
    }

    #[test]
    fn corrupt_or_foreign_files_are_ignored_then_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(dir.path());
        for bad in ["{not json", "[]", r#"{"format":"other","entries":[]}"#, ""] {
            std::fs::write(&path, bad).expect("write");
            let (entries, note) = load(&path);
            assert!(entries.is_empty(), "{bad:?}");
            assert!(note.is_some_and(|n| n.contains("ignored")), "{bad:?}");
            save(&path, &[entry("d", 1, 1)]).expect("save over a corrupt file");
            assert_eq!(load(&path), (vec![entry("d", 1, 1)], None));
        }
    }
}
