//! Models: configuration, rope, the forward pass.

pub mod config;
pub mod diagnose;
pub mod llama;
pub mod resolve;
pub mod rope;
pub mod validate;
