//! The `lamina` binary as a user runs it: exit codes, messages, streaming, seeds, chat.
//! Runs on whatever `--backend auto` finds (lavapipe on a machine without a GPU).

use lamina::dtype::DType;
use lamina::testdata;
use lamina::weights::gguf::{self, TensorData};
mod common;

use common::bin::{lamina, smollm2, test_dir, text};
use common::gguf::{f32_tensors, llama_meta, tokenizer_meta, Dims};
use std::path::Path;
use std::process::{Command, Stdio};

/// A one-layer llama GGUF with SmolLM2's tokenizer whose `ffn_down` is IQ2_XXS, a type no
/// backend of ours runs.
fn write_iq2_model(path: &Path) {
    let (h, ff, vocab) = (64usize, 256usize, 49152usize);
    let d = Dims {
        hidden: h,
        ff,
        layers: 1,
        heads: 4,
        kv_heads: 4,
        ctx: 256,
        vocab,
    };
    let mut meta = tokenizer_meta(&smollm2());
    meta.extend(llama_meta("llama", "iq2 test", &d));
    let f32s: &[(&str, Vec<usize>)] = &[
        ("token_embd.weight", vec![vocab, h]),
        ("blk.0.attn_norm.weight", vec![h]),
        ("blk.0.attn_q.weight", vec![h, h]),
        ("blk.0.attn_k.weight", vec![h, h]),
        ("blk.0.attn_v.weight", vec![h, h]),
        ("blk.0.attn_output.weight", vec![h, h]),
        ("blk.0.ffn_norm.weight", vec![h]),
        ("blk.0.ffn_gate.weight", vec![ff, h]),
        ("blk.0.ffn_up.weight", vec![ff, h]),
        ("output_norm.weight", vec![h]),
    ];
    let data: Vec<Vec<u8>> = f32s
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<usize>())
                .flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes())
                .collect()
        })
        .collect();
    let down = vec![0x11u8; DType::IQ2_XXS.tensor_bytes(&[h, ff]).unwrap()];
    let down_shape = [h, ff];
    let mut tensors = f32_tensors(f32s, &data);
    tensors.push(TensorData {
        name: "blk.0.ffn_down.weight",
        dtype: DType::IQ2_XXS,
        shape: &down_shape,
        bytes: &down,
    });
    std::fs::write(path, gguf::encode(&meta, &tensors).unwrap()).unwrap();
}

#[test]
fn an_unsupported_dtype_is_refused_before_anything_is_uploaded() {
    let dir = test_dir("iq2");
    let path = dir.join("iq2.gguf");
    write_iq2_model(&path);
    let p = path.to_str().unwrap();

    // Through the library: the load fails and the device holds nothing afterwards.
    let opts = lamina::generate::EngineOptions {
        ctx_size: 64,
        batch: 16,
    };
    let mut a = lamina::select::open(p, lamina::select::BackendChoice::Wgpu, opts).unwrap();
    let e = a.load().unwrap_err().to_string();
    assert_eq!(
        a.allocated_bytes(),
        0,
        "something was uploaded before the refusal"
    );
    assert!(!a.is_loaded());
    for want in [
        "blk.0.ffn_down.weight",
        "IQ2_XXS",
        "matmul",
        "wgpu",
        "Q4_K",
        "lamina quantize",
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }

    // Through the CLI: a non-zero exit and the same message.
    let out = lamina(&["run", "-m", p, "-p", "hi", "-n", "2", "--backend", "wgpu"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("IQ2_XXS") && err.contains("blk.0.ffn_down.weight"),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty() || !text(&out.stdout).contains("hi "));
    // inspect names the tensor for the backend instead of failing.
    let out = lamina(&["inspect", p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("blk.0.ffn_down.weight (IQ2_XXS) for matmul"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn smollm2_names_paris_greedily() {
    let out = lamina(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "The capital of France is",
        "-n",
        "16",
        "--temp",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("The capital of France is Paris"), "{s}");
    let err = text(&out.stderr);
    assert!(
        err.contains("tok/s") && err.contains("generated: 16 tokens"),
        "{err}"
    );
}

#[test]
fn the_same_seed_gives_the_same_tokens_five_times() {
    let run = |seed: &str| {
        let out = lamina(&[
            "run",
            "-m",
            &smollm2(),
            "-p",
            "Once upon a time",
            "-n",
            "12",
            "--temp",
            "1.0",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
            "--seed",
            seed,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let first = run("42");
    for _ in 0..4 {
        assert_eq!(run("42"), first);
    }
    let others: Vec<String> = ["1", "2", "3"].iter().map(|s| run(s)).collect();
    assert!(
        others.iter().any(|o| *o != first),
        "three other seeds all gave {first:?}"
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let prompt = "word ".repeat(100);
    let out = lamina(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        &prompt,
        "-c",
        "32",
        "-n",
        "4",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("context holds 32") && err.contains("--ctx-size"),
        "{err}"
    );
}

#[test]
fn stop_strings_end_generation_and_are_not_printed() {
    let out = lamina(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "The capital of France is",
        "-n",
        "16",
        "--temp",
        "0",
        "--stop",
        ".",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "The capital of France is Paris");
    assert!(text(&out.stderr).contains("StopString"));
}

#[test]
fn chat_keeps_history_and_ends_at_end_of_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(["chat", "-m", &smollm2(), "--temp", "0", "-n", "24"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Germany?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Paris") && s.contains("Berlin"), "{s}");
}

#[test]
fn tokenize_prints_ids() {
    let out = lamina(&[
        "tokenize",
        "-m",
        &smollm2(),
        "--ids-only",
        "The capital of France is",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[504, 3575, 282, 4649, 314]");
}

#[test]
fn inspect_reports_both_real_ggufs_and_a_sharded_folder() {
    let tiny = testdata::file("tiny/llama3-tiny").unwrap();
    let qwen = testdata::file(testdata::QWEN_CODER).unwrap();
    for (m, family, shards) in [
        (smollm2(), "Llama", 1),
        (qwen.to_string_lossy().into_owned(), "Qwen2", 1),
        (tiny.to_string_lossy().into_owned(), "Llama", 3),
    ] {
        let out = lamina(&["inspect", "--json", &m]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["family"], family, "{m}");
        assert_eq!(j["files"].as_array().unwrap().len(), shards, "{m}");
        assert!(j["memory"]["weights_bytes"].as_u64().unwrap() > 0);
        assert!(
            j["backends"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["backend"] == "wgpu" && b["can_run"] == true),
            "{m}"
        );
        assert!(j["tokenizer"].as_str().is_some());
    }
}

#[test]
fn a_folder_without_a_tokenizer_is_a_clear_error() {
    let src = testdata::file("tiny/qwen25-tiny").unwrap();
    let dir = test_dir("notok");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let out = lamina(&["run", "-m", dir.to_str().unwrap(), "-p", "x", "-n", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no tokenizer.json"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_and_missing_models_are_errors() {
    let out = lamina(&["run", "-m", "/nonexistent/model.gguf", "-p", "x"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/model.gguf"));
    let out = lamina(&["run", "-m", &smollm2(), "-p", "x", "--top-p", "1.5"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--top-p"));
    let out = lamina(&["run", "-m", "nobody/no-such-model", "-p", "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("looked"),
        "{}",
        text(&out.stderr)
    );
}
