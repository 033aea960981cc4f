//! Initialization schemes and drawing one weight tensor: the variance rule of
//! a [`scheme`] (He, LeCun, Xavier, naive; fan modes, gains, multipliers) and
//! [`tensor::draw`], which generates, checks and writes a tensor.

pub mod scheme;
pub mod tensor;
