//! A fast f32 twin of the reference mapping for the CPU: Philox4x32-10 on
//! many counters at once (plain arrays the compiler turns into SIMD lanes),
//! then the documented word-to-float mapping with f32 polynomial `ln`,
//! `sin(pi x)` and `cos(pi x)` instead of f64 libm calls.
//!
//! **Exactness.** The Philox words are the reference's, bit for bit. Uniform
//! values are the same single f32 multiply, so they are bit-identical too.
//! Normal and truncated values differ from the f64 reference by far less than
//! the bound the GPU is held to ([`super::dist::gpu_tolerance`]): the
//! polynomials below are accurate to a few f32 ULP (see each), against the
//! 2^-11 WGSL allows `sin`/`cos`. A test checks millions of elements against
//! that bound.
//!
//! **Determinism.** Only IEEE-754 additions, multiplications, divisions and
//! square roots (correctly rounded everywhere) and integer operations are
//! used, and Rust never contracts `a * b + c` into a fused multiply-add, so
//! the bits are the same on every platform and with or without the AVX2 /
//! AVX-512 code paths (which only let the compiler use wider registers).

use super::dist::{Dist, ERF_SQRT2, TWO_POW_M23, TWO_POW_M24};
use super::philox::{seed_key, M0, M1, ROUNDS, W0, W1};

/// Philox blocks computed together.
const LANES: usize = 16;

/// The words of blocks `b0 .. b0 + LANES` of `tensor_id`: `[word][lane]`.
#[inline(always)]
fn philox_lanes(b0: u64, tensor_id: u32, key: [u32; 2]) -> [[u32; LANES]; 4] {
    let mut c0 = [0u32; LANES];
    let mut c1 = [0u32; LANES];
    for i in 0..LANES {
        let b = b0.wrapping_add(i as u64);
        c0[i] = b as u32;
        c1[i] = (b >> 32) as u32;
    }
    let mut c2 = [tensor_id; LANES];
    let mut c3 = [0u32; LANES];
    let (mut k0, mut k1) = (key[0], key[1]);
    for r in 0..ROUNDS {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        for i in 0..LANES {
            let p0 = u64::from(M0) * u64::from(c0[i]);
            let p1 = u64::from(M1) * u64::from(c2[i]);
            let n0 = (p1 >> 32) as u32 ^ c1[i] ^ k0;
            let n2 = (p0 >> 32) as u32 ^ c3[i] ^ k1;
            c1[i] = p1 as u32;
            c3[i] = p0 as u32;
            c0[i] = n0;
            c2[i] = n2;
        }
    }
    [c0, c1, c2, c3]
}

#[inline(always)]
fn unit_open_closed(w: u32) -> f32 {
    ((w >> 8) + 1) as f32 * TWO_POW_M24
}

#[inline(always)]
fn signed_unit(w: u32) -> f32 {
    ((w >> 8) as f32 - 8_388_607.5) * TWO_POW_M23
}

/// ln(x) for finite x > 0 (normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
/// ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716, by its series to
/// t^9 (truncation below 1e-9 relative). Error: within 4 f32 ULP of the
/// result, or 4 x 2^-24 absolute near x = 1 (tested). Branch-free, so the
/// compiler can run it on SIMD lanes.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let big = m > core::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = ((bits >> 23) & 0xFF) as i32 - 127 + i32::from(big);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let p = 1.0 + t2 * (1.0 / 3.0 + t2 * (0.2 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    // ln 2 split so that e * LN2_HI is exact for |e| < 2^8.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let ef = e as f32;
    ef * LN2_HI + (2.0 * t * p + ef * LN2_LO)
}

/// (sin(pi s), cos(pi s)) for |s| <= 1: s = y + n/2 with n = round(2s) and
/// |y| <= 1/4, Taylor polynomials of sin and cos on |pi y| <= pi/4 (to x^9 and
/// x^10: truncation below 2e-9), then the quadrant by swaps and sign flips.
/// Error: within 4 x 2^-24 absolute (tested). Branch-free.
#[inline(always)]
pub fn sincospi(s: f32) -> (f32, f32) {
    let n = (2.0 * s).round_ties_even();
    let y = s - 0.5 * n; // exact: a multiple of 2^-24 below 1/4
    let x = core::f32::consts::PI * y;
    let x2 = x * x;
    let sin = x
        * (1.0
            + x2 * (-1.0 / 6.0
                + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0)))));
    let cos = 1.0
        + x2 * (-0.5
            + x2 * (1.0 / 24.0
                + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3_628_800.0)))));
    // Quadrant q = n mod 4: sin(pi s) is (sin, cos, -sin, -cos)[q] and
    // cos(pi s) is (cos, -sin, -cos, sin)[q].
    let q = (n as i32 as u32) & 3;
    let swap = q & 1 == 1;
    let (a, b) = (if swap { cos } else { sin }, if swap { sin } else { cos });
    let sin_sign = (q >> 1) << 31;
    let cos_sign = (((q + 1) >> 1) & 1) << 31;
    (
        f32::from_bits(a.to_bits() ^ sin_sign),
        f32::from_bits(b.to_bits() ^ cos_sign),
    )
}

/// Giles' single-precision erfinv, central branch (|y| < 0.9966), as the GPU
/// evaluates it, with [`ln`].
#[inline(always)]
fn erfinv(y: f32) -> f32 {
    let w = -ln((1.0 - y) * (1.0 + y)) - 2.5;
    // Giles' coefficients as written, rounded to f32 as the GPU rounds them.
    #[allow(clippy::excessive_precision)]
    let coefficients: [f32; 9] = [
        2.810_226_36e-08,
        3.432_739_39e-07,
        -3.523_387_7e-06,
        -4.391_506_54e-06,
        0.000_218_580_87,
        -0.001_253_725_03,
        -0.004_177_681_64,
        0.246_640_727,
        1.501_409_41,
    ];
    let mut p = coefficients[0];
    for c in &coefficients[1..] {
        p = c + p * w;
    }
    p * y
}

/// The values of `LANES` consecutive blocks, element-major (`out[4 i + j]` is
/// lane j of block i).
#[inline(always)]
fn block_values(dist: Dist, scale: f32, x: &[[u32; LANES]; 4], out: &mut [f32; 4 * LANES]) {
    match dist {
        Dist::Normal => {
            // Lane-wise passes over plain arrays (which vectorize), then
            // the interleaved stores.
            let (mut c, mut sn) = ([0f32; LANES], [0f32; LANES]);
            for p in 0..2 {
                for i in 0..LANES {
                    let r = (-2.0 * ln(unit_open_closed(x[2 * p][i]))).max(0.0).sqrt();
                    let (s, co) = sincospi(signed_unit(x[2 * p + 1][i]));
                    c[i] = r * co * scale;
                    sn[i] = r * s * scale;
                }
                for i in 0..LANES {
                    out[4 * i + 2 * p] = c[i];
                    out[4 * i + 2 * p + 1] = sn[i];
                }
            }
        }
        Dist::Uniform => {
            for i in 0..LANES {
                for j in 0..4 {
                    out[4 * i + j] = signed_unit(x[j][i]) * scale;
                }
            }
        }
        Dist::Truncated => {
            for i in 0..LANES {
                for j in 0..4 {
                    out[4 * i + j] = erfinv(ERF_SQRT2 as f32 * signed_unit(x[j][i])) * scale;
                }
            }
        }
    }
}

#[inline(always)]
fn fill_body(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    let key = seed_key(seed);
    let mut vals = [0f32; 4 * LANES];
    let mut e = start;
    let mut i = 0;
    while i < out.len() {
        let b0 = e >> 2;
        let words = philox_lanes(b0, tensor_id, key);
        block_values(dist, scale, &words, &mut vals);
        let skip = (e - 4 * b0) as usize;
        let take = (4 * LANES - skip).min(out.len() - i);
        out[i..i + take].copy_from_slice(&vals[skip..skip + take]);
        i += take;
        e += take as u64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
fn fill_avx512(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    fill_body(dist, scale, seed, tensor_id, start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,sse4.1")]
fn fill_avx2(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    fill_body(dist, scale, seed, tensor_id, start, out)
}

/// Elements `start .. start + out.len()` of the tensor, single-threaded, on
/// the widest SIMD this CPU has (the same bits on every path).
pub fn fill(dist: Dist, scale: f32, seed: u64, tensor_id: u32, start: u64, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: the features the function is compiled for were detected.
            return unsafe { fill_avx512(dist, scale, seed, tensor_id, start, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            // SAFETY: as above.
            return unsafe { fill_avx2(dist, scale, seed, tensor_id, start, out) };
        }
    }
    fill_body(dist, scale, seed, tensor_id, start, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{cpu, dist};

    #[test]
    fn words_are_the_reference_philox() {
        let key = seed_key(0xDEAD_BEEF_1234);
        let b0 = u64::from(u32::MAX) - 5; // crosses the 32-bit carry
        let x = philox_lanes(b0, 7, key);
        for (i, b) in (b0..b0 + LANES as u64).enumerate() {
            let want = crate::rng::philox::block_words(0xDEAD_BEEF_1234, 7, b);
            assert_eq!([x[0][i], x[1][i], x[2][i], x[3][i]], want);
        }
    }

    #[test]
    fn ln_and_sincospi_are_accurate_to_a_few_ulp() {
        let mut worst = (0f64, 0f64, 0f64);
        for k in (1u32..=1 << 24).step_by(97) {
            let u = k as f32 * TWO_POW_M24;
            let got = f64::from(ln(u));
            let want = f64::from(u).ln();
            let ulp = (want.abs() * 2f64.powi(-23)).max(2f64.powi(-24));
            worst.0 = worst.0.max((got - want).abs() / ulp);
        }
        for k in (0u32..1 << 24).step_by(89) {
            let s = (k as f32 - 8_388_607.5) * TWO_POW_M23;
            let (sn, cs) = sincospi(s);
            let t = core::f64::consts::PI * f64::from(s);
            worst.1 = worst
                .1
                .max((f64::from(sn) - t.sin()).abs() / 2f64.powi(-24));
            worst.2 = worst
                .2
                .max((f64::from(cs) - t.cos()).abs() / 2f64.powi(-24));
        }
        // ln within 4 ULP (or 4 x 2^-24 absolute near 1); sin/cos within 4 x 2^-24 absolute.
        assert!(
            worst.0 <= 4.0 && worst.1 <= 4.0 && worst.2 <= 4.0,
            "{worst:?}"
        );
    }

    #[test]
    fn values_are_within_the_gpu_bound_of_the_reference_and_paths_agree() {
        for dist in Dist::ALL {
            for (start, n) in [(0u64, 1usize << 20), (3, 1001), ((1u64 << 34) + 1, 4099)] {
                let scale = dist.kernel_scale(0.02);
                let mut fast = vec![0f32; n];
                fill(dist, scale, 42, 9, start, &mut fast);
                let cmp = cpu::compare(dist, scale, 42, 9, start, &fast);
                assert!(cmp.within_bounds(), "{dist:?} at {start}: {cmp:?}");
                let same = |other: &[f32]| {
                    fast.iter()
                        .zip(other)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                };
                let mut generic = vec![0f32; n];
                fill_body(dist, scale, 42, 9, start, &mut generic);
                assert!(same(&generic), "{dist:?}: SIMD and generic paths differ");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("sse4.1")
                {
                    // SAFETY: the features were detected.
                    unsafe { fill_avx2(dist, scale, 42, 9, start, &mut generic) };
                    assert!(same(&generic), "{dist:?}: AVX2 and AVX-512 paths differ");
                }
                if dist == Dist::Uniform {
                    let mut reference = vec![0f32; n];
                    dist::fill_reference(dist, scale, 42, 9, start, &mut reference);
                    assert!(fast
                        .iter()
                        .zip(&reference)
                        .all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }
}
