//! A Hugging Face model folder (config.json, safetensors, tokenizer.json) as GGUF metadata and
//! a list of tensors, the way llama.cpp's convert_hf_to_gguf.py lays them out (learned from
//! reading it): GGUF tensor names, llama Q/K rows permuted so rope rotates adjacent pairs,
//! llama3 rope scaling as a `rope_freqs` tensor of per-frequency divisors, Phi-3 longrope as
//! `rope_factors_short/long` tensors, Phi-3's fused gate/up matrix under `ffn_up`.

use super::{Planned, Source};
use crate::error::{Error, Result};
use crate::model::config::{Family, ModelConfig, RopeScaling};
use crate::model::resolve::LoadedModel;
use crate::weights::gguf::{Metadata, Value};
use crate::weights::names;

pub fn arch_name(f: Family) -> &'static str {
    match f {
        Family::Llama => "llama",
        Family::Qwen2 => "qwen2",
        Family::Phi3 => "phi3",
    }
}

/// Metadata (model and tokenizer keys) and tensors of a safetensors model.
pub fn plan(m: &LoadedModel) -> Result<(Metadata, Vec<Planned>)> {
    let c = &m.config;
    if let Some(q) = &c.quantization {
        return Err(Error::Input(format!(
            "{} holds {} weights (quantization_config: int8 or other quantized tensors with \
             scales), which have no GGUF form; quantize the model's bf16/f16/f32 original instead",
            m.source.weights.display(),
            q.quant_method
        )));
    }
    let arch = arch_name(c.family);
    let mut meta = model_metadata(c, arch, &name_of(m))?;
    let tok_json = m.source.tokenizer_json.as_ref().ok_or_else(|| {
        Error::Tokenizer(format!(
            "{} has no tokenizer.json; a GGUF carries its tokenizer, so lamina quantize needs it",
            m.source.weights.display()
        ))
    })?;
    let pad = config_pad(m)?;
    let vocab = super::vocab::metadata(
        tok_json,
        m.source.tokenizer_config_json.as_deref(),
        c.vocab_size,
        pad,
    )?;
    meta.extend(vocab);

    let mut tensors = Vec::new();
    for (name, t) in &m.store.tensors {
        // Older checkpoints store rope's inverse frequencies, which follow from the config.
        if name.ends_with("rotary_emb.inv_freq") {
            continue;
        }
        let known = names::canonical_to_hf(name) != *name;
        if !known || !(name.ends_with(".weight") || name.ends_with(".bias")) {
            return Err(Error::Model(format!(
                "tensor '{}' of {} has no GGUF name lamina knows; nothing was written",
                t.file_name,
                m.store.describe()
            )));
        }
        let heads = match c.family {
            Family::Llama if name.contains(".attn_q.") => Some(c.num_heads),
            Family::Llama if name.contains(".attn_k.") => Some(c.num_kv_heads),
            _ => None,
        };
        tensors.push(Planned {
            name: names::canonical_to_gguf(name, arch),
            shape: t.shape.clone(),
            src: Source::Stored {
                key: name.clone(),
                permute_heads: heads,
            },
        });
    }
    match &c.rope_scaling {
        Some(RopeScaling::Llama3 { .. }) => tensors.push(values("rope_freqs.weight", llama3(c))),
        Some(RopeScaling::LongRope {
            short_factor,
            long_factor,
            ..
        }) => {
            tensors.push(values("rope_factors_long.weight", long_factor.clone()));
            tensors.push(values("rope_factors_short.weight", short_factor.clone()));
        }
        _ => {}
    }
    Ok((meta, tensors))
}

fn values(name: &str, v: Vec<f32>) -> Planned {
    Planned {
        name: name.into(),
        shape: vec![v.len()],
        src: Source::Values(v),
    }
}

fn name_of(m: &LoadedModel) -> String {
    let dir = if m.source.weights.is_dir() {
        m.source.weights.as_path()
    } else {
        m.source.weights.parent().unwrap_or(&m.source.weights)
    };
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| m.config.variant.clone())
}

/// pad_token_id of config.json, which tokenizer_config.json may not repeat.
fn config_pad(m: &LoadedModel) -> Result<Option<u32>> {
    let Some(path) = &m.source.config_json else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let j: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
    Ok(j["pad_token_id"]
        .as_u64()
        .and_then(|x| u32::try_from(x).ok()))
}

/// The `{arch}.*` keys llama.cpp reads for these architectures.
fn model_metadata(c: &ModelConfig, arch: &str, name: &str) -> Result<Metadata> {
    let mut m = Metadata::new();
    let s = |x: &str| Value::String(x.to_string());
    let u = |x: usize| Value::U32(x as u32);
    let k = |key: &str| format!("{arch}.{key}");
    m.insert("general.architecture".into(), s(arch));
    m.insert("general.name".into(), s(name));
    m.insert(k("context_length"), u(c.max_position_embeddings));
    m.insert(k("embedding_length"), u(c.hidden_size));
    m.insert(k("block_count"), u(c.num_layers));
    m.insert(k("feed_forward_length"), u(c.intermediate_size));
    m.insert(k("attention.head_count"), u(c.num_heads));
    m.insert(k("attention.head_count_kv"), u(c.num_kv_heads));
    m.insert(
        k("attention.layer_norm_rms_epsilon"),
        Value::F32(c.rms_norm_eps),
    );
    m.insert(k("rope.freq_base"), Value::F32(c.rope_theta));
    m.insert(k("rope.dimension_count"), u(c.head_dim));
    if c.head_dim * c.num_heads != c.hidden_size {
        m.insert(k("attention.key_length"), u(c.head_dim));
        m.insert(k("attention.value_length"), u(c.head_dim));
    }
    m.insert(k("vocab_size"), u(c.vocab_size));
    match &c.rope_scaling {
        None | Some(RopeScaling::Llama3 { .. }) => {}
        Some(RopeScaling::Linear { factor }) => {
            m.insert(k("rope.scaling.type"), s("linear"));
            m.insert(k("rope.scaling.factor"), Value::F32(*factor));
        }
        Some(RopeScaling::LongRope {
            original_max_position_embeddings: orig,
            attention_factor,
            ..
        }) => {
            m.insert(k("rope.scaling.original_context_length"), u(*orig));
            // What transformers derives when the config gives none, written out as
            // llama.cpp's converter does.
            let scale = c.max_position_embeddings as f64 / *orig as f64;
            let derived = if scale <= 1.0 {
                1.0
            } else {
                (1.0 + scale.ln() / (*orig as f64).ln()).sqrt() as f32
            };
            m.insert(
                k("rope.scaling.attn_factor"),
                Value::F32(attention_factor.unwrap_or(derived)),
            );
        }
        Some(RopeScaling::Dynamic { .. }) => {
            return Err(Error::Model(
                "dynamic NTK rope scaling has no GGUF form (llama.cpp has no key for it); \
                 nothing was written"
                    .into(),
            ))
        }
    }
    Ok(m)
}

/// llama3 rope scaling as divisors of each base frequency.
fn llama3(c: &ModelConfig) -> Vec<f32> {
    let Some(RopeScaling::Llama3 {
        factor,
        low_freq_factor: lo,
        high_freq_factor: hi,
        original_max_position_embeddings: orig,
    }) = &c.rope_scaling
    else {
        unreachable!("called for llama3 scaling only")
    };
    let (factor, lo, hi, orig) = (*factor as f64, *lo as f64, *hi as f64, *orig as f64);
    let d = c.head_dim;
    (0..d / 2)
        .map(|i| {
            let f = 1.0 / (c.rope_theta as f64).powf((2 * i) as f64 / d as f64);
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let div = if wavelen < orig / hi {
                1.0
            } else if wavelen > orig / lo {
                factor
            } else {
                let smooth = (orig / wavelen - lo) / (hi - lo);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            div as f32
        })
        .collect()
}
