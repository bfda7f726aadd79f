//! The whole engine on the reference backend (plain Rust, f64 sums): the oracle that the
//! GPU backends' end-to-end tests are compared with, itself checked against the real model.

use lamina::generate::{generate, EngineOptions, GenerateParams};
use lamina::sample::SamplingParams;
use lamina::select::{open, BackendChoice};
use lamina::testdata;

#[test]
fn smollm2_on_reference_names_paris() {
    let path = testdata::file(testdata::SMOLLM2).unwrap();
    let opts = EngineOptions {
        ctx_size: 64,
        batch: 16,
    };
    let mut a = open(path.to_str().unwrap(), BackendChoice::Reference, opts).unwrap();
    let ids = a.encode("The capital of France is", true, false).unwrap();
    let p = GenerateParams {
        max_tokens: 6,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let g = generate(a.as_mut(), &ids, &p, &mut |_| {}).unwrap();
    println!("{:?} -> {:?}", ids, g.text);
    assert!(g.text.contains("Paris"), "continuation: {:?}", g.text);
}
