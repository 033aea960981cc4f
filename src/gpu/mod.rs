//! The GPU side: device setup and the compute kernels' host drivers.

pub mod context;
pub mod gemm;
pub mod gen_tune;
pub mod generate;
pub mod kat;
pub mod launch;
pub mod layout;
pub mod pack;
pub mod probe;
pub mod shaders;
pub mod timer;
pub mod tune;
pub mod tune_cache;

pub use context::{list_adapters, AdapterRequest, AdapterSummary, GpuContext};
pub use generate::{GenOptions, GenRequest, Generator, Kernel};
