//! `lamina quantize`: tiny safetensors models (scripts/make_tiny_models.py) and the real
//! SmolLM2 GGUF through the binary, the results loaded back in our engine (logits against the
//! source on the reference backend, tokenizer ids against tokenizer.json), read by llama.cpp's
//! Python reader (gguf-py) with its dequantization compared to ours bit for bit, llama.cpp's
//! Q4_K_M type rules, and bad input.

use lamina::convert::types_for;
use lamina::dtype::DType;
use lamina::generate::{EngineOptions, InferenceAdapter};
use lamina::quant::dequantize_row;
use lamina::sample::argmax;
use lamina::select::{open, BackendChoice};
use lamina::testdata;
use lamina::tokenizer::Tokenizer;
use lamina::weights::gguf::{
    self, GgufWriter, Metadata, MetadataExt, TensorData, TensorDesc, Value,
};
use lamina::weights::WeightStore;
use serde_json::json;

mod common;

use common::bin::{lamina, test_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny(name: &str) -> PathBuf {
    testdata::file(&format!("tiny/{name}"))
        .unwrap_or_else(|e| panic!("{e} (and scripts/make_tiny_models.py)"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `lamina quantize IN OUT --type T` and checks it succeeded.
fn quantize(input: &Path, out: &Path, ty: &str) {
    let o = lamina(&["quantize", s(input), s(out), "--type", ty]);
    assert!(
        o.status.success(),
        "quantize {} -> {ty} failed: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.is_file() && !Path::new(&format!("{}.tmp", s(out))).exists());
}

// ---- tokenizers for the tiny models, whose own are word-level (no GGUF form) ----

/// A copy of a tiny model folder (weights linked, not copied) with a BPE tokenizer.json of
/// the model's vocabulary: byte-level (GPT-2 style) or SentencePiece-style (byte fallback).
fn with_bpe_tokenizer(model: &str, byte_level: bool) -> PathBuf {
    let src = tiny(model);
    let dir = test_dir(model);
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if name != "tokenizer.json" && name != "tokenizer_config.json" {
            std::fs::hard_link(&p, dir.join(name))
                .or_else(|_| std::fs::copy(&p, dir.join(name)).map(|_| ()))
                .unwrap();
        }
    }
    let letters: Vec<String> = ('a'..='z').map(String::from).collect();
    let mut vocab = serde_json::Map::new();
    let mut merges = vec![];
    let add = |t: String, vocab: &mut serde_json::Map<String, serde_json::Value>| {
        let id = vocab.len();
        vocab.insert(t, json!(id));
    };
    let specials = ["<unk>", "<s>", "</s>"];
    let tok = if byte_level {
        for b in 0..=255u8 {
            add(gpt2_byte(b).to_string(), &mut vocab);
        }
        for a in &letters {
            for b in &letters {
                add(format!("{a}{b}"), &mut vocab);
                merges.push(format!("{a} {b}"));
            }
            add(format!("Ġ{a}"), &mut vocab);
            merges.push(format!("Ġ {a}"));
        }
        let added: Vec<_> = specials
            .iter()
            .map(|t| {
                add(t.to_string(), &mut vocab);
                json!({"id": vocab[*t], "content": t, "special": true, "single_word": false,
                       "lstrip": false, "rstrip": false, "normalized": false})
            })
            .collect();
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                        "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        })
    } else {
        for t in specials {
            add(t.to_string(), &mut vocab);
        }
        for b in 0..=255u8 {
            add(format!("<0x{b:02X}>"), &mut vocab);
        }
        add("▁".into(), &mut vocab);
        for a in &letters {
            add(a.clone(), &mut vocab);
        }
        for a in &letters {
            add(format!("▁{a}"), &mut vocab);
            merges.push(format!("▁ {a}"));
            for b in &letters {
                add(format!("{a}{b}"), &mut vocab);
                merges.push(format!("{a} {b}"));
            }
        }
        // Phi-3's end tokens swallow the whitespace after them (its tokenizer.json says so;
        // llama.cpp and our GGUF reader do it by model name).
        let rstrip = |t: &str| model.starts_with("phi3") && t == "</s>";
        let added: Vec<_> = specials
            .iter()
            .map(|t| {
                json!({"id": vocab[*t], "content": t, "special": true, "single_word": false,
                       "lstrip": false, "rstrip": rstrip(t), "normalized": false})
            })
            .collect();
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            // The form Llama 2 and TinyLlama ship: the prefix mark before every piece of
            // text, after special tokens too, as llama.cpp's SentencePiece does. (transformers'
            // newer Metaspace form prefixes only the first piece and not a text that starts
            // with a space: llama.cpp splits those cases differently, whatever the GGUF says.)
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        })
    };
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let cfg = json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": !byte_level,
                     "chat_template": "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"});
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    dir
}

/// GPT-2's byte-to-character table.
fn gpt2_byte(b: u8) -> char {
    let printable = |b: u8| matches!(b, 33..=126 | 161..=172 | 174..=255);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

// ---- checks ----

const TEXTS: &[&str] = &[
    "hello world",
    "The capital of France is Paris.",
    "  two  spaces, digits 12345 and ünïcödé 你好 🦙\nnew line",
    "<s>special</s> in text",
];

/// The GGUF's tokenizer gives the ids tokenizer.json gives.
fn assert_same_tokenizer(folder: &Path, gguf_file: &Path) {
    let json = folder.join("tokenizer.json");
    let cfg = folder.join("tokenizer_config.json");
    let hf = Tokenizer::from_files(&json, cfg.is_file().then_some(cfg.as_path())).unwrap();
    let store = WeightStore::open(gguf_file).unwrap();
    let ours = Tokenizer::from_gguf(&store.meta).unwrap();
    assert_eq!(ours.bos_id(), hf.bos_id());
    assert_eq!(ours.eos_id(), hf.eos_id());
    assert_eq!(ours.adds_bos(), hf.adds_bos());
    for t in TEXTS {
        for special in [false, true] {
            assert_eq!(
                ours.encode(t, true, special).unwrap(),
                hf.encode(t, true, special).unwrap(),
                "{}: {t:?} (parse_special {special})",
                gguf_file.display()
            );
        }
    }
}

fn logits(model: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let opts = EngineOptions {
        ctx_size: 64,
        batch: 64,
    };
    let mut a: Box<dyn InferenceAdapter> = open(s(model), BackendChoice::Reference, opts).unwrap();
    a.load().unwrap();
    let v = a.vocab_size();
    let flat = a.prefill_rows(ids, ids.len()).unwrap();
    flat.chunks(v).map(|r| r.to_vec()).collect()
}

/// max |a - b| / max |b| over every position, and whether top-1 agrees at every position
/// whose reference margin is decisive.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, bool) {
    let mut worst = 0f32;
    let mut top1 = true;
    for (x, y) in a.iter().zip(b) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        worst = worst.max(d / scale);
        let mut sorted = y.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // A near tie (margin within twice this position's error) may flip either way.
        let decisive = sorted[0] - sorted[1] > 2.0 * d;
        top1 &= argmax(x) == argmax(y) || !decisive;
    }
    (worst, top1)
}

/// gguf-py reads the file and its dequantization of every tensor equals ours bit for bit.
fn assert_gguf_py_agrees(file: &Path) {
    let store = WeightStore::open(file).unwrap();
    let mut dump = Vec::new();
    for t in store.tensors.values() {
        let mut v = vec![0f32; t.elements()];
        let cols = t.cols();
        let bytes = store.bytes(t);
        let row = t.dtype.row_bytes(cols).unwrap();
        for (r, out) in v.chunks_mut(cols).enumerate() {
            dequantize_row(t.dtype, &bytes[r * row..(r + 1) * row], out).unwrap();
        }
        dump.extend((t.file_name.len() as u32).to_le_bytes());
        dump.extend(t.file_name.as_bytes());
        dump.extend((v.len() as u64).to_le_bytes());
        dump.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    let dump_path = PathBuf::from(format!("{}.ours.bin", s(file)));
    std::fs::write(&dump_path, dump).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf_read_check.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(file)
        .arg(&dump_path)
        .args(["--expect-key", "general.file_type"])
        .args(["--expect-key", "general.quantization_version"])
        .args(["--expect-key", "tokenizer.ggml.tokens"])
        .output()
        .expect("python3 runs (scripts/setup.sh installs it with gguf==0.19.0)");
    let _ = std::fs::remove_file(&dump_path);
    assert!(
        o.status.success(),
        "gguf-py check of {} failed (exit {:?}): {}{}",
        file.display(),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{}", String::from_utf8_lossy(&o.stdout).trim());
}

/// Token ids every tiny model has (their vocabularies have 1000 ids or more).
fn prompt_ids() -> Vec<u32> {
    (0..24).map(|i| ((i * 7919 + 13) % 1000) as u32).collect()
}

/// f32 GGUF = the safetensors model (tight), q8_0 close with top-1 agreement, q4_k_m loads;
/// the tokenizer and gguf-py agree on every file.
fn roundtrip(folder: &Path, name: &str) {
    let dir = test_dir(name);
    let ids = prompt_ids();
    let want = logits(folder, &ids);
    for (ty, bound, need_top1) in [
        ("f32", 1e-6, true),
        ("q8_0", 6e-2, true),
        ("q4_k_m", 0.5, false),
    ] {
        let out = dir.join(format!("{name}-{ty}.gguf"));
        quantize(folder, &out, ty);
        let got = logits(&out, &ids);
        let (err, top1) = compare(&got, &want);
        println!("{name} {ty}: max relative logit error {err:.2e}, top-1 agrees: {top1}");
        assert!(err <= bound, "{name} {ty}: error {err} over {bound}");
        assert!(top1 || !need_top1, "{name} {ty}: top-1 differs");
        assert_same_tokenizer(folder, &out);
        assert_gguf_py_agrees(&out);
    }
}

#[test]
fn llama3_tiny_sharded_bf16_real_tokenizer() {
    roundtrip(&tiny("llama3-tiny"), "llama3");
    let out = test_dir("llama3-meta").join("m.gguf");
    quantize(&tiny("llama3-tiny"), &out, "q4_k_m");
    let st = WeightStore::open(&out).unwrap();
    assert_eq!(st.meta.get_str("tokenizer.ggml.pre").unwrap(), "llama-bpe");
    assert_eq!(st.meta.get_u32("general.file_type").unwrap(), 15);
    assert!(st.meta.get_str("tokenizer.chat_template").is_ok());
    assert_eq!(st.require("rope_freqs.weight").unwrap().dtype, DType::F32);
}

#[test]
fn qwen2_tiny_f32_bias_tied_byte_level() {
    roundtrip(&with_bpe_tokenizer("qwen25-tiny", true), "qwen2");
}

#[test]
fn phi3_tiny_f16_fused_longrope_sentencepiece() {
    roundtrip(&with_bpe_tokenizer("phi3-tiny", false), "phi3");
}

#[test]
fn tinyllama_tiny_bf16_q4_k_m_types() {
    let folder = with_bpe_tokenizer("tinyllama-tiny", false);
    roundtrip(&folder, "tinyllama");
    let out = test_dir("tinyllama-types").join("m.gguf");
    quantize(&folder, &out, "q4_k_m");
    let st = WeightStore::open(&out).unwrap();
    let ty = |n: &str| st.require(n).unwrap().dtype;
    // 2 layers: layer 1 is a "more bits" layer, layer 0 is not. ffn_down rows (1408) are not
    // a multiple of 256: Q6_K falls back to Q8_0 and Q4_K to Q5_0.
    assert_eq!(ty("output.weight"), DType::Q6_K);
    assert_eq!(ty("token_embd.weight"), DType::Q4_K);
    assert_eq!(ty("blk.0.attn_v.weight"), DType::Q4_K);
    assert_eq!(ty("blk.1.attn_v.weight"), DType::Q6_K);
    assert_eq!(ty("blk.0.ffn_down.weight"), DType::Q5_0);
    assert_eq!(ty("blk.1.ffn_down.weight"), DType::Q8_0);
    assert_eq!(ty("blk.0.attn_q.weight"), DType::Q4_K);
    assert_eq!(ty("blk.0.attn_norm.weight"), DType::F32);
}

/// llama.cpp's Q4_K_M on a Llama-3-8B shape: 32 layers, attn_v and ffn_down Q6_K on the 16
/// "more bits" layers, output Q6_K, everything else Q4_K, norms F32.
#[test]
fn q4_k_m_rules_on_an_8b_shape() {
    let mut owned: Vec<(String, Vec<usize>)> = vec![
        ("token_embd.weight".into(), vec![128256, 4096]),
        ("output.weight".into(), vec![128256, 4096]),
        ("output_norm.weight".into(), vec![4096]),
    ];
    for l in 0..32 {
        for (n, shape) in [
            ("attn_q", vec![4096, 4096]),
            ("attn_k", vec![1024, 4096]),
            ("attn_v", vec![1024, 4096]),
            ("attn_output", vec![4096, 4096]),
            ("ffn_gate", vec![14336, 4096]),
            ("ffn_up", vec![14336, 4096]),
            ("ffn_down", vec![4096, 14336]),
            ("attn_norm", vec![4096]),
        ] {
            owned.push((format!("blk.{l}.{n}.weight"), shape));
        }
    }
    let tensors: Vec<(&str, &[usize])> = owned
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let types = types_for("q4_k_m", "llama", 32, &tensors).unwrap();
    let count = |d: DType| types.iter().filter(|&&t| t == d).count();
    assert_eq!(count(DType::Q6_K), 1 + 16 + 16);
    assert_eq!(count(DType::F32), 1 + 32);
    assert_eq!(count(DType::Q4_K), types.len() - 33 - 33);
    let of = |n: &str| types[owned.iter().position(|o| o.0 == n).unwrap()];
    assert_eq!(of("token_embd.weight"), DType::Q4_K);
    for (l, more) in [
        (0, true),
        (3, true),
        (4, false),
        (6, true),
        (27, true),
        (26, false),
    ] {
        let want = if more { DType::Q6_K } else { DType::Q4_K };
        assert_eq!(of(&format!("blk.{l}.attn_v.weight")), want, "layer {l}");
        assert_eq!(of(&format!("blk.{l}.ffn_down.weight")), want, "layer {l}");
    }
    // Q5_K_M widens the same layers; Q8_0 keeps the output Q8_0; tied embeddings count as
    // the output.
    let q5 = types_for("q5_k_m", "llama", 32, &tensors).unwrap();
    assert_eq!(q5.iter().filter(|&&t| t == DType::Q6_K).count(), 33);
    let q8 = types_for("q8_0", "llama", 32, &tensors).unwrap();
    assert!(q8.iter().all(|&t| t == DType::Q8_0 || t == DType::F32));
    let tied = types_for("q4_k_m", "llama", 32, &tensors[..1]).unwrap();
    assert_eq!(tied, [DType::Q6_K]);
}

/// The real SmolLM2 (Q4_1 with Q8_0 embeddings) requantized to Q8_0 still knows Paris, and
/// keeps its metadata.
#[test]
fn smollm2_requantized_to_q8_0_completes_paris() {
    let src = testdata::file(testdata::SMOLLM2).unwrap();
    let out = test_dir("smol").join("smol-q8_0.gguf");
    quantize(&src, &out, "q8_0");
    let a = WeightStore::open(&src).unwrap();
    let b = WeightStore::open(&out).unwrap();
    for (k, v) in &a.meta {
        if k != "general.file_type" {
            assert_eq!(b.meta.get(k), Some(v), "metadata {k}");
        }
    }
    assert_eq!(b.meta.get_u32("general.file_type").unwrap(), 7);
    assert!(b
        .tensors
        .values()
        .all(|t| matches!(t.dtype, DType::Q8_0 | DType::F32)));
    let opts = EngineOptions {
        ctx_size: 64,
        batch: 64,
    };
    let mut m = open(s(&out), BackendChoice::Reference, opts).unwrap();
    m.load().unwrap();
    let mut ids = m.encode("The capital of France is", true, false).unwrap();
    let mut logits = m.prefill(&ids).unwrap();
    let start = ids.len();
    for _ in 0..3 {
        let id = argmax(&logits);
        ids.push(id);
        logits = m.decode_token(id).unwrap();
    }
    let text = m.decode(&ids[start..]).unwrap();
    assert!(text.contains("Paris"), "continued with {text:?}");
    assert_gguf_py_agrees(&out);
}

// ---- bad input ----

fn fails_with(args: &[&str], needle: &str) {
    let o = lamina(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_refused_before_writing() {
    let dir = test_dir("bad");
    let out = dir.join("out.gguf");
    let smol = testdata::file(testdata::SMOLLM2).unwrap();
    let o = s(&out);
    fails_with(
        &["quantize", s(&smol), o, "--type", "q4_k_x"],
        "valid types: f32, f16, bf16, q8_0",
    );
    fails_with(
        &["quantize", "/nonexistent/model.gguf", o, "--type", "q8_0"],
        "does not exist",
    );
    let nodir = dir.join("missing/out.gguf");
    fails_with(
        &["quantize", s(&smol), s(&nodir), "--type", "q8_0"],
        "does not exist; create it first",
    );
    fails_with(
        &["quantize", s(&smol), s(&dir), "--type", "q8_0"],
        "is a folder",
    );
    fails_with(
        &["quantize", s(&tiny("w8a8-tiny")), o, "--type", "q8_0"],
        "quantize the model's bf16/f16/f32 original",
    );
    // Rows of 48 elements: no whole Q8_0 blocks and no fallback for Q8_0.
    let odd = dir.join("odd.gguf");
    let mut meta = Metadata::new();
    meta.insert("general.architecture".into(), Value::String("llama".into()));
    meta.insert("llama.block_count".into(), Value::U32(1));
    let w: Vec<u8> = (0..4 * 48)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    let t = TensorData {
        name: "blk.0.attn_q.weight",
        dtype: DType::F32,
        shape: &[4, 48],
        bytes: &w,
    };
    std::fs::write(&odd, gguf::encode(&meta, &[t]).unwrap()).unwrap();
    fails_with(
        &["quantize", s(&odd), o, "--type", "q8_0"],
        "rows of 48 elements",
    );
    assert!(!out.exists() && !dir.join("out.gguf.tmp").exists());
    // A K-quant falls back (to F16 here: 48 is no multiple of 32 either).
    quantize(&odd, &out, "q4_k");
    let st = WeightStore::open(&out).unwrap();
    assert_eq!(st.require("blk.0.attn_q.weight").unwrap().dtype, DType::F16);
}

/// A writer dropped or finished before every tensor is complete leaves neither OUT nor
/// OUT.tmp; a complete one is renamed into place.
#[test]
fn partial_output_never_stays() {
    let dir = test_dir("partial");
    let out = dir.join("m.gguf");
    let tmp = dir.join("m.gguf.tmp");
    let mut meta = Metadata::new();
    meta.insert("general.architecture".into(), Value::String("llama".into()));
    let descs = [TensorDesc {
        name: "a.weight".into(),
        dtype: DType::F32,
        shape: vec![2, 4],
    }];
    let mut w = GgufWriter::create(&out, &meta, &descs).unwrap();
    w.write(&[0u8; 16]).unwrap();
    assert!(tmp.exists() && !out.exists());
    drop(w);
    assert!(!tmp.exists() && !out.exists());
    let mut w = GgufWriter::create(&out, &meta, &descs).unwrap();
    w.write(&[0u8; 16]).unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("16 of its 32 bytes"), "{e}");
    assert!(!tmp.exists() && !out.exists());
    let mut w = GgufWriter::create(&out, &meta, &descs).unwrap();
    assert!(w.write(&[0u8; 33]).is_err());
    w.write(&[1u8; 32]).unwrap();
    w.finish().unwrap();
    assert!(out.exists() && !tmp.exists());
    let st = WeightStore::open(&out).unwrap();
    assert_eq!(st.bytes(st.require("a.weight").unwrap()), &[1u8; 32]);
}
