//! Loading real and synthesized models: GGUF (the two real models, every vocabulary file),
//! safetensors folders (sharded llama3-style, fused Phi-3, int8 compressed-tensors), config
//! variants, and references resolved in a Hugging Face cache built here. GGUF files made by
//! the tests: loading_gguf.rs.

use lamina::backend::{Op, RopeLayout};
use lamina::dtype::DType;
use lamina::model::config::{Family, ModelConfig, RopeScaling};
use lamina::model::diagnose::Diagnosis;
use lamina::model::llama::Plan;
use lamina::model::resolve::{open, resolve_in};
use lamina::testdata;
use lamina::weights::gguf::MetadataExt;
use lamina::weights::{Format, WeightStore};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod common;

use common::bin::test_dir;

fn real(name: &str) -> PathBuf {
    testdata::file(name).unwrap_or_else(|e| panic!("{e}"))
}

/// layers, hidden, intermediate, heads, kv heads, head_dim, vocab, context
fn dims(c: &ModelConfig) -> [usize; 8] {
    [
        c.num_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.vocab_size,
        c.max_position_embeddings,
    ]
}

/// dtype, shape and bytes of a tensor that must exist.
fn desc(s: &WeightStore, name: &str) -> (DType, Vec<usize>, usize) {
    let t = s.require(name).unwrap();
    (t.dtype, t.shape.clone(), t.len)
}

fn dtypes(store: &WeightStore) -> BTreeSet<DType> {
    store.tensors.values().map(|t| t.dtype).collect()
}

#[test]
fn smollm2_gguf_loads() {
    let path = real(testdata::SMOLLM2);
    let m = open(path.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert_eq!(c.family, Family::Llama);
    assert_eq!(c.architecture, "llama");
    assert_eq!(c.variant, "SmolLM2");
    assert_eq!(dims(c), [30, 576, 1536, 9, 3, 64, 49152, 8192]);
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-5, 100000.0));
    assert_eq!(c.rope_scaling, None);
    // llama.cpp permuted Q/K rows for adjacent-pair rope.
    assert_eq!(c.rope_layout, RopeLayout::Normal);
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );

    let s = &m.store;
    assert_eq!(s.format, Format::Gguf);
    assert_eq!(s.tensors.len(), 272);
    assert_eq!(
        dtypes(s),
        BTreeSet::from([DType::F32, DType::Q4_1, DType::Q8_0])
    );
    let embd = (DType::Q8_0, vec![49152, 576], 49152 * 576 / 32 * 34);
    assert_eq!(desc(s, "token_embd.weight"), embd);
    let k = (DType::Q4_1, vec![192, 576], 192 * 576 / 32 * 20);
    assert_eq!(desc(s, "blk.29.attn_k.weight"), k);
    let embd = s.require("token_embd.weight").unwrap();
    // Zero copy: the bytes are the map's bytes.
    let map = &s.maps[0];
    let b = s.bytes(embd);
    assert_eq!(b.as_ptr(), map[embd.offset..].as_ptr());
    assert_eq!(
        s.total_bytes(),
        s.tensors.values().map(|t| t.len).sum::<usize>()
    );
    assert!(s.total_bytes() < map.len() && s.total_bytes() > 90_000_000);

    let ops = Plan::new(c, s).unwrap().tensor_ops();
    assert!(ops.contains(&("token_embd.weight".into(), Op::Embedding)));
    assert!(ops.contains(&("token_embd.weight".into(), Op::Matmul)));
    assert!(ops.contains(&("blk.3.attn_norm.weight".into(), Op::RmsNorm)));
    assert!(!ops.iter().any(|(_, op)| *op == Op::AddBias));
    assert_eq!(ops.len(), 1 + 1 + 30 * 9 + 1);

    let d = Diagnosis::new(&m);
    assert_eq!(
        d.parameters,
        s.tensors.values().map(|t| t.elements() as u64).sum::<u64>()
    );
    assert!(
        (134_000_000..136_000_000).contains(&d.parameters),
        "{}",
        d.parameters
    );
    assert_eq!(d.memory.weights_bytes, s.total_bytes() as u64);
    assert_eq!(
        d.memory.kv_f32_bytes_per_1k_tokens,
        2 * 30 * 3 * 64 * 4 * 1024
    );
    assert_eq!(
        d.memory.kv_f16_bytes_full_context,
        2 * 30 * 3 * 64 * 2 * 8192
    );
    assert_eq!(d.quantization, "GGUF file type Q4_1 (general.file_type 3)");
    let text = d.to_text();
    for want in ["SmolLM2", "Q4_1", "tied to the embedding", "per 1k tokens"] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["config"]["num_layers"], 30);
}

#[test]
fn qwen_coder_gguf_loads() {
    let path = real(testdata::QWEN_CODER);
    let m = open(path.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert_eq!(
        (c.family, c.architecture.as_str()),
        (Family::Qwen2, "qwen2")
    );
    assert_eq!(c.variant, "Qwen2.5-Coder");
    assert_eq!(dims(c), [24, 896, 4864, 14, 2, 64, 151936, 32768]);
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-6, 1_000_000.0));
    assert_eq!(c.rope_layout, RopeLayout::Neox);
    assert!(c.attention_bias);
    // This file stores output.weight (Q8_0) although the HF model ties it.
    assert!(!c.tie_word_embeddings);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(151643), vec![151645])
    );

    let s = &m.store;
    assert_eq!(s.tensors.len(), 291);
    assert_eq!(
        dtypes(s),
        BTreeSet::from([
            DType::F32,
            DType::Q4_K,
            DType::Q5_0,
            DType::Q6_K,
            DType::Q8_0
        ])
    );
    let out = (DType::Q8_0, vec![151936, 896], 151936 * 896 / 32 * 34);
    assert_eq!(desc(s, "output.weight"), out);
    assert_eq!(
        desc(s, "blk.0.attn_q.bias"),
        (DType::F32, vec![896], 896 * 4)
    );
    assert_eq!(
        s.require("blk.0.ffn_down.weight").unwrap().dtype,
        DType::Q6_K
    );

    let ops = Plan::new(c, s).unwrap().tensor_ops();
    assert!(ops.contains(&("blk.0.attn_v.bias".into(), Op::AddBias)));
    assert!(ops.contains(&("output.weight".into(), Op::Matmul)));
    assert!(!ops.contains(&("token_embd.weight".into(), Op::Matmul)));
    assert!(!ops.iter().any(|(n, _)| n.contains("attn_output.bias")));

    let d = Diagnosis::new(&m);
    assert_eq!(
        d.quantization,
        "GGUF file type Q4_K_M (general.file_type 15)"
    );
    let attention = d.groups.iter().find(|g| g.group == "attention").unwrap();
    let n: usize = attention.dtypes.iter().map(|x| x.tensors).sum();
    assert_eq!(n, 24 * 7);
}

#[test]
fn every_vocab_gguf_parses() {
    let dir = testdata::dir().join(testdata::VOCAB_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch_testdata.sh", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 19,
        "only {} vocab files in {}",
        files.len(),
        dir.display()
    );
    let mut versions = BTreeSet::new();
    for f in &files {
        let store = WeightStore::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let m = &store.meta;
        let tokens = m.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert!(tokens.len() > 1000, "{}", f.display());
        assert!(!m.get_str("tokenizer.ggml.model").unwrap().is_empty());
        versions.insert(u32::from_le_bytes(store.maps[0][4..8].try_into().unwrap()));
    }
    // Files gguf-rs-lib 0.3.3 refuses: version 2, and keys with a hyphen.
    assert!(versions.contains(&2) && versions.contains(&3));
    let cr = WeightStore::open(&dir.join("ggml-vocab-command-r.gguf")).unwrap();
    assert!(cr.meta.keys().any(|k| k.starts_with("command-r.")));
    let spm = WeightStore::open(&dir.join("ggml-vocab-llama-spm.gguf")).unwrap();
    assert_eq!(spm.meta.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(
        spm.meta
            .get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .len(),
        32000
    );
    let scores = spm.meta.get_f32_array("tokenizer.ggml.scores").unwrap();
    assert_eq!(scores.len(), 32000);
    // A typed read of the wrong type names the key and both types.
    let e = spm
        .meta
        .get_u32("tokenizer.ggml.model")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.ggml.model") && e.contains("string"),
        "{e}"
    );
}

// ---- safetensors folders written here -------------------------------------------------

/// Deterministic bytes that are not all alike.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn tensor(name: &str, dtype: Dtype, shape: &[usize]) -> Tensor {
    let n = shape.iter().product::<usize>() * dtype.bitsize() / 8;
    Tensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data: noise(n, name.len() as u64 * 31 + n as u64),
    }
}

fn write_safetensors(path: &Path, tensors: &[&Tensor]) {
    let views = tensors.iter().map(|t| {
        let v = TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap();
        (t.name.clone(), v)
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

const TINY: (usize, usize, usize, usize, usize, usize) = (64, 32, 4, 2, 8, 48); // vocab hidden heads kv hd ff

/// A two-layer llama in HF naming: bf16 embedding, f16/bf16 linears, f32 norms and head.
fn tiny_llama_tensors(layers: usize) -> Vec<Tensor> {
    let (v, h, nh, kv, hd, ff) = TINY;
    let mut t = vec![tensor("model.embed_tokens.weight", Dtype::BF16, &[v, h])];
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        t.push(tensor(&p("input_layernorm.weight"), Dtype::F32, &[h]));
        t.push(tensor(
            &p("self_attn.q_proj.weight"),
            Dtype::F16,
            &[nh * hd, h],
        ));
        t.push(tensor(
            &p("self_attn.k_proj.weight"),
            Dtype::BF16,
            &[kv * hd, h],
        ));
        t.push(tensor(
            &p("self_attn.v_proj.weight"),
            Dtype::F16,
            &[kv * hd, h],
        ));
        t.push(tensor(
            &p("self_attn.o_proj.weight"),
            Dtype::F16,
            &[h, nh * hd],
        ));
        t.push(tensor(
            &p("post_attention_layernorm.weight"),
            Dtype::F32,
            &[h],
        ));
        t.push(tensor(&p("mlp.gate_proj.weight"), Dtype::BF16, &[ff, h]));
        t.push(tensor(&p("mlp.up_proj.weight"), Dtype::BF16, &[ff, h]));
        t.push(tensor(&p("mlp.down_proj.weight"), Dtype::F16, &[h, ff]));
    }
    t.push(tensor("model.norm.weight", Dtype::F32, &[h]));
    t.push(tensor("lm_head.weight", Dtype::F32, &[v, h]));
    t
}

fn llama_config() -> serde_json::Value {
    let (v, h, nh, kv, _, ff) = TINY;
    serde_json::json!({
        "_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": v, "hidden_size": h, "intermediate_size": ff,
        "num_hidden_layers": 2, "num_attention_heads": nh, "num_key_value_heads": kv,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "hidden_act": "silu", "tie_word_embeddings": false, "attention_bias": false,
        "bos_token_id": 0, "eos_token_id": [1, 2], "torch_dtype": "bfloat16"
    })
}

/// Writes the tiny llama in two shards with an index; returns the tensors written.
fn write_sharded_llama(dir: &Path) -> Vec<Tensor> {
    let tensors = tiny_llama_tensors(2);
    let (a, b): (Vec<&Tensor>, Vec<&Tensor>) = tensors
        .iter()
        .partition(|t| t.name.starts_with("model.embed") || t.name.contains("layers.0."));
    let shards = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_safetensors(&dir.join(shards[0]), &a);
    write_safetensors(&dir.join(shards[1]), &b);
    let mut map = serde_json::Map::new();
    for (shard, ts) in shards.iter().zip([&a, &b]) {
        for t in ts.iter() {
            map.insert(t.name.clone(), (*shard).into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), llama_config().to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    tensors
}

#[test]
fn sharded_safetensors_llama_loads() {
    let dir = test_dir("sharded");
    let written = write_sharded_llama(&dir);
    let m = open(dir.to_str().unwrap()).unwrap();
    let (c, s) = (&m.config, &m.store);
    assert_eq!((s.format, s.paths.len()), (Format::Safetensors, 2));
    assert_eq!(m.source.tokenizer_json, Some(dir.join("tokenizer.json")));
    assert_eq!(m.source.chat_template, None);
    assert_eq!((c.family, c.variant.as_str()), (Family::Llama, "Llama 3.1"));
    assert_eq!(c.rope_layout, RopeLayout::Neox);
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64
        })
    );
    assert_eq!(
        (c.head_dim, c.rope_theta, c.rms_norm_eps),
        (8, 500000.0, 1e-5)
    );
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(0), vec![1, 2])
    );
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    assert!(!c.tie_word_embeddings && !c.attention_bias);

    let canonical = [
        ("model.embed_tokens.weight", "token_embd.weight", 0),
        (
            "model.layers.0.self_attn.k_proj.weight",
            "blk.0.attn_k.weight",
            0,
        ),
        (
            "model.layers.1.mlp.gate_proj.weight",
            "blk.1.ffn_gate.weight",
            1,
        ),
        (
            "model.layers.1.post_attention_layernorm.weight",
            "blk.1.ffn_norm.weight",
            1,
        ),
        ("model.norm.weight", "output_norm.weight", 1),
        ("lm_head.weight", "output.weight", 1),
    ];
    for (hf, name, file) in canonical {
        let t = s.require(name).unwrap();
        assert_eq!((t.file_name.as_str(), t.file), (hf, file));
    }
    assert_eq!(s.tensors.len(), written.len());
    for w in &written {
        let name = lamina::weights::names::hf_to_canonical(&w.name);
        let t = s.require(&name).unwrap();
        assert_eq!(t.shape, w.shape, "{name}");
        assert_eq!(t.dtype.to_string(), w.dtype.to_string(), "{name}");
        assert_eq!(s.bytes(t), &w.data[..], "{name}: bytes differ");
    }
    let ops = Plan::new(c, s).unwrap().tensor_ops();
    assert!(ops.contains(&("output.weight".into(), Op::Matmul)));
    assert!(!ops.contains(&("token_embd.weight".into(), Op::Matmul)));

    let d = Diagnosis::new(&m);
    assert_eq!(d.files.len(), 2);
    let want: u64 = written.iter().map(|t| t.data.len() as u64).sum();
    assert_eq!(d.memory.weights_bytes, want);
    let embedding = d.groups.iter().find(|g| g.group == "embedding").unwrap();
    assert_eq!(embedding.dtypes[0].dtype, DType::BF16);
    assert!(d.to_text().contains("llama3 x8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn phi3_fused_folder_loads() {
    let dir = test_dir("phi3");
    let (v, h, nh, kv, hd, ff) = TINY;
    let mut ts = vec![tensor("model.embed_tokens.weight", Dtype::F16, &[v, h])];
    for l in 0..2 {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        ts.push(tensor(&p("input_layernorm.weight"), Dtype::F32, &[h]));
        ts.push(tensor(
            &p("self_attn.qkv_proj.weight"),
            Dtype::BF16,
            &[(nh + 2 * kv) * hd, h],
        ));
        ts.push(tensor(
            &p("self_attn.o_proj.weight"),
            Dtype::BF16,
            &[h, nh * hd],
        ));
        ts.push(tensor(
            &p("post_attention_layernorm.weight"),
            Dtype::F32,
            &[h],
        ));
        ts.push(tensor(
            &p("mlp.gate_up_proj.weight"),
            Dtype::BF16,
            &[2 * ff, h],
        ));
        ts.push(tensor(&p("mlp.down_proj.weight"), Dtype::BF16, &[h, ff]));
    }
    ts.push(tensor("model.norm.weight", Dtype::F32, &[h]));
    ts.push(tensor("lm_head.weight", Dtype::F16, &[v, h]));
    write_safetensors(
        &dir.join("model.safetensors"),
        &ts.iter().collect::<Vec<_>>(),
    );
    let short: Vec<f32> = (0..hd / 2).map(|i| 1.0 + i as f32 * 0.01).collect();
    let long: Vec<f32> = (0..hd / 2).map(|i| 1.0 + i as f32 * 0.5).collect();
    let config = serde_json::json!({
        "_name_or_path": "microsoft/Phi-3.5-mini-instruct",
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
        "vocab_size": v, "hidden_size": h, "intermediate_size": ff, "num_hidden_layers": 2,
        "num_attention_heads": nh, "num_key_value_heads": kv,
        "max_position_embeddings": 1024, "original_max_position_embeddings": 64,
        "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long},
        "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 32000,
        "tie_word_embeddings": false, "hidden_act": "silu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("chat_template.jinja"), "{{ messages }}").unwrap();

    let m = open(dir.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert_eq!((c.family, c.variant.as_str()), (Family::Phi3, "Phi-3.5"));
    assert_eq!(c.rms_norm_eps, 1e-5); // Phi-3's default
    assert_eq!(
        m.source.chat_template,
        Some(dir.join("chat_template.jinja"))
    );
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::LongRope {
            short_factor: short,
            long_factor: long,
            original_max_position_embeddings: 64,
            attention_factor: None
        })
    );
    let qkv = m.store.require("blk.1.attn_qkv.weight").unwrap();
    assert_eq!(qkv.shape, vec![(nh + 2 * kv) * hd, h]);
    assert_eq!(qkv.file_name, "model.layers.1.self_attn.qkv_proj.weight");
    let gate_up = m.store.require("blk.0.ffn_gate_up.weight").unwrap();
    assert_eq!(gate_up.shape, vec![2 * ff, h]);
    assert!(m.store.get("blk.0.attn_q.weight").is_none());
    let ops = Plan::new(c, &m.store).unwrap().tensor_ops();
    assert!(ops.contains(&("blk.0.attn_qkv.weight".into(), Op::Matmul)));
    assert!(ops.contains(&("blk.0.ffn_gate_up.weight".into(), Op::Matmul)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn int8_compressed_tensors_folder_loads() {
    let dir = test_dir("w8a8");
    let (v, h, nh, kv, hd, ff) = TINY;
    let mut ts = vec![tensor("model.embed_tokens.weight", Dtype::BF16, &[v, h])];
    let p = |s: &str| format!("model.layers.0.{s}");
    ts.push(tensor(&p("input_layernorm.weight"), Dtype::BF16, &[h]));
    ts.push(tensor(
        &p("post_attention_layernorm.weight"),
        Dtype::BF16,
        &[h],
    ));
    for (name, rows, cols) in [
        ("self_attn.q_proj", nh * hd, h),
        ("self_attn.k_proj", kv * hd, h),
        ("self_attn.v_proj", kv * hd, h),
        ("self_attn.o_proj", h, nh * hd),
        ("mlp.gate_proj", ff, h),
        ("mlp.up_proj", ff, h),
        ("mlp.down_proj", h, ff),
    ] {
        ts.push(tensor(
            &p(&format!("{name}.weight")),
            Dtype::I8,
            &[rows, cols],
        ));
        ts.push(tensor(
            &p(&format!("{name}.weight_scale")),
            Dtype::BF16,
            &[rows, 1],
        ));
    }
    ts.push(tensor("model.norm.weight", Dtype::BF16, &[h]));
    write_safetensors(
        &dir.join("model.safetensors"),
        &ts.iter().collect::<Vec<_>>(),
    );
    let mut config = llama_config();
    let o = config.as_object_mut().unwrap();
    o.insert("num_hidden_layers".into(), 1.into());
    o.insert("tie_word_embeddings".into(), true.into());
    o.insert(
        "_name_or_path".into(),
        "RedHatAI/Llama-3.2-1B-Instruct-quantized.w8a8".into(),
    );
    o.insert(
        "quantization_config".into(),
        serde_json::json!({
            "quant_method": "compressed-tensors", "format": "int-quantized",
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "strategy": "channel",
                            "symmetric": true, "dynamic": false},
                "input_activations": {"num_bits": 8, "type": "int", "strategy": "token",
                                      "symmetric": true, "dynamic": true}}},
            "ignore": ["lm_head"]
        }),
    );
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let m = open(dir.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert!(c.tie_word_embeddings);
    assert_eq!(c.variant, "Llama 3.2");
    let q = c.quantization.as_ref().unwrap();
    assert_eq!(q.quant_method, "compressed-tensors");
    assert_eq!(q.ignore, vec!["lm_head".to_string()]);
    let g = &q.groups[0];
    assert_eq!(g.targets, vec!["Linear".to_string()]);
    assert_eq!(
        (g.weight_bits, g.weight_strategy.as_deref()),
        (Some(8), Some("channel"))
    );
    assert_eq!(
        (g.input_strategy.as_deref(), g.input_dynamic),
        (Some("token"), Some(true))
    );
    let scale = m.store.require("blk.0.attn_q.weight_scale").unwrap();
    assert_eq!(
        scale.file_name,
        "model.layers.0.self_attn.q_proj.weight_scale"
    );
    assert_eq!(
        m.store.require("blk.0.ffn_up.weight").unwrap().dtype,
        DType::I8
    );
    let d = Diagnosis::new(&m);
    assert!(
        d.quantization
            .contains("compressed-tensors (int-quantized)"),
        "{}",
        d.quantization
    );
    assert!(
        d.quantization.contains("not quantized: lm_head"),
        "{}",
        d.quantization
    );
    // Scales are not parameters.
    let params: u64 = m
        .store
        .tensors
        .values()
        .filter(|t| !t.name.ends_with("_scale"))
        .map(|t| t.elements() as u64)
        .sum();
    assert_eq!(d.parameters, params);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deepseek_r1_distill_is_a_variant_of_its_base() {
    let mut c = tiny_config_from(llama_config());
    c.detect_variant(&["some-folder"], Some("{{'<｜Assistant｜>'}}"));
    assert_eq!(c.variant, "DeepSeek-R1-Distill-Llama");
    let mut qwen = llama_config();
    let o = qwen.as_object_mut().unwrap();
    o.insert(
        "architectures".into(),
        serde_json::json!(["Qwen2ForCausalLM"]),
    );
    o.remove("attention_bias");
    o.insert(
        "_name_or_path".into(),
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B".into(),
    );
    let c = tiny_config_from(qwen);
    assert_eq!(
        (c.family, c.variant.as_str()),
        (Family::Qwen2, "DeepSeek-R1-Distill-Qwen")
    );
    assert!(c.attention_bias, "qwen2 has q/k/v biases by default");
}

/// A config read against the sharded tiny llama's tensors.
fn tiny_config_from(json: serde_json::Value) -> ModelConfig {
    let dir = test_dir("cfg");
    write_sharded_llama(&dir);
    let store = WeightStore::open(&dir).unwrap();
    let c = ModelConfig::from_hf_config(&json.to_string(), &store).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    c
}

// ---- references in a Hugging Face cache ------------------------------------------------

#[test]
fn hf_cache_reference_resolves() {
    let root = test_dir("hfcache");
    let repo = root.join("models--acme--tiny-llama");
    let old = repo.join("snapshots/1111");
    let new = repo.join("snapshots/2222");
    for d in [&old, &new] {
        std::fs::create_dir_all(d).unwrap();
        write_sharded_llama(d);
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    // refs/main decides, not the modification time.
    std::fs::write(repo.join("refs/main"), "1111\n").unwrap();
    let empty = root.join("elsewhere");
    let src = resolve_in("acme/tiny-llama", &[empty.clone(), root.clone()]).unwrap();
    assert_eq!(src.weights, old);
    assert_eq!(src.format, Format::Safetensors);
    assert_eq!(src.config_json, Some(old.join("config.json")));
    assert_eq!(src.tokenizer_json, Some(old.join("tokenizer.json")));
    std::fs::remove_file(repo.join("refs/main")).unwrap();
    let only_root = vec![root.clone()];
    let newest = resolve_in("acme/tiny-llama", &only_root).unwrap();
    assert!(newest.weights == old || newest.weights == new);

    // One file of a GGUF repository.
    let gguf_repo = root.join("models--acme--tiny-GGUF/snapshots/abcd");
    std::fs::create_dir_all(&gguf_repo).unwrap();
    // The hub cache links snapshot files to blobs.
    std::os::unix::fs::symlink(real(testdata::SMOLLM2), gguf_repo.join("m.Q4_1.gguf")).unwrap();
    let src = resolve_in("acme/tiny-GGUF/m.Q4_1.gguf", &only_root).unwrap();
    assert_eq!(
        (src.format, src.weights.clone()),
        (Format::Gguf, gguf_repo.join("m.Q4_1.gguf"))
    );
    let src = resolve_in("acme/tiny-GGUF", &only_root).unwrap();
    assert_eq!(src.format, Format::Gguf);

    let e = resolve_in("acme/absent", &[empty.clone(), root.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&empty.join("models--acme--absent").display().to_string()),
        "{e}"
    );
    assert!(
        e.contains(&root.join("models--acme--absent").display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
