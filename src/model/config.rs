//! `ModelConfig`: one description of a model, read from Hugging Face `config.json` or from
//! GGUF metadata. Differences between families are data here, not code in the forward pass.

use crate::backend::RopeLayout;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::gguf::{Metadata, MetadataExt};
use crate::weights::WeightStore;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// Meta Llama 1-3.x, TinyLlama, SmolLM/SmolLM2, Mistral-style, DeepSeek-R1-Distill-Llama.
    Llama,
    /// Qwen2/2.5 (QKV bias, NEOX rope), DeepSeek-R1-Distill-Qwen.
    Qwen2,
    /// Phi-3/3.5 (fused qkv and gate_up).
    Phi3,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    Linear {
        factor: f32,
    },
    /// Dynamic NTK: the base grows once the sequence passes the original length.
    Dynamic {
        factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Phi-3 su/longrope: per-dimension factors, short below the original length, long above.
    LongRope {
        short_factor: Vec<f32>,
        long_factor: Vec<f32>,
        original_max_position_embeddings: usize,
        /// Multiplies cos and sin; when absent it follows from the lengths.
        attention_factor: Option<f32>,
    },
}

/// compressed-tensors quantization (W8A8 int8 and friends).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantizationConfig {
    pub quant_method: String,
    pub format: Option<String>,
    pub groups: Vec<QuantGroup>,
    /// Modules left unquantized (names or `re:` patterns, as in the file).
    pub ignore: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantGroup {
    pub targets: Vec<String>,
    pub weight_bits: Option<u32>,
    pub weight_type: Option<String>,
    pub weight_strategy: Option<String>,
    pub weight_symmetric: Option<bool>,
    pub weight_dynamic: Option<bool>,
    pub input_bits: Option<u32>,
    pub input_type: Option<String>,
    pub input_strategy: Option<String>,
    pub input_symmetric: Option<bool>,
    pub input_dynamic: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub family: Family,
    /// The architecture name as the file gives it (`LlamaForCausalLM`, `llama`, `qwen2`, ...).
    pub architecture: String,
    /// What the model is within its family, best guess from names and shapes
    /// ("SmolLM2", "TinyLlama", "Llama 3.1", "DeepSeek-R1-Distill-Qwen", ...).
    pub variant: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub rope_layout: RopeLayout,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Any of these ends generation.
    pub eos_token_ids: Vec<u32>,
    pub quantization: Option<QuantizationConfig>,
    pub torch_dtype: Option<String>,
}

/// What lamina runs, for refusals.
const SUPPORTED: &str = "llama (LlamaForCausalLM, MistralForCausalLM; GGUF `llama`), qwen2 \
                         (Qwen2ForCausalLM; GGUF `qwen2`) and phi3 (Phi3ForCausalLM; GGUF `phi3`)";

/// The family of an architecture name from config.json (`architectures[0]` or `model_type`)
/// or GGUF (`general.architecture`).
pub fn family_of(arch: &str) -> Result<Family> {
    match arch {
        "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Ok(Family::Llama),
        "Qwen2ForCausalLM" | "qwen2" => Ok(Family::Qwen2),
        "Phi3ForCausalLM" | "phi3" => Ok(Family::Phi3),
        other => Err(Error::Model(format!(
            "architecture '{other}' is not supported: lamina runs {SUPPORTED}"
        ))),
    }
}

impl ModelConfig {
    /// Width of the query projection (heads * head_dim).
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key and of the value projection (kv_heads * head_dim).
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// From the text of a Hugging Face `config.json`, with the weights it describes (they
    /// settle `tie_word_embeddings` when `lm_head.weight` is absent).
    pub fn from_hf_config(json_text: &str, store: &WeightStore) -> Result<ModelConfig> {
        let root: Value = serde_json::from_str(json_text)
            .map_err(|e| Error::Format(format!("config.json is not valid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| Error::Format("config.json is not a JSON object".into()))?;
        let j = Json(obj);
        let model_type = j.str("model_type")?.unwrap_or_default().to_string();
        let architecture = match j.get("architectures").and_then(|a| a.as_array()) {
            Some(list) => match list.first().and_then(|a| a.as_str()) {
                Some(a) => a.to_string(),
                None => return Err(j.wrong("architectures", "a list of class names")),
            },
            None => model_type.clone(),
        };
        if architecture.is_empty() {
            return Err(Error::Format(
                "config.json names no architecture (neither \"architectures\" nor \
                 \"model_type\")"
                    .into(),
            ));
        }
        let family = family_of(&architecture).map_err(|e| match model_type.as_str() {
            "" => e,
            mt => Error::Model(format!("{e} (config.json model_type '{mt}')")),
        })?;

        if let Some(act) = j.str("hidden_act")? {
            if act != "silu" {
                return Err(Error::Model(format!(
                    "config.json hidden_act is '{act}': lamina's MLP is SwiGLU (silu)"
                )));
            }
        }
        if j.bool("use_sliding_window")? == Some(true) {
            return Err(Error::Model(
                "config.json enables sliding-window attention (use_sliding_window), which \
                 lamina does not implement"
                    .into(),
            ));
        }
        if let Some(p) = j.f32("partial_rotary_factor")? {
            if p != 1.0 {
                return Err(Error::Model(format!(
                    "config.json partial_rotary_factor is {p}: lamina rotates whole heads"
                )));
            }
        }

        let hidden_size = j.req_usize("hidden_size")?;
        let num_heads = j.req_usize("num_attention_heads")?;
        let num_kv_heads = j.usize("num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match j.usize("head_dim")? {
            Some(d) => d,
            None => whole_heads(hidden_size, num_heads)?,
        };
        let max_position_embeddings = j.req_usize("max_position_embeddings")?;
        // transformers 5 moved rope_theta and the scaling into `rope_parameters`.
        let rope = j.get("rope_parameters").or_else(|| j.get("rope_scaling"));
        let rope = match rope {
            Some(Value::Object(m)) => Some(Json(m)),
            Some(_) => return Err(j.wrong("rope_scaling", "an object")),
            None => None,
        };
        let rope_theta = match rope.as_ref().map(|r| r.f32("rope_theta")).transpose()? {
            Some(Some(t)) => t,
            _ => j.f32("rope_theta")?.unwrap_or(10000.0),
        };
        let rope_scaling = match &rope {
            Some(r) => hf_rope_scaling(r, &j, head_dim, max_position_embeddings)?,
            None => None,
        };
        let eps_default = if family == Family::Phi3 { 1e-5 } else { 1e-6 };
        let tie = j.bool("tie_word_embeddings")?.unwrap_or(false);
        let mut cfg = ModelConfig {
            family,
            architecture,
            variant: String::new(),
            vocab_size: j.req_usize("vocab_size")?,
            hidden_size,
            intermediate_size: j.req_usize("intermediate_size")?,
            num_layers: j.req_usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps: j.f32("rms_norm_eps")?.unwrap_or(eps_default),
            rope_theta,
            rope_scaling,
            rope_layout: RopeLayout::Neox,
            // Qwen2's q/k/v projections always carry a bias; its config does not say so.
            attention_bias: j.bool("attention_bias")?.unwrap_or(family == Family::Qwen2),
            mlp_bias: j.bool("mlp_bias")?.unwrap_or(false),
            tie_word_embeddings: tie || store.get("output.weight").is_none(),
            bos_token_id: j.ids("bos_token_id")?.first().copied(),
            eos_token_ids: j.ids("eos_token_id")?,
            quantization: j.get("quantization_config").map(quantization).transpose()?,
            torch_dtype: match j.str("torch_dtype")? {
                Some(d) => Some(d.to_string()),
                None => j.str("dtype")?.map(str::to_string),
            },
        };
        cfg.check_heads()?;
        let name = j.str("_name_or_path")?.unwrap_or_default().to_string();
        cfg.detect_variant(&[&name], None);
        Ok(cfg)
    }

    /// From GGUF metadata and the file's tensors (llama3 and longrope factors are tensors in
    /// GGUF, and tied embeddings show as a missing `output.weight`).
    pub fn from_gguf(store: &WeightStore) -> Result<ModelConfig> {
        let m = &store.meta;
        let arch = m.get_str("general.architecture")?.to_string();
        let family = family_of(&arch)?;
        let k = |name: &str| format!("{arch}.{name}");
        // Mixtral-style GGUFs say `llama` but hold experts in place of one MLP.
        if let Some(n) = m.opt_usize(&k("expert_count"))?.filter(|&n| n > 0) {
            return Err(Error::Model(format!(
                "{} is {n}: mixture-of-experts models are not supported (lamina runs dense \
                 {SUPPORTED})",
                k("expert_count")
            )));
        }
        let hidden_size = m.get_usize(&k("embedding_length"))?;
        let num_heads = m.get_usize(&k("attention.head_count"))?;
        let head_dim = match m.opt_usize(&k("attention.key_length"))? {
            Some(d) => d,
            None => whole_heads(hidden_size, num_heads)?,
        };
        if let Some(rot) = m.opt_usize(&k("rope.dimension_count"))? {
            if rot != head_dim {
                return Err(Error::Model(format!(
                    "{} rotates {rot} of {head_dim} head dimensions (partial rope), which \
                     lamina does not implement",
                    k("rope.dimension_count")
                )));
            }
        }
        let vocab_size = match m.opt_usize(&k("vocab_size"))? {
            Some(v) => v,
            None => match m.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()) {
                Some(tokens) => tokens.len(),
                None => store.require("token_embd.weight")?.shape[0],
            },
        };
        let max_position_embeddings = m.get_usize(&k("context_length"))?;
        let mut eos_token_ids = Vec::new();
        // End of turn and end of message stop generation as end of sequence does.
        for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
            if let Some(id) = m.opt_u32(&format!("tokenizer.ggml.{key}"))? {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        let has = |name: &str| store.get(name).is_some();
        let mut cfg = ModelConfig {
            family,
            architecture: arch.clone(),
            variant: String::new(),
            vocab_size,
            hidden_size,
            intermediate_size: m.get_usize(&k("feed_forward_length"))?,
            num_layers: m.get_usize(&k("block_count"))?,
            num_heads,
            num_kv_heads: m
                .opt_usize(&k("attention.head_count_kv"))?
                .unwrap_or(num_heads),
            head_dim,
            max_position_embeddings,
            rms_norm_eps: m.get_f32(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: m.opt_f32(&k("rope.freq_base"))?.unwrap_or(10000.0),
            rope_scaling: gguf_rope_scaling(store, &arch, max_position_embeddings)?,
            // llama.cpp's converter permutes llama Q/K rows so that rope rotates adjacent
            // pairs; qwen2 and phi3 keep Hugging Face's halves.
            rope_layout: if family == Family::Llama {
                RopeLayout::Normal
            } else {
                RopeLayout::Neox
            },
            attention_bias: has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias"),
            mlp_bias: has("blk.0.ffn_down.bias"),
            tie_word_embeddings: !has("output.weight"),
            bos_token_id: m.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids,
            quantization: None,
            torch_dtype: None,
        };
        cfg.check_heads()?;
        let hints: Vec<&str> = ["general.name", "general.basename", "general.finetune"]
            .iter()
            .filter_map(|key| m.get(*key).and_then(|v| v.as_str()))
            .collect();
        cfg.detect_variant(&hints, gguf_template(m));
        Ok(cfg)
    }

    fn check_heads(&self) -> Result<()> {
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(Error::Model(format!(
                "{} attention heads cannot be grouped over {} key/value heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::Model(format!(
                "head_dim {} is odd; rope needs pairs",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// Sets `variant` from names (model name, path, folder, the variant found so far) and the
    /// chat template, falling back on shapes. Best effort: it labels the model, it never changes how it runs.
    pub fn detect_variant(&mut self, names: &[&str], chat_template: Option<&str>) {
        // The variant found so far is a hint too, so a second call only refines it.
        let h = format!("{} {}", self.variant, names.join(" "))
            .to_lowercase()
            .replace(['_', ' '], "-");
        let has = |s: &str| h.contains(s);
        // R1-Distill models keep their base's architecture; DeepSeek's turn markers (full-width
        // bars) in the template give them away when the name does not.
        let r1 = has("r1-distill") || chat_template.is_some_and(|t| t.contains("<｜Assistant｜>"));
        self.variant = match self.family {
            Family::Llama if r1 => "DeepSeek-R1-Distill-Llama",
            Family::Qwen2 if r1 => "DeepSeek-R1-Distill-Qwen",
            Family::Llama if has("smollm2") => "SmolLM2",
            Family::Llama if has("smollm") => "SmolLM",
            Family::Llama if has("tinyllama") => "TinyLlama",
            Family::Llama if has("mistral") || self.architecture.starts_with("Mistral") => {
                "Mistral"
            }
            Family::Llama if has("llama-3.3") || has("llama3.3") => "Llama 3.3",
            Family::Llama if has("llama-3.2") || has("llama3.2") => "Llama 3.2",
            Family::Llama if has("llama-3.1") || has("llama3.1") => "Llama 3.1",
            Family::Llama if has("llama-3") || has("llama3") => "Llama 3",
            Family::Llama if has("llama-2") || has("llama2") => "Llama 2",
            Family::Llama => self.llama_by_shape(),
            Family::Qwen2 if has("qwen2.5-coder") => "Qwen2.5-Coder",
            Family::Qwen2 if has("qwen2.5") => "Qwen2.5",
            Family::Qwen2 => "Qwen2",
            Family::Phi3 if has("phi-3.5") || has("phi3.5") => "Phi-3.5",
            Family::Phi3 => "Phi-3",
        }
        .to_string();
    }

    fn llama_by_shape(&self) -> &'static str {
        match (self.vocab_size, self.llama3_factor()) {
            // Llama 3.2 (1B, 3B) stretches rope 32x; 3.1 and 3.3 8x.
            (128256, Some(f)) if f >= 16.0 => "Llama 3.2",
            (128256, Some(_)) => "Llama 3.1",
            (128256, None) => "Llama 3",
            (32000, _) if self.hidden_size == 2048 && self.num_layers == 22 => "TinyLlama",
            (32000, _) if self.max_position_embeddings == 4096 => "Llama 2",
            (32000, _) if self.max_position_embeddings == 2048 => "Llama 1",
            (32768, _) => "Mistral",
            _ => "Llama",
        }
    }

    /// The largest llama3-style stretch, also when GGUF gave it as a factor list.
    fn llama3_factor(&self) -> Option<f32> {
        match &self.rope_scaling {
            Some(RopeScaling::Llama3 { factor, .. }) => Some(*factor),
            Some(RopeScaling::LongRope {
                short_factor,
                long_factor,
                ..
            }) if short_factor == long_factor => short_factor.iter().copied().reduce(f32::max),
            _ => None,
        }
    }
}

fn whole_heads(hidden: usize, heads: usize) -> Result<usize> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::Model(format!(
            "hidden size {hidden} is not a whole number of {heads} heads and no head_dim is given"
        )));
    }
    Ok(hidden / heads)
}

fn gguf_template(m: &Metadata) -> Option<&str> {
    m.get("tokenizer.chat_template").and_then(|v| v.as_str())
}

/// Rope scaling as config.json gives it (`rope_scaling`, or transformers 5's
/// `rope_parameters`); Phi-3 puts original_max_position_embeddings at the top level.
fn hf_rope_scaling(
    r: &Json,
    top: &Json,
    head_dim: usize,
    max_pos: usize,
) -> Result<Option<RopeScaling>> {
    let kind = match r.str("rope_type")? {
        Some(t) => t,
        None => r.str("type")?.unwrap_or("default"),
    };
    let orig = match r.usize("original_max_position_embeddings")? {
        Some(o) => Some(o),
        None => top.usize("original_max_position_embeddings")?,
    };
    let factor = || {
        r.f32("factor")?
            .ok_or_else(|| r.missing("rope_scaling.factor"))
    };
    Ok(Some(match kind {
        "default" => return Ok(None),
        "linear" => RopeScaling::Linear { factor: factor()? },
        "dynamic" => RopeScaling::Dynamic {
            factor: factor()?,
            original_max_position_embeddings: orig.unwrap_or(max_pos),
        },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: r.f32("low_freq_factor")?.unwrap_or(1.0),
            high_freq_factor: r.f32("high_freq_factor")?.unwrap_or(4.0),
            original_max_position_embeddings: orig
                .ok_or_else(|| r.missing("rope_scaling.original_max_position_embeddings"))?,
        },
        "su" | "longrope" => {
            let list = |key: &str| -> Result<Vec<f32>> {
                let v = r
                    .f32_list(key)?
                    .ok_or_else(|| r.missing(&format!("rope_scaling.{key}")))?;
                if v.len() != head_dim / 2 {
                    return Err(Error::Format(format!(
                        "config.json rope_scaling.{key} has {} factors; head_dim {head_dim} \
                         needs {}",
                        v.len(),
                        head_dim / 2
                    )));
                }
                Ok(v)
            };
            RopeScaling::LongRope {
                short_factor: list("short_factor")?,
                long_factor: list("long_factor")?,
                original_max_position_embeddings: orig
                    .ok_or_else(|| r.missing("original_max_position_embeddings"))?,
                attention_factor: r.f32("attention_factor")?,
            }
        }
        other => {
            return Err(Error::Model(format!(
                "rope scaling '{other}' is not supported (lamina implements llama3, linear, \
                 dynamic and su/longrope)"
            )))
        }
    }))
}

/// Rope scaling in GGUF: `rope.scaling.type` for linear; llama3 and longrope are stored by
/// llama.cpp as per-frequency divisors in tensors (`rope_freqs`, `rope_factors_short/long`).
/// A llama3 divisor list is exactly longrope with one list for all lengths and no extra
/// attention factor, so it is described as that.
fn gguf_rope_scaling(
    store: &WeightStore,
    arch: &str,
    max_pos: usize,
) -> Result<Option<RopeScaling>> {
    let m = &store.meta;
    let k = |name: &str| format!("{arch}.{name}");
    if store.get("rope_freqs.weight").is_some() {
        let f = f32_tensor(store, "rope_freqs.weight")?;
        return Ok(Some(RopeScaling::LongRope {
            short_factor: f.clone(),
            long_factor: f,
            original_max_position_embeddings: max_pos,
            attention_factor: Some(1.0),
        }));
    }
    if store.get("rope_factors_long.weight").is_some() {
        return Ok(Some(RopeScaling::LongRope {
            short_factor: f32_tensor(store, "rope_factors_short.weight")?,
            long_factor: f32_tensor(store, "rope_factors_long.weight")?,
            original_max_position_embeddings: m
                .get_usize(&k("rope.scaling.original_context_length"))?,
            attention_factor: m.opt_f32(&k("rope.scaling.attn_factor"))?,
        }));
    }
    let factor = match m.opt_f32(&k("rope.scaling.factor"))? {
        Some(f) => Some(f),
        None => m.opt_f32(&k("rope.scale_linear"))?,
    };
    match (m.opt_str(&k("rope.scaling.type"))?, factor) {
        (None | Some("none"), None) => Ok(None),
        (None | Some("linear"), Some(factor)) if factor != 1.0 => {
            Ok(Some(RopeScaling::Linear { factor }))
        }
        (None | Some("none" | "linear"), _) => Ok(None),
        (Some(other), _) => Err(Error::Model(format!(
            "{} is '{other}', which lamina does not implement (it implements llama3, linear, \
             dynamic and su/longrope)",
            k("rope.scaling.type")
        ))),
    }
}

/// A small 1-D f32 tensor's values, read from the map (rope factors).
fn f32_tensor(store: &WeightStore, name: &str) -> Result<Vec<f32>> {
    let t = store.require(name)?;
    if t.dtype != DType::F32 || t.shape.len() != 1 {
        return Err(Error::Model(format!(
            "tensor '{name}' is {} {:?}; rope factors are a 1-D F32 list",
            t.dtype, t.shape
        )));
    }
    Ok(store
        .bytes(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// compressed-tensors' quantization_config, as far as lamina reads it.
#[derive(serde::Deserialize)]
struct HfQuant {
    quant_method: Option<String>,
    format: Option<String>,
    #[serde(default)]
    config_groups: std::collections::BTreeMap<String, HfQuantGroup>,
    #[serde(default)]
    ignore: Vec<String>,
}

#[derive(serde::Deserialize)]
struct HfQuantGroup {
    #[serde(default)]
    targets: Vec<String>,
    weights: Option<HfQuantArgs>,
    input_activations: Option<HfQuantArgs>,
}

#[derive(Default, serde::Deserialize)]
struct HfQuantArgs {
    num_bits: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    strategy: Option<String>,
    symmetric: Option<bool>,
    /// true/false, or a string such as "local" in newer files.
    dynamic: Option<Value>,
}

fn quantization(q: &Value) -> Result<QuantizationConfig> {
    let q: HfQuant = serde_json::from_value(q.clone())
        .map_err(|e| Error::Format(format!("config.json quantization_config: {e}")))?;
    let groups = q
        .config_groups
        .into_values()
        .map(|g| {
            let (w, i) = (
                g.weights.unwrap_or_default(),
                g.input_activations.unwrap_or_default(),
            );
            QuantGroup {
                targets: g.targets,
                weight_bits: w.num_bits,
                weight_type: w.kind,
                weight_strategy: w.strategy,
                weight_symmetric: w.symmetric,
                weight_dynamic: w.dynamic.and_then(|d| d.as_bool()),
                input_bits: i.num_bits,
                input_type: i.kind,
                input_strategy: i.strategy,
                input_symmetric: i.symmetric,
                input_dynamic: i.dynamic.and_then(|d| d.as_bool()),
            }
        })
        .collect();
    Ok(QuantizationConfig {
        quant_method: q.quant_method.unwrap_or_else(|| "unknown".into()),
        format: q.format,
        groups,
        ignore: q.ignore,
    })
}

/// Typed reads of a config.json object; `null` counts as absent.
struct Json<'a>(&'a Map<String, Value>);

impl<'a> Json<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn wrong(&self, key: &str, expected: &str) -> Error {
        let got = self.get(key).map(|v| v.to_string()).unwrap_or_default();
        let got: String = got.chars().take(80).collect();
        Error::Format(format!(
            "config.json '{key}' should be {expected}, not {got}"
        ))
    }
    fn missing(&self, key: &str) -> Error {
        Error::Format(format!("config.json has no '{key}'"))
    }
    fn typed<T>(
        &self,
        key: &str,
        what: &str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| self.wrong(key, what)),
        }
    }
    fn usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a whole number", |v| {
            v.as_u64().and_then(|x| usize::try_from(x).ok())
        })
    }
    fn req_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?.ok_or_else(|| self.missing(key))
    }
    fn f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }
    fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", Value::as_bool)
    }
    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        self.typed(key, "a string", Value::as_str)
    }
    fn f32_list(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.typed(key, "a list of numbers", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect()
        })
    }
    /// A token id or a list of them.
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        let id = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
        Ok(self
            .typed(key, "a token id or a list of token ids", |v| match v {
                Value::Array(list) => list.iter().map(id).collect(),
                one => id(one).map(|i| vec![i]),
            })?
            .unwrap_or_default())
    }
}
