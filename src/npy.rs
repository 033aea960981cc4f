//! A streaming, atomic `.npy` writer for little-endian f32 tensors (NumPy
//! format version 1.0, C order).
//!
//! The data goes to a hidden temporary file next to the destination, which is
//! renamed over the destination only once every byte is written and synced.
//! If anything fails, or the writer is dropped unfinished, the temporary file
//! is removed: there is never a half-written output file.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The `.npy` header (magic, version, length, dict, padding) for an f32 array.
pub fn header(shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut h = Vec::with_capacity(10 + dict.len());
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// Bytes available to this user on the file system holding `dir`, where the
/// platform tells us.
fn free_space(dir: &Path) -> Option<u64> {
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

/// Writes one f32 tensor to a `.npy` file, chunk by chunk.
pub struct NpyWriter {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    remaining: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl NpyWriter {
    /// Checks the destination (refusing an existing file unless `force`) and
    /// opens the temporary file with the header written.
    pub fn create(dest: &Path, shape: &[u64], force: bool) -> Result<NpyWriter> {
        if dest.is_dir() {
            return Err(Error::invalid(
                "output path",
                format!("{} is a directory", dest.display()),
            ));
        }
        if dest.exists() && !force {
            return Err(Error::WouldOverwrite {
                path: dest.to_path_buf(),
            });
        }
        let name = dest.file_name().ok_or_else(|| {
            Error::invalid(
                "output path",
                format!("'{}' has no file name", dest.display()),
            )
        })?;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Error::invalid(
                "output path",
                format!("directory {} does not exist", dir.display()),
            ));
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid("shape", "more than 2^64 elements"))?;
        let bytes = numel
            .checked_mul(4)
            .and_then(|b| b.checked_add(header(shape).len() as u64))
            .ok_or_else(|| Error::invalid("shape", "the file would exceed 2^64 bytes"))?;
        if let Some(free) = free_space(dir) {
            if bytes > free {
                return Err(Error::LimitExceeded {
                    what: format!("output file {} (bytes)", dest.display()),
                    got: bytes,
                    max: free,
                    hint: " free on that file system".into(),
                });
            }
        }
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut w = NpyWriter {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            remaining: numel,
        };
        let h = header(shape);
        w.write_bytes(&h)?;
        Ok(w)
    }

    fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        let tmp = self.tmp.clone();
        match self.file.as_mut() {
            Some(f) => f.write_all(b).map_err(io(&tmp)),
            None => Err(Error::invalid("npy writer", "already finished")),
        }
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let n = values.len() as u64;
        if n > self.remaining {
            return Err(Error::invalid(
                "npy writer",
                "more values than the shape holds",
            ));
        }
        if cfg!(target_endian = "little") {
            self.write_bytes(bytemuck::cast_slice(values))?;
        } else {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.write_bytes(&bytes)?;
        }
        self.remaining -= n;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.remaining != 0 {
            return Err(Error::invalid(
                "npy writer",
                format!("{} values missing", self.remaining),
            ));
        }
        let tmp = self.tmp.clone();
        let Some(buf) = self.file.take() else {
            return Err(Error::invalid("npy writer", "already finished"));
        };
        let file = buf.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.dest).map_err(io(&self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Unfinished: remove the partial temporary file; nothing else to do on failure.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parsable() {
        for shape in [&[3u64][..], &[4096, 4096], &[64, 3, 7, 7]] {
            let h = header(shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
            assert_eq!(*h.last().unwrap(), b'\n');
        }
        let h = header(&[3]);
        assert!(String::from_utf8_lossy(&h).contains("'shape': (3,)"));
    }

    #[test]
    fn unfinished_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.npy");
        {
            let mut w = NpyWriter::create(&dest, &[2, 2], false).unwrap();
            w.write(&[1.0, 2.0]).unwrap();
            // dropped before finish
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut w = NpyWriter::create(&dest, &[2, 2], false).unwrap();
        w.write(&[1.0, 2.0, 3.0]).unwrap();
        assert!(w.write(&[4.0, 5.0]).is_err());
        w.write(&[4.0]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        let h = header(&[2, 2]).len();
        assert_eq!(bytes.len(), h + 16);
        assert_eq!(&bytes[h..h + 4], &1f32.to_le_bytes());
        assert_eq!(&bytes[h + 12..], &4f32.to_le_bytes());
        assert!(matches!(
            NpyWriter::create(&dest, &[1], false),
            Err(Error::WouldOverwrite { .. })
        ));
        assert!(NpyWriter::create(&dest, &[1], true).is_ok());
    }
}

/// A 2-D float array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    /// Rows.
    pub rows: u64,
    /// Columns.
    pub cols: u64,
    /// Values, row-major, converted to f32.
    pub data: Vec<f32>,
}

/// Reads a C-order `<f4` or `<f8` array of shape `(rows, cols)` (NumPy format
/// 1.0 or 2.0), e.g. a batch of network inputs.
pub fn read_2d(path: &Path) -> Result<Array2> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |m: &str| Error::invalid("input file", format!("{}: {m}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = header[i + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(bad(
            "only little-endian float32 ('<f4') or float64 ('<f8') arrays are supported",
        ));
    };
    if !field("fortran_order").is_some_and(|f| f.starts_with("False")) {
        return Err(bad("only C-order arrays are supported"));
    }
    let shape_txt = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|t| t.split(')').next())
        .ok_or_else(|| bad("malformed shape"))?;
    let dims: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| bad("malformed shape")))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!(
            "expected a 2-D array (batch, width), got {} dimensions",
            dims.len()
        )));
    };
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| bad("shape overflows"))? as usize;
    let data = &bytes[start + len..];
    if data.len() != n * width {
        return Err(bad(&format!(
            "{} data bytes, but the shape needs {}",
            data.len(),
            n * width
        )));
    }
    let values: Vec<f32> = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad("contains NaN or infinite values"));
    }
    Ok(Array2 {
        rows,
        cols,
        data: values,
    })
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn reads_what_the_writer_wrote_and_rejects_other_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let mut w = NpyWriter::create(&p, &[2, 3], false).unwrap();
        w.write(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        w.finish().unwrap();
        let a = read_2d(&p).unwrap();
        assert_eq!(
            (a.rows, a.cols, a.data),
            (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
        );
        let q = dir.path().join("v.npy");
        let mut w = NpyWriter::create(&q, &[4], false).unwrap();
        w.write(&[1.0; 4]).unwrap();
        w.finish().unwrap();
        assert!(read_2d(&q).unwrap_err().to_string().contains("2-D"));
        std::fs::write(&q, b"not numpy").unwrap();
        assert!(read_2d(&q).is_err());
    }
}
