//! Reading small input files (configs, specs, indexes): regular files only,
//! bounded in size, so a FIFO, a device or a runaway file is refused with a
//! message instead of hanging or exhausting memory.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The contents of the regular file `path` as UTF-8, refusing anything that
/// is not a regular file (checked before opening, so a FIFO never blocks the
/// open) or that holds more than `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
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
    if meta.len() > limit {
        return Err(Error::path(
            path,
            format!(
                "is {} bytes, more than the {limit} this input may have",
                meta.len()
            ),
        ));
    }
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may have grown since the check: never read past the limit.
    f.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(Error::path(
            path,
            format!("holds more than the {limit} bytes this input may have"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| Error::path(path, format!("is not UTF-8 text: {e}")))
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
        }
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text(&f, 10).unwrap_err().to_string().contains("UTF-8"));
    }
}
