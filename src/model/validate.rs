//! What the forward pass reads from a weight file, per config, with each tensor's expected
//! shape: `validate` checks a file against it before anything runs. (Which op reads each
//! tensor is the engine's `Plan`, in llama.rs.)

use super::config::{Family, ModelConfig};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::WeightStore;

/// A tensor the forward pass reads and its expected shape.
struct Need {
    name: String,
    shape: Vec<usize>,
    /// Optional tensors (a Llama `attn_output.bias`) are used when present.
    required: bool,
}

impl ModelConfig {
    /// Every tensor the forward pass reads, with its shape.
    fn needs(&self) -> Vec<Need> {
        let (h, q, kv, ff) = (
            self.hidden_size,
            self.q_dim(),
            self.kv_dim(),
            self.intermediate_size,
        );
        let mut out = Vec::new();
        let mut need = |name: String, shape: Vec<usize>, required: bool| {
            out.push(Need {
                name,
                shape,
                required,
            })
        };
        need("token_embd.weight".into(), vec![self.vocab_size, h], true);
        for l in 0..self.num_layers {
            let b = |t: &str| format!("blk.{l}.{t}");
            let mut linear = |t: &str, rows: usize, cols: usize, bias: bool, bias_required| {
                need(b(&format!("{t}.weight")), vec![rows, cols], true);
                if bias {
                    need(b(&format!("{t}.bias")), vec![rows], bias_required);
                }
            };
            let ab = self.attention_bias;
            if self.family == Family::Phi3 {
                linear("attn_qkv", q + 2 * kv, h, ab, true);
            } else {
                linear("attn_q", q, h, ab, true);
                linear("attn_k", kv, h, ab, true);
                linear("attn_v", kv, h, ab, true);
            }
            // Qwen2 has no output-projection bias; Llama's attention_bias covers it.
            linear(
                "attn_output",
                h,
                q,
                true,
                ab && self.family == Family::Llama,
            );
            if self.family == Family::Phi3 {
                linear("ffn_gate_up", 2 * ff, h, self.mlp_bias, true);
            } else {
                linear("ffn_gate", ff, h, self.mlp_bias, true);
                linear("ffn_up", ff, h, self.mlp_bias, true);
            }
            linear("ffn_down", h, ff, self.mlp_bias, true);
            need(b("attn_norm.weight"), vec![h], true);
            need(b("ffn_norm.weight"), vec![h], true);
        }
        need("output_norm.weight".into(), vec![h], true);
        if !self.tie_word_embeddings {
            need("output.weight".into(), vec![self.vocab_size, h], true);
        }
        out
    }

    /// Checks that every tensor the forward pass reads exists with the shape this config
    /// implies, and that every int8 weight has its scale.
    pub fn validate(&self, store: &WeightStore) -> Result<()> {
        let mut problems = Vec::new();
        for n in self.needs() {
            match store.get(&n.name) {
                None if n.required => problems.push(format!(
                    "missing tensor '{}' (expected shape {:?})",
                    n.name, n.shape
                )),
                None => {}
                Some(t) if t.shape != n.shape => problems.push(format!(
                    "tensor '{}' ('{}') has shape {:?}, expected {:?}",
                    n.name, t.file_name, t.shape, n.shape
                )),
                Some(t) if t.dtype == DType::I8 => {
                    let scale = n.name.replace(".weight", ".weight_scale");
                    if n.name.ends_with(".weight") && store.get(&scale).is_none() {
                        problems.push(format!(
                            "tensor '{}' is I8 but '{scale}' (its per-row scale) is missing",
                            n.name
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown = problems.len().min(8);
        let more = match problems.len() - shown {
            0 => String::new(),
            k => format!("\n  ... and {k} more"),
        };
        Err(Error::Model(format!(
            "{} does not match its {} {} config ({} layers, hidden {}, {} heads, {} kv heads, \
             head_dim {}, intermediate {}, vocab {}):\n  {}{more}",
            store.describe(),
            self.variant,
            self.architecture,
            self.num_layers,
            self.hidden_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.intermediate_size,
            self.vocab_size,
            problems[..shown].join("\n  ")
        )))
    }
}
