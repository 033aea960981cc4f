//! The CPU generator: Philox4x32-10 on many counters at once (plain arrays
//! the compiler turns into SIMD lanes), then the mapping of
//! [`super::dist`] lane by lane, with the integer program of [`super::fixed`]
//! for normal and truncated values.
//!
//! **Exactness.** Every value is [`super::dist::element_value`]'s, bit for
//! bit: the words are the reference Philox, the unit values the same integer
//! functions, and the one float operation the same f32 multiply. The AVX2 and
//! AVX-512 entry points only let the compiler use wider registers for the
//! same integer operations, so every path gives the same bits (tested).

use super::dist::{signed_unit, Dist};
use super::fixed;
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

/// The values of `LANES` consecutive blocks, element-major (`out[4 i + j]` is
/// lane j of block i).
#[inline(always)]
fn block_values(dist: Dist, scale: f32, x: &[[u32; LANES]; 4], out: &mut [f32; 4 * LANES]) {
    match dist {
        Dist::Normal => {
            // Lane-wise passes over plain arrays (which vectorize), then
            // the interleaved stores.
            let (mut c, mut sn) = ([0u32; LANES], [0u32; LANES]);
            for p in 0..2 {
                for i in 0..LANES {
                    (c[i], sn[i]) = fixed::normal_pair_bits(x[2 * p][i], x[2 * p + 1][i]);
                }
                for i in 0..LANES {
                    out[4 * i + 2 * p] = f32::from_bits(c[i]) * scale;
                    out[4 * i + 2 * p + 1] = f32::from_bits(sn[i]) * scale;
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
            let mut t = [0u32; LANES];
            for j in 0..4 {
                for i in 0..LANES {
                    t[i] = fixed::truncated_bits(x[j][i]);
                }
                for i in 0..LANES {
                    out[4 * i + j] = f32::from_bits(t[i]) * scale;
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
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512cd,avx2")]
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
            && std::arch::is_x86_feature_detected!("avx512cd")
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
    use crate::rng::dist;

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
    fn values_equal_the_reference_and_paths_agree() {
        for dist in Dist::ALL {
            for (start, n) in [(0u64, 1usize << 20), (3, 1001), ((1u64 << 34) + 1, 4099)] {
                let scale = dist.kernel_scale(0.02);
                let mut fast = vec![0f32; n];
                fill(dist, scale, 42, 9, start, &mut fast);
                let mut reference = vec![0f32; n];
                dist::fill_reference(dist, scale, 42, 9, start, &mut reference);
                let same = |other: &[f32]| {
                    fast.iter()
                        .zip(other)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                };
                let mut generic = vec![0f32; n];
                fill_body(dist, scale, 42, 9, start, &mut generic);
                assert!(
                    same(&reference),
                    "{dist:?}: the lanes differ from the reference"
                );
                assert!(same(&generic), "{dist:?}: SIMD and generic paths differ");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("sse4.1")
                {
                    // SAFETY: the features were detected.
                    unsafe { fill_avx2(dist, scale, 42, 9, start, &mut generic) };
                    assert!(same(&generic), "{dist:?}: AVX2 and AVX-512 paths differ");
                }
            }
        }
    }
}
