//! Files and host memory: `.npy` reading and streaming writing ([`npy`]), and the output
//! rules every file deepinit writes follows ([`output`]: validated up front,
//! atomic, never clobbering, never replacing special files).

pub mod dtype;
pub mod host;
pub mod lock;
pub mod npy;
pub mod output;
pub mod read;
pub mod safetensors;
