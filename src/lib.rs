//! lamina: an inference engine for Llama-family models over wgpu (WGSL) and CUDA.

pub mod backend;
pub mod bench;
pub mod chat;
pub mod convert;
pub mod dtype;
pub mod error;
pub mod generate;
pub mod model;
pub mod perplexity;
pub mod progress;
pub mod quant;
pub mod sample;
pub mod select;
pub mod testdata;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
