//! The library API: `InferenceAdapter` as a trait object, selected by model reference, for
//! both real models; unload gives the device memory back.

use lamina::generate::{generate, EngineOptions, GenerateParams, InferenceAdapter};
use lamina::sample::{argmax, SamplingParams};
use lamina::select::{open, BackendChoice};
use lamina::testdata;

fn adapter(file: &str) -> Box<dyn InferenceAdapter> {
    let path = testdata::file(file).unwrap();
    let opts = EngineOptions {
        ctx_size: 256,
        batch: 32,
    };
    open(path.to_str().unwrap(), BackendChoice::Wgpu, opts).unwrap()
}

fn exercise(a: &mut dyn InferenceAdapter, family: &str, vocab: usize, prompt: &str, expect: &str) {
    assert!(a.model_type().starts_with(family), "{}", a.model_type());
    assert_eq!(a.vocab_size(), vocab);
    assert_eq!(a.context_length(), 256);
    assert!(!a.is_loaded());
    assert_eq!(a.allocated_bytes(), 0);
    a.load().unwrap();
    let loaded = a.allocated_bytes();
    assert!(
        loaded > 50_000_000,
        "only {loaded} bytes on the device after load"
    );

    let ids = a.encode(prompt, true, false).unwrap();
    assert_eq!(a.decode(&ids).unwrap(), prompt);
    let logits = a.prefill(&ids).unwrap();
    assert_eq!(logits.len(), vocab);
    let next = argmax(&logits);
    let after = a.decode_token(next).unwrap();
    assert_eq!(after.len(), vocab);
    // decode_token continues the sequence: the same as prefilling prompt + next at once.
    let mut longer = ids.clone();
    longer.push(next);
    let again = a.prefill(&longer).unwrap();
    let (i, j) = (argmax(&after), argmax(&again));
    assert_eq!(i, j);

    let p = GenerateParams {
        max_tokens: 8,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let mut streamed = String::new();
    let g = generate(a, &ids, &p, &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!(streamed, g.text);
    assert!(g.text.contains(expect), "{:?}", g.text);

    a.unload();
    assert!(!a.is_loaded());
    let left = a.allocated_bytes();
    assert!(
        left < loaded / 100,
        "{left} of {loaded} bytes still held after unload"
    );
    // And it loads again.
    a.load().unwrap();
    assert_eq!(argmax(&a.prefill(&ids).unwrap()), next);
    a.unload();
}

#[test]
fn smollm2_through_the_trait() {
    let mut a = adapter(testdata::SMOLLM2);
    exercise(
        a.as_mut(),
        "llama",
        49152,
        "The capital of France is",
        "Paris",
    );
}

#[test]
fn qwen_coder_through_the_trait() {
    let mut a = adapter(testdata::QWEN_CODER);
    exercise(a.as_mut(), "qwen2", 151936, "def fibonacci(n):", "if n <");
}
