//! What `lamina inspect` reports: family and variant, config, parameters, tensor dtypes by
//! group, quantization, files, and the memory a run needs. The tokenizer, chat template and
//! per-backend slots are filled by the caller that knows them.

use super::config::{Family, ModelConfig, QuantizationConfig};
use super::resolve::LoadedModel;
use crate::dtype::DType;
use crate::weights::gguf::MetadataExt;
use crate::weights::{names, Format, WeightStore};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Tokens of the prefill chunk the activation estimate is for (llama-bench's pp512).
pub const ACTIVATION_TOKENS: usize = 512;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnosis {
    pub reference: String,
    pub family: Family,
    pub variant: String,
    pub architecture: String,
    pub config: ModelConfig,
    /// Elements of the weights and biases the model reads (scales and rope factor lists
    /// are not parameters).
    pub parameters: u64,
    /// embedding, attention, mlp, norms, output, then other (tensors the forward pass does
    /// not read).
    pub groups: Vec<DtypeGroup>,
    pub quantization: String,
    pub format: Format,
    pub files: Vec<FileReport>,
    pub memory: Memory,
    /// Tokenizer kind and its special tokens, in words.
    pub tokenizer: Option<String>,
    pub chat_template: Option<bool>,
    pub backends: Vec<BackendReport>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DtypeGroup {
    pub group: String,
    pub dtypes: Vec<DtypeCount>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DtypeCount {
    pub dtype: DType,
    pub tensors: usize,
    pub elements: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FileReport {
    pub path: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Memory {
    /// The tensors' bytes, exactly as in the files (weights are never converted).
    pub weights_bytes: u64,
    pub kv_assumption: String,
    pub kv_f32_bytes_per_1k_tokens: u64,
    pub kv_f16_bytes_per_1k_tokens: u64,
    pub context_length: usize,
    pub kv_f32_bytes_full_context: u64,
    pub kv_f16_bytes_full_context: u64,
    pub activation_formula: String,
    pub activation_bytes_decode: u64,
    pub activation_bytes_prefill: u64,
    /// weights + f32 KV cache at full context + prefill activations.
    pub total_bytes_full_context_f32: u64,
}

/// Whether one backend of this machine can run the model, and why not.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendReport {
    pub backend: String,
    pub device: String,
    pub details: Vec<String>,
    pub can_run: bool,
    pub problems: Vec<String>,
}

const GROUPS: [&str; 6] = ["embedding", "attention", "mlp", "norms", "output", "other"];

/// The group of a canonical tensor name; compressed-tensors scales go with their weight.
fn group_of(name: &str) -> &'static str {
    let module = match names::layer_of(name) {
        Some(_) => name.splitn(3, '.').nth(2).unwrap_or(""),
        None => name,
    };
    let head = module.split('.').next().unwrap_or("");
    match head {
        "token_embd" => "embedding",
        "output" => "output",
        "attn_norm" | "ffn_norm" | "output_norm" => "norms",
        h if h.starts_with("attn_") => "attention",
        h if h.starts_with("ffn_") => "mlp",
        _ => "other",
    }
}

fn is_parameter(name: &str) -> bool {
    name.ends_with(".weight") || name.ends_with(".bias")
}

impl Diagnosis {
    pub fn new(m: &LoadedModel) -> Diagnosis {
        let (c, store) = (&m.config, &m.store);
        let mut by_group: BTreeMap<&str, BTreeMap<DType, DtypeCount>> = BTreeMap::new();
        let mut parameters = 0u64;
        for t in store.tensors.values() {
            let g = group_of(&t.name);
            if g != "other" && is_parameter(&t.name) {
                parameters += t.elements() as u64;
            }
            let e = by_group
                .entry(g)
                .or_default()
                .entry(t.dtype)
                .or_insert(DtypeCount {
                    dtype: t.dtype,
                    tensors: 0,
                    elements: 0,
                    bytes: 0,
                });
            e.tensors += 1;
            e.elements += t.elements() as u64;
            e.bytes += t.len as u64;
        }
        let groups = GROUPS
            .iter()
            .filter_map(|g| {
                let dtypes: Vec<DtypeCount> =
                    by_group.remove(g).map(|d| d.into_values().collect())?;
                Some((g, dtypes))
            })
            .map(|(g, dtypes)| DtypeGroup {
                group: g.to_string(),
                dtypes,
                note: None,
            })
            .chain(
                (c.tie_word_embeddings && store.get("output.weight").is_none()).then(|| {
                    DtypeGroup {
                        group: "output".into(),
                        dtypes: vec![],
                        note: Some("tied to the embedding (token_embd.weight)".into()),
                    }
                }),
            )
            .collect();
        let files = store
            .paths
            .iter()
            .zip(&store.maps)
            .map(|(p, map)| FileReport {
                path: p.display().to_string(),
                bytes: map.len() as u64,
            })
            .collect();
        Diagnosis {
            reference: m.source.reference.clone(),
            family: c.family,
            variant: c.variant.clone(),
            architecture: c.architecture.clone(),
            config: c.clone(),
            parameters,
            groups,
            quantization: quantization_summary(c, store),
            format: store.format,
            files,
            memory: memory(c, store),
            tokenizer: None,
            chat_template: None,
            backends: Vec::new(),
        }
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "model       {}", self.reference);
        let _ = writeln!(
            w,
            "family      {:?} ({}), variant {}",
            self.family, self.architecture, self.variant
        );
        let _ = writeln!(w, "parameters  {}", count(self.parameters));
        let _ = writeln!(
            w,
            "format      {:?}, {} file(s)",
            self.format,
            self.files.len()
        );
        for f in &self.files {
            let _ = writeln!(w, "            {} ({})", f.path, bytes(f.bytes));
        }
        let _ = writeln!(w, "\nconfig");
        let _ = writeln!(
            w,
            "  layers {}, hidden {}, intermediate {}, vocab {}",
            c.num_layers, c.hidden_size, c.intermediate_size, c.vocab_size
        );
        let _ = writeln!(
            w,
            "  heads {} (kv {}), head_dim {}, context {}",
            c.num_heads, c.num_kv_heads, c.head_dim, c.max_position_embeddings
        );
        let _ = writeln!(
            w,
            "  rms_norm_eps {:e}, rope theta {}, layout {:?}, scaling {}",
            c.rms_norm_eps,
            c.rope_theta,
            c.rope_layout,
            rope_words(c)
        );
        let _ = writeln!(
            w,
            "  attention bias {}, mlp bias {}, tied embeddings {}",
            c.attention_bias, c.mlp_bias, c.tie_word_embeddings
        );
        let _ = writeln!(
            w,
            "  bos {}, eos {:?}{}",
            c.bos_token_id
                .map_or_else(|| "none".to_string(), |b| b.to_string()),
            c.eos_token_ids,
            c.torch_dtype
                .as_ref()
                .map(|d| format!(", torch_dtype {d}"))
                .unwrap_or_default()
        );
        let _ = writeln!(w, "\ntensors by group");
        for g in &self.groups {
            let list: Vec<String> = g
                .dtypes
                .iter()
                .map(|d| format!("{} x{} ({})", d.dtype, d.tensors, bytes(d.bytes)))
                .collect();
            let note = g.note.as_deref().unwrap_or_default();
            let _ = writeln!(w, "  {:<10} {}{note}", g.group, list.join(", "));
        }
        let _ = writeln!(w, "quantization {}", self.quantization);
        let m = &self.memory;
        let _ = writeln!(w, "\nmemory");
        let _ = writeln!(w, "  weights          {}", bytes(m.weights_bytes));
        let _ = writeln!(
            w,
            "  KV cache         {} per 1k tokens, {} at {} tokens (f32); f16: {}, {}",
            bytes(m.kv_f32_bytes_per_1k_tokens),
            bytes(m.kv_f32_bytes_full_context),
            m.context_length,
            bytes(m.kv_f16_bytes_per_1k_tokens),
            bytes(m.kv_f16_bytes_full_context)
        );
        let _ = writeln!(
            w,
            "  activations      {} decode, {} prefill of {ACTIVATION_TOKENS} tokens",
            bytes(m.activation_bytes_decode),
            bytes(m.activation_bytes_prefill)
        );
        let _ = writeln!(
            w,
            "  total            {} (weights + f32 KV at full context + prefill)",
            bytes(m.total_bytes_full_context_f32)
        );
        let _ = writeln!(w, "  KV: {}", m.kv_assumption);
        let _ = writeln!(w, "  activations: {}", m.activation_formula);
        if let Some(t) = &self.tokenizer {
            let _ = writeln!(w, "\ntokenizer   {t}");
        }
        if let Some(t) = self.chat_template {
            let _ = writeln!(w, "chat template {}", if t { "present" } else { "absent" });
        }
        if !self.backends.is_empty() {
            let _ = writeln!(w, "\nbackends");
        }
        for b in &self.backends {
            let verdict = if b.can_run { "can run" } else { "cannot run" };
            let _ = writeln!(w, "  {} on {}: {verdict}", b.backend, b.device);
            for d in &b.details {
                let _ = writeln!(w, "    {d}");
            }
            for p in &b.problems {
                let _ = writeln!(w, "    problem: {p}");
            }
        }
        s
    }
}

/// Activation bytes of a step of `t` tokens (the formula `inspect` states).
pub fn activation_bytes(c: &ModelConfig, t: usize) -> u64 {
    let (h, q, kv, ff, v, t) = (
        c.hidden_size as u64,
        c.q_dim() as u64,
        c.kv_dim() as u64,
        c.intermediate_size as u64,
        c.vocab_size as u64,
        t as u64,
    );
    4 * t * (2 * h + 2 * q + 2 * kv + 3 * ff) + 4 * v
}

fn memory(c: &ModelConfig, store: &WeightStore) -> Memory {
    let kv_per_token = 2 * c.num_layers as u64 * c.kv_dim() as u64;
    let ctx = c.max_position_embeddings as u64;
    let (h, q, kv, ff, v) = (
        c.hidden_size as u64,
        c.q_dim() as u64,
        c.kv_dim() as u64,
        c.intermediate_size as u64,
        c.vocab_size as u64,
    );
    let act = |t: u64| activation_bytes(c, t as usize);
    let weights = store.total_bytes() as u64;
    Memory {
        weights_bytes: weights,
        kv_assumption: format!(
            "K and V for every layer, kv_heads x head_dim values per token: 2 x {} layers x {} \
             x {} = {} values per token, 4 bytes each in f32, 2 in f16",
            c.num_layers, c.num_kv_heads, c.head_dim, kv_per_token
        ),
        kv_f32_bytes_per_1k_tokens: kv_per_token * 4 * 1024,
        kv_f16_bytes_per_1k_tokens: kv_per_token * 2 * 1024,
        context_length: c.max_position_embeddings,
        kv_f32_bytes_full_context: kv_per_token * 4 * ctx,
        kv_f16_bytes_full_context: kv_per_token * 2 * ctx,
        activation_formula: format!(
            "4 B x T x (2 hidden + 2 q_dim + 2 kv_dim + 3 intermediate) + 4 B x vocab, with \
             hidden {h}, q_dim {q}, kv_dim {kv}, intermediate {ff}, vocab {v}: f32 residual, \
             normed input, q, k, v, attention output, gate, up and swiglu output for T tokens \
             (T = 1 decode, {ACTIVATION_TOKENS} prefill), logits of the last row; attention \
             is assumed not to hold a T x context score matrix (online softmax)"
        ),
        activation_bytes_decode: act(1),
        activation_bytes_prefill: act(ACTIVATION_TOKENS as u64),
        total_bytes_full_context_f32: weights
            + kv_per_token * 4 * ctx
            + act(ACTIVATION_TOKENS as u64),
    }
}

/// llama.cpp's `general.file_type` values (enum llama_ftype).
const GGUF_FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
];

fn quantization_summary(c: &ModelConfig, store: &WeightStore) -> String {
    if store.format == Format::Gguf {
        return match store.meta.opt_u32("general.file_type").ok().flatten() {
            Some(ft) => {
                let name = GGUF_FILE_TYPES
                    .iter()
                    .find(|(id, _)| *id == ft)
                    .map_or("unknown", |(_, n)| n);
                format!("GGUF file type {name} (general.file_type {ft})")
            }
            None => "GGUF, file type not stated".into(),
        };
    }
    match &c.quantization {
        Some(q) => compressed_tensors_words(q),
        None => format!(
            "none (weights as stored{})",
            c.torch_dtype
                .as_ref()
                .map(|d| format!(", torch_dtype {d}"))
                .unwrap_or_default()
        ),
    }
}

fn compressed_tensors_words(q: &QuantizationConfig) -> String {
    let mut s = q.quant_method.clone();
    if let Some(f) = &q.format {
        let _ = write!(s, " ({f})");
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let flag = |v: Option<bool>, yes: &str, no: &str| match v {
        Some(true) => yes.to_string(),
        Some(false) => no.to_string(),
        None => "?".into(),
    };
    for g in &q.groups {
        let _ = write!(s, "; targets [{}]", g.targets.join(", "));
        if let Some(b) = g.weight_bits {
            let _ = write!(
                s,
                ": weights {}{b} per {}, {}",
                opt(&g.weight_type),
                opt(&g.weight_strategy),
                flag(g.weight_symmetric, "symmetric", "asymmetric")
            );
        }
        if let Some(b) = g.input_bits {
            let _ = write!(
                s,
                ", inputs {}{b} per {}, {}",
                opt(&g.input_type),
                opt(&g.input_strategy),
                flag(g.input_dynamic, "dynamic", "static")
            );
        }
    }
    if !q.ignore.is_empty() {
        let _ = write!(s, "; not quantized: {}", q.ignore.join(", "));
    }
    s
}

fn rope_words(c: &ModelConfig) -> String {
    use super::config::RopeScaling::*;
    match &c.rope_scaling {
        None => "none".into(),
        Some(Linear { factor }) => format!("linear x{factor}"),
        Some(Dynamic {
            factor,
            original_max_position_embeddings: o,
        }) => format!("dynamic NTK x{factor} from {o}"),
        Some(Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: o,
        }) => {
            format!("llama3 x{factor} (low {low_freq_factor}, high {high_freq_factor}, from {o})")
        }
        Some(LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings: o,
            ..
        }) if short_factor == long_factor => {
            format!(
                "per-frequency divisors ({} values, from {o})",
                short_factor.len()
            )
        }
        Some(LongRope {
            original_max_position_embeddings: o,
            ..
        }) => format!("longrope (short/long factor lists, from {o})"),
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
