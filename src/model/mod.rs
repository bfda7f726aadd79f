//! Models: configuration, rope, the forward pass.

pub mod config;
pub mod rope;
