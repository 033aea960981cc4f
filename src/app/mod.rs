//! The commands' orchestration, independent of the command line: the
//! [`demo`] grid, the multiplier [`sweep`], and the benchmarks ([`bench`](mod@bench)) with
//! their best-of-variants rooflines.

pub mod bench;
pub mod checkpoint;
pub mod demo;
pub mod first_run;
pub mod histogram;
pub mod roofline;
pub mod sweep;
pub mod transformer;
