//! The safetensors container: an 8-byte little-endian header length, a JSON
//! header (`__metadata__` and, per tensor, dtype, shape and byte offsets),
//! then the data. deepinit writes the header itself, so that it is
//! byte-for-byte deterministic (metadata keys sorted, tensors in data order)
//! and the data can be streamed; every header it writes or reads is checked
//! by the `safetensors` crate's own parser.

use crate::error::{Error, Result};
use crate::io::dtype::DType;
pub use safetensors::Dtype;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// One tensor of a file: where its bytes are, relative to the data start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub name: String,
    /// Element type (any the format has; [`Float::of`] says whether
    /// deepinit can read it as numbers).
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// First byte.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
}

/// A file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `__metadata__` (string to string).
    pub metadata: BTreeMap<String, String>,
    /// Tensors, in data order.
    pub tensors: Vec<Entry>,
    /// Where the data starts in the file (8 + the header's length).
    pub data_start: u64,
}

/// The element types deepinit reads as `f32` values: the three it writes,
/// and `F64` (rounded to `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// `F32`, `BF16` or `F16`.
    Written(DType),
    /// `F64`.
    F64,
}

impl Float {
    /// The readable type `d` is, if it is one.
    pub fn of(d: Dtype) -> Option<Float> {
        match d {
            Dtype::F64 => Some(Float::F64),
            d => DType::from_safetensors(d).map(Float::Written),
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Float::Written(t) => t.size(),
            Float::F64 => 8,
        }
    }

    /// Appends the values of `bytes` (whole elements, little-endian) to `out`.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Float::Written(t) => {
                out.extend(bytes.chunks_exact(t.size() as usize).map(|c| t.decode(c)))
            }
            Float::F64 => out.extend(bytes.chunks_exact(8).map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                f64::from_le_bytes(w) as f32
            })),
        }
    }
}

impl Header {
    /// Bytes of data after the header.
    pub(crate) fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.end)
    }
}

/// The bytes that start a file: the length prefix and the header JSON,
/// padded with spaces to a multiple of 8. `tensors` must be in data order
/// with contiguous offsets from 0.
pub fn encode_header(metadata: &BTreeMap<String, String>, tensors: &[Entry]) -> Result<Vec<u8>> {
    let mut json = String::from("{");
    if !metadata.is_empty() {
        json.push_str("\"__metadata__\":");
        json.push_str(&to_json(metadata)?);
    }
    for t in tensors {
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            "{}:{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{},{}]}}",
            to_json(&t.name)?,
            to_json(&t.dtype)?,
            to_json(&t.shape)?,
            t.begin,
            t.end
        ));
    }
    json.push('}');
    let mut body = json.into_bytes();
    body.resize(body.len().next_multiple_of(8), b' ');
    // The reference parser must accept what we write, offsets and all.
    let parsed = parse_json(&body)?;
    if parsed.tensors != tensors {
        return Err(Error::internal(
            "safetensors header",
            "tensors did not round-trip",
        ));
    }
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal("safetensors header", e.to_string()))
}

/// Checks each entry of header JSON on its own, so an error names the
/// tensor: its dtype, shape, and offsets spanning exactly its bytes.
fn check_entries(text: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid("safetensors header", e.to_string()))?;
    let map = v
        .as_object()
        .ok_or_else(|| Error::invalid("safetensors header", "not a JSON object"))?;
    for (name, e) in map {
        if name == "__metadata__" {
            continue;
        }
        let bad = |problem: String| {
            Error::invalid("safetensors header", format!("tensor '{name}': {problem}"))
        };
        let dtype: Dtype = serde_json::from_value(e["dtype"].clone()).map_err(|_| {
            bad(format!(
                "dtype {} is not a safetensors element type",
                e["dtype"]
            ))
        })?;
        // Whole bytes per element; sub-byte types (F4, F6_*): the crate judges them.
        let bits = dtype.bitsize() as u64;
        let size = if bits.is_multiple_of(8) { bits / 8 } else { 0 };
        let shape: Vec<u64> = e["shape"]
            .as_array()
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
            .ok_or_else(|| bad(format!("shape {} is not a list of sizes", e["shape"])))?;
        let offsets: Vec<u64> = e["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| {
                bad(format!(
                    "data_offsets {} is not [begin, end]",
                    e["data_offsets"]
                ))
            })?;
        if offsets[1] < offsets[0] {
            return Err(bad(format!(
                "data_offsets {offsets:?} end before they begin"
            )));
        }
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let want = numel.and_then(|n| n.checked_mul(size));
        if size > 0 && want != Some(offsets[1] - offsets[0]) {
            return Err(bad(format!(
                "shape {shape:?} of {dtype} needs {} bytes, data_offsets {offsets:?} span {}",
                want.map_or("more than 2^64".into(), |w| w.to_string()),
                offsets[1] - offsets[0]
            )));
        }
    }
    Ok(())
}

/// Parses and validates header JSON with the `safetensors` crate.
fn parse_json(body: &[u8]) -> Result<Header> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Error::invalid("safetensors header", format!("not UTF-8: {e}")))?;
    check_entries(text)?;
    let meta: safetensors::tensor::Metadata = serde_json::from_str(text)
        .map_err(|e| Error::invalid("safetensors header", e.to_string()))?;
    let mut tensors: Vec<Entry> = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| Entry {
            name,
            dtype: info.dtype,
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            begin: info.data_offsets.0 as u64,
            end: info.data_offsets.1 as u64,
        })
        .collect();
    tensors.sort_by_key(|t| (t.begin, t.end));
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Header {
        metadata,
        tensors,
        data_start: 8 + body.len() as u64,
    })
}

/// Reads and validates the header of the safetensors file at `path`
/// (without reading its data), checking that the file holds exactly the
/// data the header describes.
pub fn read_header(path: &Path) -> Result<Header> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let bad = |problem: String| Error::path(path, format!("not a safetensors file: {problem}"));
    crate::io::read::check_regular(path)?;
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(len);
    // The crate's own cap on header size.
    if n > 100_000_000 || n + 8 > file_len {
        return Err(bad(format!(
            "header length {n} does not fit the file ({file_len} bytes)"
        )));
    }
    let mut body = vec![0u8; n as usize];
    f.read_exact(&mut body).map_err(io)?;
    let h = parse_json(&body).map_err(|e| bad(e.to_string()))?;
    if h.data_start + h.data_len() != file_len {
        return Err(bad(format!(
            "the header describes {} data bytes, the file has {}",
            h.data_len(),
            file_len - h.data_start
        )));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_the_written_types_and_f64_and_decode_exactly() {
        for t in DType::ALL {
            assert_eq!(Float::of(t.safetensors()), Some(Float::Written(t)));
            let mut bytes = Vec::new();
            t.encode(&[1.5, -0.25], &mut bytes);
            let mut out = Vec::new();
            Float::Written(t).decode_into(&bytes, &mut out);
            assert_eq!(out, [1.5, -0.25]);
        }
        let mut out = Vec::new();
        Float::F64.decode_into(&0.1f64.to_le_bytes(), &mut out);
        assert_eq!(out, [0.1f32]);
        for d in [
            Dtype::I64,
            Dtype::U8,
            Dtype::BOOL,
            Dtype::F8_E4M3,
            Dtype::C64,
        ] {
            assert_eq!(Float::of(d), None, "{d}");
        }
    }

    #[test]
    fn an_unknown_dtype_is_refused_with_the_tensor_named() {
        let e = check_entries(r#"{"w":{"dtype":"F12","shape":[1],"data_offsets":[0,2]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor 'w'") && e.contains("F12"), "{e}");
        // A known type whose offsets do not span its bytes.
        let e = check_entries(r#"{"w":{"dtype":"I16","shape":[3],"data_offsets":[0,4]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 6 bytes"), "{e}");
    }

    #[test]
    fn headers_round_trip_through_the_reference_parser() {
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let t = vec![
            Entry {
                name: "a".into(),
                dtype: Dtype::F32,
                shape: vec![2, 3],
                begin: 0,
                end: 24,
            },
            Entry {
                name: "b\"q".into(),
                dtype: Dtype::BF16,
                shape: vec![5],
                begin: 24,
                end: 34,
            },
        ];
        let bytes = encode_header(&meta, &t).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        let mut file = bytes.clone();
        file.extend(std::iter::repeat_n(0u8, 34));
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(st.tensor("b\"q").unwrap().shape(), [5]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.safetensors");
        std::fs::write(&p, &file).unwrap();
        let h = read_header(&p).unwrap();
        assert_eq!((h.metadata, h.tensors), (meta.clone(), t.clone()));
        // A hole between tensors, or a short file, is refused.
        let mut gap = t.clone();
        gap[1].begin = 28;
        gap[1].end = 38;
        assert!(encode_header(&meta, &gap).is_err());
        std::fs::write(&p, &file[..file.len() - 1]).unwrap();
        assert!(read_header(&p).is_err());
    }
}
