//! What to generate: a kernel (raw bits or a distribution) over a range of
//! one tensor's elements. Every backend takes the same request and gives
//! the same bits.

use crate::rng::dist::Dist;

/// Which generation kernel to run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// The raw Philox word of each element (the "uniform bits").
    Bits,
    /// Scaled values of a distribution.
    Dist(Dist),
}

impl Kernel {
    /// Every kernel: the raw bits, then each distribution in [`Dist::ALL`] order.
    pub const ALL: [Kernel; 4] = [
        Kernel::Bits,
        Kernel::Dist(Dist::Normal),
        Kernel::Dist(Dist::Truncated),
        Kernel::Dist(Dist::Uniform),
    ];
}

/// Elements `start .. start + count` of tensor `tensor_id` under `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenRequest {
    /// Kernel.
    pub kernel: Kernel,
    /// Seed (the Philox key).
    pub seed: u64,
    /// Tensor id (counter word 2).
    pub tensor_id: u32,
    /// First element index.
    pub start: u64,
    /// Number of elements.
    pub count: u64,
    /// Multiplier of the unit-scale value ([`Dist::kernel_scale`]); unused by `Bits`.
    pub scale: f32,
}
