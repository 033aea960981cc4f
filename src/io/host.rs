//! Host memory: how much there is, and vectors allocated only when it can
//! hold them (a clear error instead of an abort).

use crate::error::{Error, Result};

/// Total physical memory in bytes, where the OS tells us (Linux `/proc/meminfo`).
pub(crate) fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A zeroed host vector of `n` elements, or a clear error if the host
/// cannot hold it (more than its physical memory, or an allocation failure).
pub(crate) fn host_vec<T: bytemuck::Zeroable + Clone>(n: u64) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>() as u64;
    let limit = host_memory_bytes();
    let too_big = || Error::LimitExceeded {
        what: "tensor in host memory (bytes)".into(),
        got: n.saturating_mul(size),
        max: limit.unwrap_or(isize::MAX as u64),
        hint: "; stream it in chunks instead (`deepinit init --out`, or \
               `deepinit::generate_with` in the library)"
            .into(),
    };
    let bytes = n.checked_mul(size).ok_or_else(too_big)?;
    if limit.is_some_and(|mem| bytes > mem) {
        return Err(too_big());
    }
    let n = usize::try_from(n).map_err(|_| too_big())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_big())?;
    v.resize(n, T::zeroed());
    Ok(v)
}
