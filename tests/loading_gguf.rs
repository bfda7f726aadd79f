//! Loading GGUF files made here: phi3 with fused qkv/gate_up and longrope factors, llama
//! with llama3 scaling as a rope_freqs tensor (loading.rs covers the real GGUFs).

use lamina::backend::RopeLayout;
use lamina::model::config::{Family, RopeScaling};
use lamina::model::llama::Plan;
use lamina::model::resolve::open;
use lamina::weights::gguf::{self, Metadata, Value};
use std::path::Path;

mod common;

use common::bin::test_dir;
use common::gguf::{f32_tensors, llama_meta, Dims};

const TINY: (usize, usize, usize, usize, usize, usize) = (64, 32, 4, 2, 8, 48); // vocab hidden heads kv hd ff

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// GGUF metadata for a tiny model of `arch`.
fn gguf_meta(arch: &str, name: &str) -> Metadata {
    let (v, h, nh, kv, _, ff) = TINY;
    let d = Dims {
        hidden: h,
        ff,
        layers: 1,
        heads: nh,
        kv_heads: kv,
        ctx: 1024,
        vocab: v,
    };
    let mut m = llama_meta(arch, name, &d);
    m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(7));
    m.insert("tokenizer.ggml.eot_token_id".into(), Value::U32(9));
    m
}

fn f32_values(name: &str, n: usize) -> Vec<f32> {
    (0..n).map(|i| (i * 7 + name.len()) as f32 * 0.01).collect()
}

/// A GGUF of f32 tensors: `values` where given, else `f32_values(name, ..)`.
fn write_f32_gguf(
    path: &Path,
    meta: &Metadata,
    shapes: &[(&str, Vec<usize>)],
    values: &[(&str, &[f32])],
) {
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(
            |(name, shape)| match values.iter().find(|(n, _)| n == name) {
                Some((_, v)) => f32_bytes(v),
                None => f32_bytes(&f32_values(name, shape.iter().product())),
            },
        )
        .collect();
    std::fs::write(
        path,
        gguf::encode(meta, &f32_tensors(shapes, &data)).unwrap(),
    )
    .unwrap();
}

/// One layer's GGUF tensors, fused as phi3 stores them or separate as llama does.
fn gguf_shapes(fused: bool) -> Vec<(&'static str, Vec<usize>)> {
    let (v, h, nh, kv, hd, ff) = TINY;
    let mut s = vec![
        ("token_embd.weight", vec![v, h]),
        ("blk.0.attn_norm.weight", vec![h]),
        ("blk.0.attn_output.weight", vec![h, nh * hd]),
        ("blk.0.ffn_norm.weight", vec![h]),
        ("blk.0.ffn_down.weight", vec![h, ff]),
        ("output_norm.weight", vec![h]),
    ];
    if fused {
        s.push(("blk.0.attn_qkv.weight", vec![(nh + 2 * kv) * hd, h]));
        s.push(("blk.0.ffn_up.weight", vec![2 * ff, h]));
    } else {
        s.push(("blk.0.attn_q.weight", vec![nh * hd, h]));
        s.push(("blk.0.attn_k.weight", vec![kv * hd, h]));
        s.push(("blk.0.attn_v.weight", vec![kv * hd, h]));
        s.push(("blk.0.ffn_gate.weight", vec![ff, h]));
        s.push(("blk.0.ffn_up.weight", vec![ff, h]));
    }
    s
}

#[test]
fn gguf_phi3_fused_and_longrope_load() {
    let dir = test_dir("gguf-phi3");
    let (v, h, _, _, hd, ff) = TINY;
    let long: Vec<f32> = (0..hd / 2).map(|i| 1.0 + i as f32).collect();
    let short = vec![1.0f32; hd / 2];
    let mut shapes = gguf_shapes(true);
    shapes.push(("output.weight", vec![v, h]));
    shapes.push(("rope_factors_long.weight", vec![hd / 2]));
    shapes.push(("rope_factors_short.weight", vec![hd / 2]));
    let mut meta = gguf_meta("phi3", "Phi 3 Mini 128k Instruct");
    let orig = "phi3.rope.scaling.original_context_length";
    meta.insert(orig.into(), Value::U32(64));
    meta.insert("phi3.rope.scaling.attn_factor".into(), Value::F32(1.19));
    let path = dir.join("phi3.gguf");
    let values = [
        ("rope_factors_long.weight", &long[..]),
        ("rope_factors_short.weight", &short[..]),
    ];
    write_f32_gguf(&path, &meta, &shapes, &values);

    let m = open(path.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert_eq!((c.family, c.variant.as_str()), (Family::Phi3, "Phi-3"));
    assert_eq!(c.rope_layout, RopeLayout::Neox);
    assert_eq!(c.eos_token_ids, vec![7, 9]);
    // llama.cpp's fused ffn_up is our ffn_gate_up.
    let gu = m.store.require("blk.0.ffn_gate_up.weight").unwrap();
    assert_eq!(gu.file_name, "blk.0.ffn_up.weight");
    assert_eq!(gu.shape, vec![2 * ff, h]);
    let want = f32_bytes(&f32_values("blk.0.ffn_up.weight", 2 * ff * h));
    assert_eq!(m.store.bytes(gu), &want[..]);
    let want = RopeScaling::LongRope {
        short_factor: short,
        long_factor: long,
        original_max_position_embeddings: 64,
        attention_factor: Some(1.19),
    };
    assert_eq!(c.rope_scaling, Some(want));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_llama3_rope_freqs_load() {
    let dir = test_dir("gguf-llama3");
    let hd = TINY.4;
    // llama3 scaling in GGUF is a rope_freqs tensor of divisors.
    let freqs: Vec<f32> = (0..hd / 2).map(|i| if i < 2 { 1.0 } else { 8.0 }).collect();
    let mut shapes = gguf_shapes(false);
    shapes.push(("rope_freqs.weight", vec![hd / 2]));
    let path = dir.join("llama.gguf");
    let meta = gguf_meta("llama", "Meta Llama 3.1 8B Instruct");
    write_f32_gguf(&path, &meta, &shapes, &[("rope_freqs.weight", &freqs)]);
    let m = open(path.to_str().unwrap()).unwrap();
    let c = &m.config;
    assert_eq!(c.variant, "Llama 3.1");
    assert_eq!(c.rope_layout, RopeLayout::Normal);
    assert!(c.tie_word_embeddings);
    let want = RopeScaling::LongRope {
        short_factor: freqs.clone(),
        long_factor: freqs,
        original_max_position_embeddings: 1024,
        attention_factor: Some(1.0),
    };
    assert_eq!(c.rope_scaling, Some(want));
    // rope_freqs feeds no op: the host computes the frequencies.
    assert!(!Plan::new(c, &m.store)
        .unwrap()
        .tensor_ops()
        .iter()
        .any(|(n, _)| n == "rope_freqs.weight"));
    std::fs::remove_dir_all(&dir).unwrap();
}
