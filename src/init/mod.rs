//! Initialization rules: the variance rule of a [`scheme`] (He, LeCun,
//! Xavier, naive; fan modes, gains, multipliers), and the [`block`] of a
//! tensor a run generates. Drawing a tensor on a device is
//! [`crate::tensor::draw`].

pub mod block;
pub mod scheme;
