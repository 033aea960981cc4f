//! The random numbers: the Philox4x32-10 counter-based generator
//! ([`philox`]), its exact integer-to-float mappings and distributions
//! ([`dist`]), and the multi-threaded CPU generator that is both a backend
//! and the reference the GPU is checked against ([`cpu`]).

pub mod cpu;
pub mod dist;
pub mod fast;
pub mod fixed;
pub mod philox;
pub mod request;
