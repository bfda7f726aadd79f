//! Canonical tensor names. We name tensors the way GGUF does (`blk.N.attn_q.weight`), and
//! map Hugging Face names onto them, so the forward pass looks tensors up one way only.
//!
//! Fused tensors:
//! - Phi-3 `self_attn.qkv_proj` is `attn_qkv`: rows [q (heads*head_dim) | k | v
//!   (kv_heads*head_dim each)], read as three row ranges of one matrix (no copy).
//! - Phi-3 `mlp.gate_up_proj` is `ffn_gate_up`: rows [gate | up], intermediate rows each.
//!   llama.cpp's GGUF phi3 stores the same fused matrix under `ffn_up` (2 * intermediate rows)
//!   and has no `ffn_gate`; `gguf_to_canonical` renames it to `ffn_gate_up` so both formats
//!   look the same to the model (the file's name stays in `TensorInfo::file_name`).
//!
//! compressed-tensors adds parameters next to a weight (`.weight_scale`, `.weight_zero_point`,
//! `.input_scale`, `.input_zero_point`); they keep their suffix on the canonical base
//! (`blk.0.attn_q.weight_scale`). Names we do not know are kept unchanged, so `inspect` can
//! list them.

/// Parameter suffixes, longest first so `weight_scale` is not read as `weight`.
const PARAMS: [&str; 6] = [
    "weight_zero_point",
    "input_zero_point",
    "weight_scale",
    "input_scale",
    "weight",
    "bias",
];

/// Whole-model modules: (Hugging Face, canonical).
const GLOBAL: [(&str, &str); 3] = [
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// Per-layer modules under `model.layers.N.` / `blk.N.`: (Hugging Face, canonical).
const LAYER: [(&str, &str); 11] = [
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.qkv_proj", "attn_qkv"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.gate_up_proj", "ffn_gate_up"),
];

/// Splits `module.param` at a known parameter suffix.
fn split_param(name: &str) -> Option<(&str, &str)> {
    PARAMS.iter().find_map(|p| {
        let module = name.strip_suffix(p)?.strip_suffix('.')?;
        Some((module, *p))
    })
}

/// Canonical name of a Hugging Face tensor name; unknown names come back unchanged.
pub fn hf_to_canonical(name: &str) -> String {
    let Some((module, param)) = split_param(name) else {
        return name.to_string();
    };
    if let Some((_, c)) = GLOBAL.iter().find(|(hf, _)| *hf == module) {
        return format!("{c}.{param}");
    }
    if let Some(rest) = module.strip_prefix("model.layers.") {
        if let Some((n, sub)) = rest.split_once('.') {
            if n.parse::<usize>().is_ok() {
                if let Some((_, c)) = LAYER.iter().find(|(hf, _)| *hf == sub) {
                    return format!("blk.{n}.{c}.{param}");
                }
            }
        }
    }
    name.to_string()
}

/// Hugging Face name of a canonical name; unknown names come back unchanged.
pub fn canonical_to_hf(name: &str) -> String {
    let Some((module, param)) = split_param(name) else {
        return name.to_string();
    };
    if let Some((hf, _)) = GLOBAL.iter().find(|(_, c)| *c == module) {
        return format!("{hf}.{param}");
    }
    if let Some(rest) = module.strip_prefix("blk.") {
        if let Some((n, sub)) = rest.split_once('.') {
            if n.parse::<usize>().is_ok() {
                if let Some((hf, _)) = LAYER.iter().find(|(_, c)| *c == sub) {
                    return format!("model.layers.{n}.{hf}.{param}");
                }
            }
        }
    }
    name.to_string()
}

/// Canonical name of a GGUF tensor name: GGUF's own names, except phi3's fused `ffn_up`.
pub fn gguf_to_canonical(name: &str, arch: &str) -> String {
    if arch == "phi3" {
        if let Some(rest) = name.strip_prefix("blk.") {
            if let Some((n, tail)) = rest.split_once('.') {
                if let Some(param) = tail.strip_prefix("ffn_up.") {
                    return format!("blk.{n}.ffn_gate_up.{param}");
                }
            }
        }
    }
    name.to_string()
}

/// The GGUF name of a canonical name for architecture `arch` (the inverse of
/// `gguf_to_canonical`).
pub fn canonical_to_gguf(name: &str, arch: &str) -> String {
    if arch == "phi3" {
        if let Some(rest) = name.strip_prefix("blk.") {
            if let Some((n, tail)) = rest.split_once('.') {
                if let Some(param) = tail.strip_prefix("ffn_gate_up.") {
                    return format!("blk.{n}.ffn_up.{param}");
                }
            }
        }
    }
    name.to_string()
}

/// The layer index of a canonical per-layer name (`blk.N....`).
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_both_ways() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.3.input_layernorm.weight",
                "blk.3.attn_norm.weight",
            ),
            ("model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"),
            (
                "model.layers.12.self_attn.o_proj.weight",
                "blk.12.attn_output.weight",
            ),
            (
                "model.layers.1.self_attn.qkv_proj.weight",
                "blk.1.attn_qkv.weight",
            ),
            (
                "model.layers.1.mlp.gate_up_proj.weight",
                "blk.1.ffn_gate_up.weight",
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "blk.0.ffn_norm.weight",
            ),
            (
                "model.layers.0.mlp.down_proj.weight_scale",
                "blk.0.ffn_down.weight_scale",
            ),
            (
                "model.layers.0.self_attn.k_proj.input_zero_point",
                "blk.0.attn_k.input_zero_point",
            ),
        ];
        for (hf, c) in cases {
            assert_eq!(hf_to_canonical(hf), c);
            assert_eq!(canonical_to_hf(c), hf);
        }
    }

    #[test]
    fn unknown_names_are_kept() {
        for n in [
            "model.layers.0.self_attn.rotary_emb.inv_freq",
            "vision_tower.blocks.0.weight",
            "model.layers.x.mlp.up_proj.weight",
        ] {
            assert_eq!(hf_to_canonical(n), n);
        }
    }

    #[test]
    fn gguf_phi3_fused_up_is_gate_up() {
        assert_eq!(
            gguf_to_canonical("blk.2.ffn_up.weight", "phi3"),
            "blk.2.ffn_gate_up.weight"
        );
        assert_eq!(
            gguf_to_canonical("blk.2.ffn_up.weight", "llama"),
            "blk.2.ffn_up.weight"
        );
        assert_eq!(
            canonical_to_gguf("blk.2.ffn_gate_up.weight", "phi3"),
            "blk.2.ffn_up.weight"
        );
        assert_eq!(layer_of("blk.17.attn_q.weight"), Some(17));
        assert_eq!(layer_of("output.weight"), None);
    }
}
