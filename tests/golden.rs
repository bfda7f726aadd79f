//! Whole-model logits against Hugging Face transformers' float32 (goldens made by
//! scripts/golden/make_golden.py), on the reference backend (plain Rust, f64 sums: checks the
//! model semantics alone) and on wgpu (lavapipe here: checks the WGSL kernels end to end).
//! The CUDA backend runs the same goldens on a GPU machine (scripts/gpu_check.sh), held to
//! reduced-precision limits: its prefill products take bf16/f16 activations on tensor
//! cores and its KV cache is f16.

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
    ($backend:ident, $choice:expr, $limits:expr $(, #[$attr:meta])?) => {
        mod $backend {
            use super::*;
            #[test]
            $(#[$attr])?
            fn smollm2_q4_1() {
                check($choice, "smollm2-135m-q4_1", $limits);
            }
            #[test]
            $(#[$attr])?
            fn qwen25_coder_q4_k_m() {
                check($choice, "qwen25-coder-05b-q4_k_m", $limits);
            }
            #[test]
            $(#[$attr])?
            fn llama3_tiny_sharded_bf16_llama3_rope() {
                check($choice, "llama3-tiny", $limits);
            }
            #[test]
            $(#[$attr])?
            fn phi3_tiny_f16_fused_longrope() {
                check($choice, "phi3-tiny", $limits);
            }
            #[test]
            $(#[$attr])?
            fn qwen25_tiny_f32_bias_tied() {
                check($choice, "qwen25-tiny", $limits);
            }
            #[test]
            $(#[$attr])?
            fn tinyllama_tiny_bf16() {
                check($choice, "tinyllama-tiny", $limits);
            }
        }
    };
}

goldens!(reference, BackendChoice::Reference, Limits::float32());

/// compressed-tensors W8A8 weights (int8 with per-channel scales), exact product of the
/// dequantized weights with float activations.
#[test]
fn reference_w8a8_tiny_int8_weights() {
    check(BackendChoice::Reference, "w8a8-tiny", Limits::float32());
}
goldens!(wgpu, BackendChoice::Wgpu, Limits::float32());
goldens!(cuda, BackendChoice::Cuda, Limits::reduced_precision(), #[ignore = "needs an NVIDIA GPU: scripts/gpu_check.sh runs it there"]);

/// W8A8 on wgpu quantizes activations per token to int8 at run time (dot4I8Packed products,
/// i32 sums), so it is held to the golden that does the same activation rounding in float.
/// Our f32 ops upstream of each matmul differ from torch's in the last bits, so now and then
/// an activation on a rounding boundary lands one int8 level away; in this tiny random model
/// such flips move logits by up to ~1e-2 (measured: random16 agrees to ~2e-6 up to greedy
/// step 21, then flips reach 1.1e-2 at step 25; the reference backend doing the same
/// quantization in f64 flips at random40 step 2, 4e-3). A wrong kernel moves them by 0.1+.
#[test]
fn wgpu_w8a8_tiny_int8_activations() {
    check(
        BackendChoice::Wgpu,
        "w8a8-tiny-act8",
        Limits::int8_activations(),
    );
}

/// W8A8 on CUDA quantizes activations per token to int8 at run time (int8 products, int32
/// sums), so it is held to the golden that does the same activation rounding in float, with
/// the bound that golden's conditioning allows for an f16 KV cache.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu_check.sh runs it there"]
fn cuda_w8a8_tiny_int8_activations() {
    check(
        BackendChoice::Cuda,
        "w8a8-tiny-act8",
        Limits::int8_activations_half_kv(),
    );
}
