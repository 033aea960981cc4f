//! A streaming, atomic `.npy` writer for little-endian f32 tensors (NumPy
//! format version 1.0, C order).
//!
//! The data goes to a hidden temporary file next to the destination, which is
//! renamed into place only once every byte is written and synced, under the
//! rules of [`crate::io::output`]. If anything fails, or the writer is dropped
//! unfinished, the temporary file is removed: there is never a half-written
//! output file.

use crate::error::{Error, Result};
use crate::io::output::{Destination, TempFile};
use std::path::{Path, PathBuf};

/// The `.npy` header (magic, version, length, dict, padding) for an f32 array.
pub(crate) fn header(shape: &[u64]) -> Vec<u8> {
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

/// Writes one f32 tensor to a `.npy` file, chunk by chunk, through an atomic
/// temporary file ([`crate::io::output`]).
pub struct NpyWriter {
    file: Option<TempFile>,
    remaining: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl NpyWriter {
    /// Checks the free space for `shape` and opens the temporary file with the
    /// header written (the destination was validated by [`Destination::check`]).
    pub fn create(dest: &Destination, shape: &[u64]) -> Result<NpyWriter> {
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid("shape", "more than 2^64 elements"))?;
        let bytes = numel
            .checked_mul(4)
            .and_then(|b| b.checked_add(header(shape).len() as u64))
            .ok_or_else(|| Error::invalid("shape", "the file would exceed 2^64 bytes"))?;
        let dir = dest
            .path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(free) = crate::io::output::free_space(dir) {
            if bytes > free {
                return Err(Error::LimitExceeded {
                    what: format!("output file {} (bytes)", dest.path().display()),
                    got: bytes,
                    max: free,
                    hint: " free on that file system".into(),
                });
            }
        }
        let mut w = NpyWriter {
            file: Some(dest.create()?),
            remaining: numel,
        };
        let h = header(shape);
        w.write_bytes(&h)?;
        Ok(w)
    }

    fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(b),
            None => Err(Error::internal("npy writer", "already finished")),
        }
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let n = values.len() as u64;
        if n > self.remaining {
            return Err(Error::internal(
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

    /// Flushes, syncs and renames the file into place (refusing to replace
    /// an existing file unless the destination allowed it).
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.remaining != 0 {
            return Err(Error::internal(
                "npy writer",
                format!("{} values missing", self.remaining),
            ));
        }
        let Some(f) = self.file.take() else {
            return Err(Error::internal("npy writer", "already finished"));
        };
        let path = f.path().to_path_buf();
        f.commit()?;
        Ok(path)
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
            let d = Destination::check(&dest, false).unwrap();
            let mut w = NpyWriter::create(&d, &[2, 2]).unwrap();
            w.write(&[1.0, 2.0]).unwrap();
            // dropped before finish
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let d = Destination::check(&dest, false).unwrap();
        let mut w = NpyWriter::create(&d, &[2, 2]).unwrap();
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
            Destination::check(&dest, false),
            Err(Error::WouldOverwrite { .. })
        ));
        assert!(NpyWriter::create(&Destination::check(&dest, true).unwrap(), &[1]).is_ok());
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

/// Largest `.npy` header accepted (NumPy writes a few hundred bytes).
pub(crate) const MAX_HEADER: usize = 1 << 16;

/// A C-order 2-D array's descr, shape and data bytes (NumPy format 1.0, 2.0
/// or 3.0), its element type accepted by `width_of`. Refuses anything but a
/// regular file, checks the header and the file's size against the declared
/// shape (and host memory) before reading, and reads only the bytes the
/// shape needs.
fn read_array(
    path: &Path,
    width_of: fn(&str) -> std::result::Result<u64, String>,
) -> Result<(String, u64, u64, Vec<u8>)> {
    use std::io::Read;
    let bad = |m: &str| Error::path(path, m);
    // Checked before opening: opening a FIFO would block, a device never ends.
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(bad(
            "not a regular file (deepinit reads inputs only from regular files)",
        ));
    }
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut head = [0u8; 12];
    let got = read_up_to(&mut file, &mut head).map_err(io(path))?;
    if got < 10 || &head[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        2 | 3 if got >= 12 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    if len > MAX_HEADER {
        return Err(bad(&format!(
            "header of {len} bytes (at most {MAX_HEADER})"
        )));
    }
    let initial = &head[start.min(got)..got];
    // Bytes of data already read with the header (only for absurdly short headers).
    let extra = initial.get(len..).unwrap_or(&[]).to_vec();
    let mut header_bytes = initial[..initial.len().min(len)].to_vec();
    let have = header_bytes.len();
    header_bytes.resize(len, 0);
    if have < len {
        file.read_exact(&mut header_bytes[have..])
            .map_err(|_| bad("truncated header"))?;
    }
    let data_start = (start + len) as u64;
    let header =
        std::str::from_utf8(&header_bytes[..len]).map_err(|_| bad("header is not text"))?;
    let (descr, rows, cols) = parse_header_any(header).map_err(|m| bad(&m))?;
    let width = width_of(&descr).map_err(|m| bad(&m))?;
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| bad("shape overflows"))?;
    let need = n.checked_mul(width).ok_or_else(|| bad("shape overflows"))?;
    let present = size.saturating_sub(data_start);
    if present != need {
        return Err(bad(&format!(
            "{present} data bytes, but the shape ({rows}, {cols}) needs {need}"
        )));
    }
    if let Some(mem) = crate::io::host::host_memory_bytes() {
        if n.saturating_mul(4 + width) > mem {
            return Err(bad(&format!(
                "{n} values do not fit in host memory ({mem} bytes)"
            )));
        }
    }
    let mut data = crate::io::host::host_vec::<u8>(need)?;
    let pre = extra.len().min(data.len());
    data[..pre].copy_from_slice(&extra[..pre]);
    file.read_exact(&mut data[pre..])
        .map_err(|_| bad("the file ended before the data the shape needs"))?;
    Ok((descr, rows, cols, data))
}

/// Reads a C-order `<f4` or `<f8` array of shape `(rows, cols)`, e.g. a batch
/// of network inputs (see `read_array` for what is checked).
pub fn read_2d(path: &Path) -> Result<Array2> {
    let bad = |m: &str| Error::path(path, m);
    let (descr, rows, cols, data) = read_array(path, float_width)?;
    let width = float_width(&descr).map_err(|m| bad(&m))?;
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

/// Reads a C-order integer array of shape `(rows, cols)` (`<i2`, `<u2`,
/// `<i4`, `<u4`, `<i8`, `<u8`), e.g. token ids: `(rows, cols, values)`.
pub(crate) fn read_2d_ints(path: &Path) -> Result<(u64, u64, Vec<i128>)> {
    let (descr, rows, cols, data) = read_array(path, int_width)?;
    let w = int_width(&descr).map_err(|m| Error::path(path, &m))? as usize;
    let signed = descr.starts_with("<i");
    let values = data
        .chunks_exact(w)
        .map(|c| {
            let mut b = [0u8; 16];
            b[..w].copy_from_slice(c);
            if signed && c[w - 1] & 0x80 != 0 {
                b[w..].fill(0xff);
            }
            i128::from_le_bytes(b)
        })
        .collect();
    Ok((rows, cols, values))
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn header_dicts_are_parsed_as_strictly_as_numpy_does() {
        // As numpy writes them (with and without the trailing comma, either quote).
        for h in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (12, 8), }",
            "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,5)}",
        ] {
            assert!(parse_header(h).is_ok(), "{h}");
        }
        for (h, why) in [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), 'descr': '<f8', }",
                "'descr' twice",
            ),
            (
                "{'descr': '<f4' 'fortran_order': False, 'shape': (4, 4), }",
                "malformed header dictionary",
            ),
            ("{'descr': '<f4', 'shape': (4, 4), }", "the header's keys"),
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 4), }",
                "C-order",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, x), }",
                "not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), } junk",
                "after the closing brace",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4,,4), }",
                "not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }",
                "not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                "2-D",
            ),
        ] {
            let e = parse_header(h).unwrap_err();
            assert!(e.contains(why), "{h}: {e}");
        }
    }

    #[test]
    fn reads_what_the_writer_wrote_and_rejects_other_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let mut w = NpyWriter::create(&Destination::check(&p, false).unwrap(), &[2, 3]).unwrap();
        w.write(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        w.finish().unwrap();
        let a = read_2d(&p).unwrap();
        assert_eq!(
            (a.rows, a.cols, a.data),
            (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
        );
        let q = dir.path().join("v.npy");
        let mut w = NpyWriter::create(&Destination::check(&q, false).unwrap(), &[4]).unwrap();
        w.write(&[1.0; 4]).unwrap();
        w.finish().unwrap();
        assert!(read_2d(&q).unwrap_err().to_string().contains("2-D"));
        std::fs::write(&q, b"not numpy").unwrap();
        assert!(read_2d(&q).is_err());
    }
}

/// A value of a `.npy` header dict.
#[derive(Debug, PartialEq)]
enum HeaderValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// Parses the header's Python dict literal strictly, as numpy's
/// `safe_eval` reads it: `{'key': value, ...}` with string, True/False or
/// tuple-of-integers values, an optional trailing comma, each key once.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, HeaderValue)>, String> {
    let bad = |what: &str| format!("malformed header dictionary ({what})");
    let mut rest = text.trim();
    rest = rest
        .strip_prefix('{')
        .ok_or_else(|| bad("no opening brace"))?;
    let string = |r: &str| -> Option<(String, usize)> {
        let q = r.chars().next().filter(|&c| c == '\'' || c == '"')?;
        let end = r[1..].find(q)?;
        Some((r[1..1 + end].to_string(), end + 2))
    };
    let mut out: Vec<(String, HeaderValue)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            if !r.trim().is_empty() {
                return Err(bad("text after the closing brace"));
            }
            return Ok(out);
        }
        let (key, n) = string(rest).ok_or_else(|| bad("a key is not a quoted string"))?;
        rest = rest[n..].trim_start();
        rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("no ':' after a key"))?
            .trim_start();
        let value = if let Some((v, n)) = string(rest) {
            rest = &rest[n..];
            HeaderValue::Str(v)
        } else if let Some(r) = rest.strip_prefix("True") {
            rest = r;
            HeaderValue::Bool(true)
        } else if let Some(r) = rest.strip_prefix("False") {
            rest = r;
            HeaderValue::Bool(false)
        } else if let Some(r) = rest.strip_prefix('(') {
            let end = r.find(')').ok_or_else(|| bad("unclosed tuple"))?;
            // Python's tuple syntax: "()", "(3,)", "(3, 4)", "(3, 4,)"; an
            // empty entry anywhere else ("(,)", "(4,,4)") is malformed.
            let inner = r[..end].trim();
            let inner = inner
                .strip_suffix(',')
                .filter(|_| inner.len() > 1)
                .unwrap_or(inner);
            let dims = if inner.is_empty() {
                Vec::new()
            } else {
                inner
                    .split(',')
                    .map(|d| {
                        d.trim()
                            .parse::<u64>()
                            .map_err(|_| bad("a shape entry is not an integer"))
                    })
                    .collect::<std::result::Result<Vec<u64>, String>>()?
            };
            rest = &r[end + 1..];
            HeaderValue::Tuple(dims)
        } else {
            return Err(bad(&format!("unsupported value for '{key}'")));
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("the header names '{key}' twice"));
        }
        out.push((key, value));
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(bad("entries not separated by commas"));
        }
    }
}

/// The element width (4 or 8 bytes) and the (rows, cols) of a 2-D C-order
/// float array's header dict, or why it is not one.
#[cfg(test)]
fn parse_header(header: &str) -> std::result::Result<(u64, u64, u64), String> {
    let (descr, rows, cols) = parse_header_any(header)?;
    Ok((float_width(&descr)?, rows, cols))
}

/// The byte width of a float `descr`, or why it is not one.
fn float_width(descr: &str) -> std::result::Result<u64, String> {
    match descr {
        "<f4" => Ok(4),
        "<f8" => Ok(8),
        _ => {
            Err("only little-endian float32 ('<f4') or float64 ('<f8') arrays are supported".into())
        }
    }
}

/// The byte width of an integer `descr`, or why it is not one.
fn int_width(descr: &str) -> std::result::Result<u64, String> {
    match descr {
        "<i2" | "<u2" => Ok(2),
        "<i4" | "<u4" => Ok(4),
        "<i8" | "<u8" => Ok(8),
        _ => Err("only little-endian integer arrays ('<i2', '<u2', '<i4', '<u4', '<i8', '<u8') are supported".into()),
    }
}

/// The (descr, rows, cols) of a 2-D C-order array's header dict.
fn parse_header_any(header: &str) -> std::result::Result<(String, u64, u64), String> {
    let dict = parse_dict(header)?;
    let mut keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(format!(
            "the header's keys are {keys:?}, not descr, fortran_order and shape"
        ));
    }
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(HeaderValue::Str(d)) => d.clone(),
        _ => return Err("descr is not a string".into()),
    };
    match get("fortran_order") {
        Some(HeaderValue::Bool(false)) => {}
        Some(HeaderValue::Bool(true)) => return Err("only C-order arrays are supported".into()),
        _ => return Err("fortran_order is not True or False".into()),
    }
    let Some(HeaderValue::Tuple(dims)) = get("shape") else {
        return Err("shape is not a tuple of integers".into());
    };
    let [rows, cols] = dims[..] else {
        return Err(format!(
            "expected a 2-D array (batch, width), got {} dimensions",
            dims.len()
        ));
    };
    Ok((descr, rows, cols))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
