//! Support shared by integration tests.
#![allow(dead_code)]

pub mod bin;
pub mod gguf;
pub mod golden;

use golden::{Golden, Run};
use lamina::generate::{EngineOptions, InferenceAdapter};
use lamina::sample::argmax;
use lamina::select::{open, BackendChoice};
use lamina::testdata;

/// Where a golden's model is: a fetched GGUF, or a tiny model made by make_tiny_models.py.
pub fn model_path(g: &Golden) -> String {
    let src = &g.source;
    let path = match src.get("kind").and_then(|k| k.as_str()) {
        Some("gguf") => testdata::file(src["file"].as_str().expect("gguf golden names its file")),
        _ => {
            let dir = src.get("dir").and_then(|d| d.as_str()).unwrap_or(&g.model);
            testdata::file(&format!("tiny/{dir}"))
        }
    };
    path.unwrap_or_else(|e| panic!("{e} (and scripts/make_tiny_models.py for tiny models)"))
        .to_string_lossy()
        .into_owned()
}

/// Runs every case of a golden on a backend: logits at the stored prompt positions (one
/// prefill pass), then greedy decoding with the logits of each step.
pub fn run_golden(choice: BackendChoice, g: &Golden) -> Vec<(String, Run)> {
    let longest = g
        .cases
        .iter()
        .map(|c| c.prompt_ids.len())
        .max()
        .unwrap_or(0);
    let opts = EngineOptions {
        ctx_size: longest + g.greedy_steps + 8,
        batch: 64,
    };
    let mut a: Box<dyn InferenceAdapter> = open(&model_path(g), choice, opts).unwrap();
    a.load().unwrap();
    let vocab = a.vocab_size();
    g.cases
        .iter()
        .map(|c| {
            let rows = c.positions.len();
            let flat = a.prefill_rows(&c.prompt_ids, rows).unwrap();
            let prompt_logits: Vec<Vec<f32>> = flat.chunks(vocab).map(|r| r.to_vec()).collect();
            let mut run = Run {
                prompt_logits,
                ..Default::default()
            };
            let mut logits = run.prompt_logits.last().unwrap().clone();
            for step in 0..g.greedy_steps {
                let id = argmax(&logits);
                run.greedy_ids.push(id);
                run.greedy_logits.push(logits);
                if step + 1 < g.greedy_steps {
                    logits = a.decode_token(id).unwrap();
                } else {
                    logits = vec![];
                }
            }
            // decode_greedy (the backend's own argmax: the device's on CUDA) at the last step
            // again: the last decoded position is re-run from the cache by the same one-token
            // step, so the logits are the same bits.
            let (n, ids) = (run.greedy_ids.len(), &run.greedy_ids);
            if n >= 3 {
                let mut seq = c.prompt_ids.clone();
                seq.extend(&ids[..n - 2]);
                a.prefill(&seq).unwrap();
                let got = a.decode_greedy(ids[n - 2]).unwrap();
                assert_eq!(
                    got,
                    ids[n - 1],
                    "{}: decode_greedy is not the argmax",
                    c.name
                );
            }
            (c.name.clone(), run)
        })
        .collect()
}
