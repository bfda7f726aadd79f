//! The forward pass on the reference backend (plain Rust, f64 sums) against Hugging Face
//! transformers' float32 logits: this checks the model semantics (rope layouts and scalings,
//! biases, fused weights, GQA, tied embeddings) independently of any GPU kernel.

mod common;
use common::golden::{self, Limits};
use lamina::select::BackendChoice;

fn check(name: &str, limits: Limits) {
    let g = golden::load(name);
    for (case, run) in common::run_golden(BackendChoice::Reference, &g) {
        let r = g.assert_close(&case, &run, &limits);
        println!("{name}/{case}: {}", r.report());
    }
}

#[test]
fn smollm2() {
    check("smollm2-135m-q4_1", Limits::float32());
}

#[test]
fn qwen25_coder() {
    check("qwen25-coder-05b-q4_k_m", Limits::float32());
}

#[test]
fn llama3_tiny_sharded_bf16_llama3_rope() {
    check("llama3-tiny", Limits::float32());
}

#[test]
fn phi3_tiny_fused_longrope() {
    check("phi3-tiny", Limits::float32());
}

#[test]
fn qwen25_tiny_bias_tied() {
    check("qwen25-tiny", Limits::float32());
}

#[test]
fn tinyllama_tiny() {
    check("tinyllama-tiny", Limits::float32());
}

#[test]
fn w8a8_tiny_float_weights() {
    check("w8a8-tiny", Limits::float32());
}
