//! GGUF files made by tests: llama metadata, f32 tensors, SmolLM2's tokenizer keys.

use lamina::dtype::DType;
use lamina::weights::gguf::{Metadata, TensorData, Value};
use lamina::weights::WeightStore;
use std::path::Path;

/// The shape keys of a llama-family GGUF.
pub struct Dims {
    pub hidden: usize,
    pub ff: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ctx: usize,
    pub vocab: usize,
}

/// `general.architecture`, `general.name`, the `arch.*` shape keys and an RMSNorm epsilon
/// of 1e-5.
pub fn llama_meta(arch: &str, name: &str, d: &Dims) -> Metadata {
    let mut m = Metadata::new();
    m.insert("general.architecture".into(), Value::String(arch.into()));
    m.insert("general.name".into(), Value::String(name.into()));
    for (key, v) in [
        ("embedding_length", d.hidden),
        ("feed_forward_length", d.ff),
        ("block_count", d.layers),
        ("attention.head_count", d.heads),
        ("attention.head_count_kv", d.kv_heads),
        ("context_length", d.ctx),
        ("vocab_size", d.vocab),
    ] {
        m.insert(format!("{arch}.{key}"), Value::U32(v as u32));
    }
    m.insert(
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    m
}

/// F32 tensors named and shaped by `shapes`, holding `data` (one buffer each, in order).
pub fn f32_tensors<'a>(
    shapes: &'a [(&'a str, Vec<usize>)],
    data: &'a [Vec<u8>],
) -> Vec<TensorData<'a>> {
    shapes
        .iter()
        .zip(data)
        .map(|((name, shape), bytes)| TensorData {
            name,
            dtype: DType::F32,
            shape,
            bytes,
        })
        .collect()
}

/// The `tokenizer.*` keys of the SmolLM2 GGUF at `path` (a 49152-token vocabulary), for
/// made-up models that must tokenize text.
pub fn tokenizer_meta(path: &str) -> Metadata {
    let smol = WeightStore::open(Path::new(path)).unwrap();
    smol.meta
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
