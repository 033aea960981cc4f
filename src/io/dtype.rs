//! Element types of checkpoints, and the exact f32 -> bf16 / f16 roundings.
//!
//! Both roundings are round-to-nearest-even on the f32 bit pattern, written
//! with integer operations only, so the WGSL twin (`shaders/io/pack.wgsl`) gives
//! the same bits on every device:
//! - **bf16** keeps the top 16 bits after adding `0x7FFF + (bit 16)`: ties go
//!   to the even result, values past the largest bf16 become +-inf, NaN
//!   stays a quiet NaN with its sign.
//! - **f16** rounds the 24-bit significand at the f16 precision of the value's
//!   binade (10 bits for normals, fewer for subnormals); magnitudes from
//!   65520 up become +-inf, below 2^-25 they become +-0.
//!
//! These are the conversions of `numpy.astype(float16)` and of PyTorch's
//! `.to(torch.bfloat16)` (tests compare with the `half` crate's, which
//! implements the same IEEE rule).

use crate::error::{Error, Result};
use safetensors::Dtype;
use serde::Serialize;

/// A checkpoint element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// bfloat16: the top half of a binary32.
    Bf16,
    /// IEEE binary16.
    F16,
}

impl DType {
    /// All element types, in a fixed order.
    pub const ALL: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// The safetensors element type.
    pub fn safetensors(self) -> Dtype {
        match self {
            DType::F32 => Dtype::F32,
            DType::Bf16 => Dtype::BF16,
            DType::F16 => Dtype::F16,
        }
    }

    /// The type a safetensors element type stands for: `None` for those
    /// deepinit does not write.
    pub fn from_safetensors(d: Dtype) -> Option<DType> {
        DType::ALL.into_iter().find(|t| t.safetensors() == d)
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::Bf16 | DType::F16 => 2,
        }
    }

    /// Parses `f32`, `bf16` or `f16` (also `float32`, `bfloat16`, `float16`).
    pub fn parse(s: &str) -> Result<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "f16" | "float16" | "fp16" | "half" => Ok(DType::F16),
            _ => Err(Error::choice("dtype", s, &["f32", "bf16", "f16"])),
        }
    }

    /// Writes the little-endian bytes of `values` into `out`, which holds
    /// exactly `values.len() * self.size()` bytes.
    pub fn encode_into(self, values: &[f32], out: &mut [u8]) {
        match self {
            DType::F32 => out.copy_from_slice(bytemuck::cast_slice(values)),
            DType::Bf16 => {
                for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&f32_to_bf16(v.to_bits()).to_le_bytes());
                }
            }
            DType::F16 => {
                for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&f32_to_f16(v.to_bits()).to_le_bytes());
                }
            }
        }
    }

    /// Appends `values` in this type, little-endian, to `out`.
    pub fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.size() as usize);
        match self {
            DType::F32 => out.extend_from_slice(bytemuck::cast_slice(values)),
            DType::Bf16 => {
                for v in values {
                    out.extend_from_slice(&f32_to_bf16(v.to_bits()).to_le_bytes());
                }
            }
            DType::F16 => {
                for v in values {
                    out.extend_from_slice(&f32_to_f16(v.to_bits()).to_le_bytes());
                }
            }
        }
    }

    /// The value `bytes` (one element of this type, little-endian) stands for.
    pub fn decode(self, bytes: &[u8]) -> f32 {
        match (self, bytes) {
            (DType::F32, [a, b, c, d, ..]) => f32::from_le_bytes([*a, *b, *c, *d]),
            (DType::Bf16, [a, b, ..]) => {
                f32::from_bits(u32::from(u16::from_le_bytes([*a, *b])) << 16)
            }
            (DType::F16, [a, b, ..]) => f16_to_f32(u16::from_le_bytes([*a, *b])),
            _ => f32::NAN,
        }
    }
}

/// f32 bit patterns at the rounding edges of bf16 and f16: zeros, infinities,
/// NaNs, the largest finite values, ties and near-ties at both precisions,
/// the f16 overflow threshold (65520) and subnormal boundaries. Test vectors
/// for every implementation of the roundings (host and device).
pub const ROUNDING_EDGES: [u32; 23] = [
    0x0000_0000,
    0x8000_0000,
    0x7F80_0000,
    0xFF80_0000,
    0x7FC0_0000,
    0x7F80_0001,
    0x7F7F_FFFF,
    0x477F_E000,
    0x477F_EFFF,
    0x477F_F000,
    0x3380_0000,
    0x3380_0001,
    0x3300_0000,
    0x3300_0001,
    0x3880_0000,
    0x387F_E000,
    0x387F_F000,
    0x0000_0001,
    0x3F80_8000,
    0x3F81_8000,
    0x3F80_7FFF,
    0x3F80_1000,
    0x3F80_3000,
];

/// bf16 bits of the f32 with bits `x`, rounded to nearest even.
#[inline]
pub fn f32_to_bf16(x: u32) -> u16 {
    if x & 0x7FFF_FFFF > 0x7F80_0000 {
        // NaN: keep the sign and top payload bits, force quiet.
        return ((x >> 16) | 0x0040) as u16;
    }
    // No overflow: the largest non-NaN input is 0xFF80_0000.
    ((x + 0x7FFF + ((x >> 16) & 1)) >> 16) as u16
}

/// f16 bits of the f32 with bits `x`, rounded to nearest even.
#[inline]
pub fn f32_to_f16(x: u32) -> u16 {
    let sign = (x >> 16) & 0x8000;
    let exp = (x >> 23) & 0xFF;
    let man = x & 0x007F_FFFF;
    if exp == 0xFF {
        // inf stays inf; NaN stays a quiet NaN.
        let nan = if man != 0 { 0x0200 | (man >> 13) } else { 0 };
        return (sign | 0x7C00 | nan) as u16;
    }
    // The f16 biased exponent, as if the value were normal in f16.
    let half_exp = exp as i32 - 127 + 15;
    if half_exp >= 0x1F {
        return (sign | 0x7C00) as u16;
    }
    if half_exp <= 0 {
        // Subnormal in f16 (or zero): shift the full significand right.
        let shift = (14 - half_exp) as u32; // 14..
        if shift > 24 {
            return sign as u16;
        }
        let full = man | 0x0080_0000;
        return (sign | round_shift(full, shift)) as u16;
    }
    // Normal: drop 13 bits; a carry out of the significand bumps the exponent
    // (and reaches inf at the top), which is exactly right.
    let bits = ((half_exp as u32) << 10) | (man >> 13);
    (sign | (bits + round_bit(man, 13))) as u16
}

/// `v >> shift` rounded to nearest even (shift in 1..=31).
#[inline]
fn round_shift(v: u32, shift: u32) -> u32 {
    (v >> shift) + round_bit(v, shift)
}

/// 1 when dropping the low `shift` bits of `v` must round up (nearest, ties to even).
#[inline]
fn round_bit(v: u32, shift: u32) -> u32 {
    let half = 1u32 << (shift - 1);
    let rest = v & ((half << 1) - 1);
    let odd = (v >> shift) & 1;
    u32::from(rest > half || (rest == half && odd == 1))
}

/// The f32 value of f16 bits (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = (h >> 10) & 0x1F;
    let man = h & 0x3FF;
    match exp {
        0 => sign * man as f32 * 2f32.powi(-24),
        0x1F if man == 0 => sign * f32::INFINITY,
        0x1F => f32::NAN,
        _ => sign * (1024 + man) as f32 * 2f32.powi(exp as i32 - 25),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 65537th bit pattern (all exponents and signs), every low
    /// 16-bit pattern of 1.0 (all bf16 ties), and the edges of each format.
    fn patterns() -> impl Iterator<Item = u32> {
        (0..=u32::MAX / 65537)
            .map(|i| i.wrapping_mul(65537))
            .chain((0..1 << 16).map(|i| 0x3F80_0000 | i))
            .chain(ROUNDING_EDGES)
    }

    #[test]
    fn bf16_and_f16_round_like_ieee() {
        for x in patterns() {
            let v = f32::from_bits(x);
            let (b, h) = (half::bf16::from_f32(v), half::f16::from_f32(v));
            if v.is_nan() {
                assert!(half::bf16::from_bits(f32_to_bf16(x)).is_nan(), "{x:#x}");
                assert!(half::f16::from_bits(f32_to_f16(x)).is_nan(), "{x:#x}");
                continue;
            }
            assert_eq!(f32_to_bf16(x), b.to_bits(), "bf16 of {x:#010x}");
            assert_eq!(f32_to_f16(x), h.to_bits(), "f16 of {x:#010x}");
            assert_eq!(f16_to_f32(h.to_bits()).to_bits(), h.to_f32().to_bits());
        }
    }

    #[test]
    fn encode_into_writes_what_encode_appends() {
        let values: Vec<f32> = patterns().map(f32::from_bits).collect();
        for d in [DType::F32, DType::Bf16, DType::F16] {
            let mut appended = Vec::new();
            d.encode(&values, &mut appended);
            let mut into = vec![0u8; values.len() * d.size() as usize];
            d.encode_into(&values, &mut into);
            assert_eq!(appended, into, "{}", d.name());
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let vals = [0.0f32, -1.5, 3.0e-6, 65504.0, 0.1];
        for d in DType::ALL {
            let mut bytes = Vec::new();
            d.encode(&vals, &mut bytes);
            assert_eq!(bytes.len() as u64, vals.len() as u64 * d.size());
            let s = d.size() as usize;
            for (i, v) in vals.iter().enumerate() {
                let back = d.decode(&bytes[i * s..]);
                let tol = match d {
                    DType::F32 => 0.0,
                    DType::Bf16 => v.abs() * 2f32.powi(-8),
                    DType::F16 => v.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                };
                assert!((back - v).abs() <= tol, "{d:?} {v} -> {back}");
            }
        }
        assert_eq!(DType::parse("BF16").unwrap(), DType::Bf16);
        assert!(DType::parse("f8").is_err());
    }
}
