//! Reading input files: regular files only, bounded in size, so a FIFO, a
//! device or a runaway file is refused with a message instead of hanging or
//! exhausting memory. Every file deepinit reads whole (specs, configs,
//! indexes, the tuning cache, manifests, files compared before replacing)
//! goes through here; `.npy` inputs and safetensors shards, read in parts,
//! check the same way with `check_regular` before opening.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Errors unless `path` is a regular file (following symlinks), checked
/// before it is opened, so a FIFO never blocks the open; returns its size.
pub(crate) fn check_regular(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::path(
            path,
            if meta.is_dir() {
                "is a directory, not a file"
            } else {
                "is not a regular file (a FIFO, socket or device)"
            },
        ));
    }
    Ok(meta.len())
}

/// The contents of the regular file `path`, refusing anything that is not a
/// regular file or that holds more than `limit` bytes (the limit is in the
/// message).
pub(crate) fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = check_regular(path)?;
    let too_big = || {
        Error::path(
            path,
            format!("holds more than the {limit} bytes this input may have"),
        )
    };
    if len > limit {
        return Err(too_big());
    }
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may have grown since the check: never read past the limit.
    f.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_bytes`] as UTF-8 text.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_bytes(path, limit)?)
        .map_err(|e| Error::path(path, format!("is not UTF-8 text: {e}")))
}

/// Whether `path` is a regular file holding exactly `bytes` (false for
/// anything else, without ever blocking on a special file).
pub(crate) fn same_contents(path: &Path, bytes: &[u8]) -> bool {
    read_bytes(path, bytes.len() as u64).is_ok_and(|b| b == bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_everything_else_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        std::fs::write(&f, "{}").unwrap();
        assert_eq!(read_text(&f, 10).unwrap(), "{}");
        assert!(read_text(&f, 1)
            .unwrap_err()
            .to_string()
            .contains("more than"));
        assert!(read_text(dir.path(), 10)
            .unwrap_err()
            .to_string()
            .contains("directory"));
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .unwrap();
            // Returns at once (no writer would ever come).
            assert!(read_text(&fifo, 10)
                .unwrap_err()
                .to_string()
                .contains("not a regular file"));
            assert!(!same_contents(&fifo, b""));
        }
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text(&f, 10).unwrap_err().to_string().contains("UTF-8"));
    }
}
