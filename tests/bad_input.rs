//! Broken and unsupported input: each case gives an error that names the problem, never a
//! panic and never an allocation sized by an unchecked header field. Every bad file is made
//! here, in a temporary folder.

use lamina::dtype::DType;
use lamina::model::resolve::open;
use lamina::weights::gguf::{self, Metadata, Value};
use lamina::weights::WeightStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;

use common::gguf::{f32_tensors, Dims};

fn test_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("lamina-bad-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The error text of a result that must fail.
fn err<T>(r: lamina::Result<T>) -> String {
    match r {
        Ok(_) => panic!("accepted bad input"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error does not mention {p:?}: {msg}");
    }
}

// vocab, hidden, heads, kv heads, head_dim, intermediate
const V: usize = 64;
const H: usize = 32;
const NH: usize = 4;
const KV: usize = 2;
const HD: usize = 8;
const FF: usize = 48;

/// The tensors of a one-layer llama: (name, shape).
fn llama_shapes() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("token_embd.weight", vec![V, H]),
        ("blk.0.attn_norm.weight", vec![H]),
        ("blk.0.attn_q.weight", vec![NH * HD, H]),
        ("blk.0.attn_k.weight", vec![KV * HD, H]),
        ("blk.0.attn_v.weight", vec![KV * HD, H]),
        ("blk.0.attn_output.weight", vec![H, NH * HD]),
        ("blk.0.ffn_norm.weight", vec![H]),
        ("blk.0.ffn_gate.weight", vec![FF, H]),
        ("blk.0.ffn_up.weight", vec![FF, H]),
        ("blk.0.ffn_down.weight", vec![H, FF]),
        ("output_norm.weight", vec![H]),
    ]
}

fn llama_meta(arch: &str) -> Metadata {
    let d = Dims {
        hidden: H,
        ff: FF,
        layers: 1,
        heads: NH,
        kv_heads: KV,
        ctx: 128,
        vocab: V,
    };
    common::gguf::llama_meta(arch, "tiny", &d)
}

/// A valid one-layer llama GGUF (f32), with `shapes` in place of the usual tensors.
fn llama_gguf_with(meta: &Metadata, shapes: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(_, s)| vec![0x3f; s.iter().product::<usize>() * 4])
        .collect();
    gguf::encode(meta, &f32_tensors(shapes, &data)).unwrap()
}

fn llama_gguf() -> Vec<u8> {
    llama_gguf_with(&llama_meta("llama"), &llama_shapes())
}

/// Where a tensor's descriptor fields are: (start of n_dims, start of type, start of offset).
fn descriptor_fields(bytes: &[u8], name: &str) -> (usize, usize, usize) {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("descriptor present")
        + key.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    (at, ty, ty + 4)
}

fn parse(bytes: &[u8]) -> String {
    err(gguf::parse(bytes, "bad.gguf"))
}

#[test]
fn the_valid_base_file_loads() {
    // The broken files below are this one with one thing changed.
    let h = gguf::parse(&llama_gguf(), "good.gguf").unwrap();
    assert_eq!(h.tensors.len(), llama_shapes().len());
    let dir = test_dir("good");
    let path = dir.join("m.gguf");
    std::fs::write(&path, llama_gguf()).unwrap();
    open(path.to_str().unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_gguf_at_several_cut_points() {
    let bytes = llama_gguf();
    let h = gguf::parse(&bytes, "x").unwrap();
    let (in_descriptors, _, _) = descriptor_fields(&bytes, "blk.0.attn_k.weight");
    let last = h.tensors.last().unwrap();
    let cuts = [
        0,
        2,
        6,
        12,
        20,
        30,              // inside the metadata
        in_descriptors,  // inside the tensor descriptors
        h.data_offset,   // no tensor data at all
        last.offset + 1, // inside the last tensor
        bytes.len() - 1, // one byte short
    ];
    for cut in cuts {
        let msg = parse(&bytes[..cut]);
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
    // And through the file API.
    let dir = test_dir("truncated");
    let path = dir.join("cut.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = err(WeightStore::open(&path));
    assert_has(&msg, &[&path.display().to_string(), "truncated"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_claiming_more_tensors_than_the_file_holds() {
    let mut bytes = llama_gguf();
    bytes[8..16].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["tensor count", &(u64::MAX / 3).to_string()],
    );
}

#[test]
fn gguf_claiming_more_metadata_than_the_file_holds() {
    let mut bytes = llama_gguf();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["metadata key/value count", &(1u64 << 40).to_string()],
    );
}

#[test]
fn gguf_string_and_array_lengths_are_bounded() {
    let mut meta = llama_meta("llama");
    meta.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(vec![Value::String("a".into()); 3]),
    );
    let bytes = llama_gguf_with(&meta, &llama_shapes());
    // The array length field follows the key and the item type.
    let key = b"tokenizer.ggml.tokens";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4;
    let mut huge_array = bytes.clone();
    huge_array[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert_has(
        &parse(&huge_array),
        &["array length", "tokenizer.ggml.tokens"],
    );
    let mut huge_string = bytes;
    huge_string[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_has(
        &parse(&huge_string),
        &["string length", "tokenizer.ggml.tokens"],
    );
}

#[test]
fn gguf_tensor_past_the_end_of_the_file() {
    let mut bytes = llama_gguf();
    let (_, _, offset) = descriptor_fields(&bytes, "blk.0.ffn_up.weight");
    bytes[offset..offset + 8].copy_from_slice(&(1u64 << 30).to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["blk.0.ffn_up.weight", "past the end of the file"],
    );
    // An offset so large that offset + size overflows.
    bytes[offset..offset + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["blk.0.ffn_up.weight", "past the end of the file"],
    );
}

#[test]
fn gguf_absurd_dimensions_overflow() {
    let mut bytes = llama_gguf();
    let (dims, _, _) = descriptor_fields(&bytes, "blk.0.attn_q.weight");
    // ne[0] and ne[1] both near 2^40: their product overflows 64 bits.
    bytes[dims + 4..dims + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    bytes[dims + 12..dims + 20].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_has(&parse(&bytes), &["blk.0.attn_q.weight", "overflow"]);
    let (dims, _, _) = descriptor_fields(&bytes, "blk.0.attn_k.weight");
    bytes[dims..dims + 4].copy_from_slice(&9u32.to_le_bytes());
    assert_has(&parse(&bytes), &["blk.0.attn_k.weight", "9 dimensions"]);
}

#[test]
fn gguf_unknown_dtype_id() {
    let mut bytes = llama_gguf();
    let (_, ty, _) = descriptor_fields(&bytes, "blk.0.attn_v.weight");
    bytes[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["blk.0.attn_v.weight", "unknown GGML tensor type id 99"],
    );
}

#[test]
fn gguf_quantized_rows_not_whole_blocks() {
    let mut bytes = llama_gguf();
    let (_, ty, _) = descriptor_fields(&bytes, "blk.0.attn_v.weight");
    // Q4_K (id 12) blocks hold 256 elements; these rows have 32.
    bytes[ty..ty + 4].copy_from_slice(&12u32.to_le_bytes());
    assert_has(
        &parse(&bytes),
        &["blk.0.attn_v.weight", "blocks of 256", "32"],
    );
}

#[test]
fn gguf_invalid_utf8_in_metadata_string() {
    let mut bytes = llama_gguf();
    let name = b"\x04\0\0\0\0\0\0\0tiny";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + 8;
    bytes[at + 1] = 0xFF;
    assert_has(&parse(&bytes), &["general.name", "not valid UTF-8"]);
}

#[test]
fn gguf_version_1_is_refused() {
    let mut bytes = llama_gguf();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_has(&parse(&bytes), &["version 1", "convert"]);
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert_has(&parse(&bytes), &["version 7", "2 and 3"]);
}

#[test]
fn gguf_big_endian_is_refused() {
    let mut bytes = llama_gguf();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert_has(&parse(&bytes), &["big-endian"]);
}

#[test]
fn not_a_gguf_file() {
    assert_has(&parse(b"PK\x03\x04 a zip file"), &["not a GGUF file"]);
}

#[test]
fn gguf_unsupported_architecture() {
    let dir = test_dir("gemma-gguf");
    let path = dir.join("gemma.gguf");
    std::fs::write(
        &path,
        llama_gguf_with(&llama_meta("gemma3"), &llama_shapes()),
    )
    .unwrap();
    let msg = err(open(path.to_str().unwrap()));
    let file = path.display().to_string();
    assert_has(
        &msg,
        &[&file, "'gemma3'", "not supported", "llama", "qwen2", "phi3"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_mixture_of_experts_is_refused() {
    let dir = test_dir("moe");
    let path = dir.join("mixtral.gguf");
    let mut meta = llama_meta("llama");
    meta.insert("llama.expert_count".into(), Value::U32(8));
    std::fs::write(&path, llama_gguf_with(&meta, &llama_shapes())).unwrap();
    let msg = err(open(path.to_str().unwrap()));
    assert_has(&msg, &["llama.expert_count is 8", "mixture-of-experts"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_missing_tensor() {
    let dir = test_dir("missing");
    let path = dir.join("m.gguf");
    let shapes: Vec<_> = llama_shapes()
        .into_iter()
        .filter(|(n, _)| *n != "blk.0.ffn_down.weight")
        .collect();
    std::fs::write(&path, llama_gguf_with(&llama_meta("llama"), &shapes)).unwrap();
    let msg = err(open(path.to_str().unwrap()));
    assert_has(
        &msg,
        &["missing tensor 'blk.0.ffn_down.weight'", "[32, 48]"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_wrong_shape() {
    let dir = test_dir("shape");
    let path = dir.join("m.gguf");
    let shapes: Vec<_> = llama_shapes()
        .into_iter()
        .map(|(n, s)| match n {
            "blk.0.attn_k.weight" => (n, vec![NH * HD, H]),
            _ => (n, s),
        })
        .collect();
    std::fs::write(&path, llama_gguf_with(&llama_meta("llama"), &shapes)).unwrap();
    let msg = err(open(path.to_str().unwrap()));
    assert_has(
        &msg,
        &["blk.0.attn_k.weight", "shape [32, 32]", "expected [16, 32]"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- safetensors ------------------------------------------------------------------------

/// A single-tensor safetensors file with a hand-written header.
fn safetensors_file(dtype: &str, shape: &[usize], data_len: usize) -> Vec<u8> {
    let n: usize = shape.iter().product::<usize>() * 2;
    let header = serde_json::json!({
        "__metadata__": {"format": "pt"},
        "model.embed_tokens.weight": {"dtype": dtype, "shape": shape, "data_offsets": [0, n]}
    })
    .to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(7u8, data_len));
    out
}

fn open_safetensors(name: &str, bytes: &[u8]) -> (String, PathBuf) {
    let dir = test_dir(name);
    let path = dir.join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let msg = err(WeightStore::open(&path));
    std::fs::remove_dir_all(&dir).unwrap();
    (msg, path)
}

#[test]
fn the_valid_safetensors_base_file_loads() {
    let dir = test_dir("st-good");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, safetensors_file("BF16", &[4, 8], 64)).unwrap();
    let s = WeightStore::open(&path).unwrap();
    let t = s.require("token_embd.weight").unwrap();
    assert_eq!(
        (t.dtype, t.shape.clone(), t.len),
        (DType::BF16, vec![4, 8], 64)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_safetensors() {
    let good = safetensors_file("BF16", &[4, 8], 64);
    let (msg, path) = open_safetensors("st-trunc", &good[..good.len() - 10]);
    assert_has(
        &msg,
        &[
            &path.display().to_string(),
            "model.embed_tokens.weight",
            "truncated",
        ],
    );
    let (msg, _) = open_safetensors("st-trunc-head", &good[..30]);
    assert_has(&msg, &["header length", "larger than"]);
    let (msg, _) = open_safetensors("st-trunc-len", &good[..5]);
    assert_has(&msg, &["truncated", "5 bytes"]);
}

#[test]
fn safetensors_header_length_larger_than_the_file() {
    let mut bytes = safetensors_file("F16", &[4, 8], 64);
    bytes[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let (msg, _) = open_safetensors("st-header", &bytes);
    assert_has(&msg, &["header length 1152921504606846976", "larger than"]);
}

#[test]
fn safetensors_unknown_dtype() {
    for dtype in ["I32", "F64", "BOOL", "F8_E5M2", "Q9_X"] {
        let (msg, path) = open_safetensors("st-dtype", &safetensors_file(dtype, &[4, 8], 64));
        assert_has(
            &msg,
            &[
                &path.display().to_string(),
                "model.embed_tokens.weight",
                dtype,
                "F32, F16, BF16, I8, F8_E4M3",
            ],
        );
    }
}

#[test]
fn safetensors_size_disagrees_with_shape() {
    // F32 [4, 8] needs 128 bytes; the offsets span 64.
    let (msg, _) = open_safetensors("st-size", &safetensors_file("F32", &[4, 8], 64));
    assert_has(
        &msg,
        &["model.embed_tokens.weight", "needs 128 bytes", "span 64"],
    );
}

#[test]
fn sharded_index_naming_a_missing_shard_tensor() {
    let dir = test_dir("st-index");
    std::fs::write(
        dir.join("a.safetensors"),
        safetensors_file("F16", &[4, 8], 64),
    )
    .unwrap();
    let index = serde_json::json!({"weight_map": {
        "model.embed_tokens.weight": "a.safetensors",
        "model.norm.weight": "a.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_has(
        &err(WeightStore::open(&dir)),
        &["model.norm.weight", "a.safetensors", "does not hold it"],
    );
    let escape = serde_json::json!({"weight_map": {"model.norm.weight": "../x.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), escape.to_string()).unwrap();
    assert_has(
        &err(WeightStore::open(&dir)),
        &["../x.safetensors", "not a file name in this folder"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- config.json ------------------------------------------------------------------------

/// A folder with a valid one-tensor safetensors file and the given config.json text.
fn folder_with_config(name: &str, config: &str) -> (PathBuf, String) {
    let dir = test_dir(name);
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_file("F16", &[4, 8], 64),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let msg = err(open(dir.to_str().unwrap()));
    std::fs::remove_dir_all(&dir).unwrap();
    (dir, msg)
}

#[test]
fn malformed_config_json() {
    let (dir, msg) = folder_with_config("cfg-bad", "{\"hidden_size\": 32,");
    assert_has(
        &msg,
        &[
            &dir.join("config.json").display().to_string(),
            "not valid JSON",
        ],
    );
    let (_, msg) = folder_with_config(
        "cfg-type",
        r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": "wide"}"#,
    );
    assert_has(&msg, &["'hidden_size'", "whole number", "\"wide\""]);
    let (_, msg) = folder_with_config(
        "cfg-missing",
        r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "num_attention_heads": 4}"#,
    );
    assert_has(&msg, &["config.json has no 'max_position_embeddings'"]);
}

#[test]
fn gemma3_config_is_refused() {
    let (_, msg) = folder_with_config(
        "cfg-gemma",
        r#"{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
            "text_config": {"hidden_size": 2560}}"#,
    );
    assert_has(
        &msg,
        &[
            "Gemma3ForConditionalGeneration",
            "gemma3",
            "not supported",
            "LlamaForCausalLM",
            "Phi3ForCausalLM",
        ],
    );
}

#[test]
fn mamba_config_is_refused() {
    let (_, msg) = folder_with_config(
        "cfg-mamba",
        r#"{"architectures": ["MambaForCausalLM"], "model_type": "mamba", "d_model": 768}"#,
    );
    assert_has(
        &msg,
        &["MambaForCausalLM", "not supported", "Qwen2ForCausalLM"],
    );
}

#[test]
fn unsupported_rope_scaling_is_refused() {
    let (_, msg) = folder_with_config(
        "cfg-yarn",
        r#"{"architectures": ["Qwen2ForCausalLM"], "vocab_size": 4, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}}"#,
    );
    assert_has(&msg, &["'yarn'", "llama3, linear, dynamic and su/longrope"]);
}
