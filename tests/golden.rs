//! Whole-model logits against Hugging Face transformers' float32 (goldens made by
//! scripts/golden/make_golden.py), on the reference backend (plain Rust, f64 sums: checks the
//! model semantics alone) and on wgpu (lavapipe here: checks the WGSL kernels end to end).
//! The CUDA backend runs the same goldens on a GPU machine (tests/gpu.rs).

mod common;
use common::golden::{self, Limits};
use lamina::select::BackendChoice;

fn check(choice: BackendChoice, name: &str, limits: Limits) {
    let g = golden::load(name);
    for (case, run) in common::run_golden(choice, &g) {
        let r = g.assert_close(&case, &run, &limits);
        println!("{choice:?} {name}/{case}: {}", r.report());
    }
}

macro_rules! goldens {
    ($backend:ident, $choice:expr) => {
        mod $backend {
            use super::*;
            #[test]
            fn smollm2_q4_1() {
                check($choice, "smollm2-135m-q4_1", Limits::float32());
            }
            #[test]
            fn qwen25_coder_q4_k_m() {
                check($choice, "qwen25-coder-05b-q4_k_m", Limits::float32());
            }
            #[test]
            fn llama3_tiny_sharded_bf16_llama3_rope() {
                check($choice, "llama3-tiny", Limits::float32());
            }
            #[test]
            fn phi3_tiny_f16_fused_longrope() {
                check($choice, "phi3-tiny", Limits::float32());
            }
            #[test]
            fn qwen25_tiny_f32_bias_tied() {
                check($choice, "qwen25-tiny", Limits::float32());
            }
            #[test]
            fn tinyllama_tiny_bf16() {
                check($choice, "tinyllama-tiny", Limits::float32());
            }
        }
    };
}

goldens!(reference, BackendChoice::Reference);

/// compressed-tensors W8A8 weights (int8 with per-channel scales), exact product of the
/// dequantized weights with float activations.
#[test]
fn reference_w8a8_tiny_int8_weights() {
    check(BackendChoice::Reference, "w8a8-tiny", Limits::float32());
}
goldens!(wgpu, BackendChoice::Wgpu);
