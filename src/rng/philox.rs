//! Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw,
//! "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
//!
//! A counter-based generator is a keyed bijection: `philox(counter, key)` gives
//! four 32-bit words, and any block can be computed without computing the ones
//! before it. That is what makes deepinit's weights *element-indexed*: the
//! value of element `e` of tensor `t` under seed `s` is a pure function of
//! `(s, t, e)` (see [`block_counter`] and the crate documentation for the exact
//! mapping), so it cannot depend on the GPU's workgroup size, on chunking, or on
//! the device. The same function is written in WGSL in `shaders/rng/philox.wgsl`.
//!
//! [`PhiloxRng`] wraps the block function as a sequential stream that plugs into
//! the `rand` ecosystem through [`rand_core::TryRng`] (hence [`rand_core::Rng`],
//! the trait formerly called `RngCore`) and [`rand_core::SeedableRng`].

use core::convert::Infallible;

/// Philox4x32 round multiplier for words 0/1.
pub const M0: u32 = 0xD251_1F53;
/// Philox4x32 round multiplier for words 2/3.
pub const M1: u32 = 0xCD9E_8D57;
/// Weyl key increment for key word 0 (golden ratio).
pub const W0: u32 = 0x9E37_79B9;
/// Weyl key increment for key word 1 (sqrt(3) - 1).
pub const W1: u32 = 0xBB67_AE85;
/// Number of rounds: 10, the variant Random123 recommends and whose
/// known-answer vectors the tests check.
pub const ROUNDS: u32 = 10;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

#[inline(always)]
fn round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(M0, ctr[0]);
    let (hi1, lo1) = mulhilo(M1, ctr[2]);
    [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0]
}

/// The Philox4x32-10 block function: 10 rounds, the key bumped by the Weyl
/// constants between rounds, exactly as Random123's `philox4x32_R(10, ...)`.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    c = round(c, k);
    for _ in 1..ROUNDS {
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        c = round(c, k);
    }
    c
}

/// Known-answer vectors `(counter, key, output)` from Random123's
/// `kat_vectors` (philox4x32, 10 rounds): all zeros, all ones, and the pi
/// digits. Every implementation (CPU, WGSL) is tested against them.
pub const KNOWN_ANSWERS: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [u32::MAX; 4],
        [u32::MAX; 2],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

/// The Philox key for a 64-bit seed: `[low 32 bits, high 32 bits]`.
#[inline]
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The counter of Philox block `block` (= element index / 4) of tensor
/// `tensor_id`: `[block low 32, block high 32, tensor_id, 0]`.
///
/// Word 3 is reserved (always 0) so that a future stream can never collide
/// with an existing tensor's values.
#[inline]
pub fn block_counter(block: u64, tensor_id: u32) -> [u32; 4] {
    [block as u32, (block >> 32) as u32, tensor_id, 0]
}

/// The four random words of Philox block `block` of tensor `tensor_id` under `seed`.
/// Element `e` of the tensor uses word `e % 4` of block `e / 4`.
#[inline]
pub fn block_words(seed: u64, tensor_id: u32, block: u64) -> [u32; 4] {
    philox4x32_10(block_counter(block, tensor_id), seed_key(seed))
}

/// The raw 32-bit word behind element `element` of tensor `tensor_id` under `seed`.
#[inline]
pub fn element_word(seed: u64, tensor_id: u32, element: u64) -> u32 {
    block_words(seed, tensor_id, element >> 2)[(element & 3) as usize]
}

/// A sequential `rand`-compatible stream over Philox4x32-10.
///
/// The stream for `(seed, tensor_id)` yields exactly the element words of that
/// tensor in element order: its `n`-th `u32` is
/// [`element_word`]`(seed, tensor_id, n)`. So `PhiloxRng` reproduces deepinit's
/// uniform bits, and [`PhiloxRng::seek`] jumps anywhere in O(1).
///
/// # Example
/// ```
/// use deepinit::rng::philox::{element_word, PhiloxRng};
/// use rand_core::{Rng, SeedableRng};
///
/// let mut rng = PhiloxRng::seed_from_u64(42);
/// let first = rng.next_u32();
/// assert_eq!(first, element_word(42, 0, 0));
/// rng.seek(1_000_003);
/// assert_eq!(rng.next_u32(), element_word(42, 0, 1_000_003));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhiloxRng {
    key: [u32; 2],
    tensor_id: u32,
    /// Index of the next word to return (element index).
    position: u64,
    /// The block that `buf` holds, if any.
    buf_block: Option<u64>,
    buf: [u32; 4],
}

impl PhiloxRng {
    /// The stream of tensor `tensor_id` under `seed`, positioned at element 0.
    pub fn new(seed: u64, tensor_id: u32) -> Self {
        Self {
            key: seed_key(seed),
            tensor_id,
            position: 0,
            buf_block: None,
            buf: [0; 4],
        }
    }

    /// Moves the stream so that the next word is the one of element `element`.
    pub fn seek(&mut self, element: u64) {
        self.position = element;
    }

    /// The element index of the next word.
    pub fn position(&self) -> u64 {
        self.position
    }

    #[inline]
    fn next_word(&mut self) -> u32 {
        let block = self.position >> 2;
        if self.buf_block != Some(block) {
            self.buf = philox4x32_10(block_counter(block, self.tensor_id), self.key);
            self.buf_block = Some(block);
        }
        let w = self.buf[(self.position & 3) as usize];
        // The stream has 2^64 words; it wraps rather than panics at the end.
        self.position = self.position.wrapping_add(1);
        w
    }
}

impl rand_core::TryRng for PhiloxRng {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.next_word())
    }

    /// Two consecutive words, the first in the low half (little-endian order,
    /// as `rand_core` recommends).
    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let lo = self.next_word();
        let hi = self.next_word();
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }

    /// Consecutive words in little-endian byte order; a trailing partial word
    /// consumes a whole word.
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let bytes = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::SeedableRng for PhiloxRng {
    /// 8 bytes: the little-endian 64-bit seed. The stream is tensor 0's.
    type Seed = [u8; 8];

    fn from_seed(seed: Self::Seed) -> Self {
        Self::new(u64::from_le_bytes(seed), 0)
    }

    /// The seed is used as it is (no hashing), so `seed_from_u64(s)` is the
    /// stream deepinit uses for tensor 0 under seed `s`.
    fn seed_from_u64(state: u64) -> Self {
        Self::new(state, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{Rng, SeedableRng};

    #[test]
    fn random123_known_answers() {
        for (ctr, key, want) in KNOWN_ANSWERS {
            assert_eq!(
                philox4x32_10(ctr, key),
                want,
                "ctr {ctr:08x?} key {key:08x?}"
            );
        }
    }

    #[test]
    fn counter_layout_uses_64_bit_block_index() {
        // Blocks 2^32 apart must differ: the high word is in the counter.
        assert_ne!(block_words(1, 0, 5), block_words(1, 0, 5 + (1 << 32)));
        assert_eq!(block_counter(0x1_0000_0002, 7), [2, 1, 7, 0]);
        // Tensor id and seed halves each change the output.
        assert_ne!(block_words(1, 0, 0), block_words(1, 1, 0));
        assert_ne!(block_words(1, 0, 0), block_words(1 << 32 | 1, 0, 0));
    }

    #[test]
    fn stream_matches_element_words_and_seeks() {
        let mut rng = PhiloxRng::new(0xDEAD_BEEF_1234, 3);
        for e in 0..37u64 {
            assert_eq!(rng.next_u32(), element_word(0xDEAD_BEEF_1234, 3, e));
        }
        let far = (1u64 << 33) + 5;
        rng.seek(far);
        assert_eq!(rng.next_u32(), element_word(0xDEAD_BEEF_1234, 3, far));
        assert_eq!(rng.position(), far + 1);
    }

    #[test]
    fn u64_and_bytes_are_little_endian_word_pairs() {
        let mut a = PhiloxRng::seed_from_u64(9);
        let mut b = PhiloxRng::seed_from_u64(9);
        let w0 = a.next_u32();
        let w1 = a.next_u32();
        assert_eq!(b.next_u64(), u64::from(w0) | u64::from(w1) << 32);
        let mut bytes = [0u8; 6];
        let mut c = PhiloxRng::seed_from_u64(9);
        c.fill_bytes(&mut bytes);
        assert_eq!(&bytes[..4], &w0.to_le_bytes());
        assert_eq!(&bytes[4..], &w1.to_le_bytes()[..2]);
        assert_eq!(
            PhiloxRng::from_seed(9u64.to_le_bytes()),
            PhiloxRng::seed_from_u64(9)
        );
    }
}
