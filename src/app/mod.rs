//! The commands' orchestration, independent of the command line: the
//! [`demo`] grid, the multiplier [`sweep`], and the benchmarks ([`bench`](mod@bench)).

pub mod bench;
pub mod demo;
pub mod sweep;
