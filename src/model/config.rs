//! `ModelConfig`: one description of a model, read from Hugging Face `config.json` or from
//! GGUF metadata. Differences between families are data here, not code in the forward pass.

use crate::backend::RopeLayout;

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
