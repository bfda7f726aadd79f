//! Which tensor gets which dtype: the output types of `lamina quantize` and llama.cpp's rules
//! for its K-quant mixtures (`llama_tensor_get_type` in llama.cpp's src/llama-quant.cpp,
//! learned from reading it; the rules are restated here, not copied).
//!
//! - Only weight matrices are quantized (2-D or more, name ending in `weight`, not a norm);
//!   1-D tensors (norms, biases, rope factors) are written as F32.
//! - For every quantized type, the output matrix (or, when the model ties it to the token
//!   embedding, `token_embd`) is Q6_K, or Q8_0 when its rows are not a multiple of 256;
//!   a Q8_0 file keeps it Q8_0.
//! - Mixtures (`*_M`, `*_S`) raise the bits of `attn_v`, `attn_qkv` and `ffn_down` on some
//!   layers: "more bits" layers are the first and last eighth and every third layer between.
//! - A row length the chosen type cannot hold falls back as llama.cpp does: Q4_K -> Q5_0,
//!   Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 when even 32 does not divide it. llama.cpp sends
//!   Q2_K/Q3_K to IQ4_NL, which lamina does not write; Q4_0 (the same 4.5 bits) stands in.

use crate::dtype::DType;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Every weight matrix in the base type (after the output rule).
    Pure,
    Q3KM,
    Q4KS,
    Q4KM,
    Q5KM,
}

/// A `--type` of `lamina quantize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantType {
    pub name: &'static str,
    pub base: DType,
    pub mix: Mix,
    /// llama.cpp's `general.file_type` number (llama_ftype).
    pub file_type: u32,
}

const fn qt(name: &'static str, base: DType, mix: Mix, file_type: u32) -> QuantType {
    QuantType {
        name,
        base,
        mix,
        file_type,
    }
}

/// Every type, with llama.cpp's file-type numbers. q3_k and q5_k are what llama.cpp calls
/// Q3_K_S and Q5_K_S (those have no rules beyond the output one); q2_k and q4_k are pure
/// and carry the nearest llama.cpp number (a label for readers, nothing reads it as a rule).
pub const TYPES: &[QuantType] = &[
    qt("f32", DType::F32, Mix::Pure, 0),
    qt("f16", DType::F16, Mix::Pure, 1),
    qt("bf16", DType::BF16, Mix::Pure, 32),
    qt("q8_0", DType::Q8_0, Mix::Pure, 7),
    qt("q4_0", DType::Q4_0, Mix::Pure, 2),
    qt("q4_1", DType::Q4_1, Mix::Pure, 3),
    qt("q5_0", DType::Q5_0, Mix::Pure, 8),
    qt("q5_1", DType::Q5_1, Mix::Pure, 9),
    qt("q2_k", DType::Q2_K, Mix::Pure, 10),
    qt("q3_k", DType::Q3_K, Mix::Pure, 11),
    qt("q3_k_s", DType::Q3_K, Mix::Pure, 11),
    qt("q3_k_m", DType::Q3_K, Mix::Q3KM, 12),
    qt("q4_k", DType::Q4_K, Mix::Pure, 14),
    qt("q4_k_s", DType::Q4_K, Mix::Q4KS, 14),
    qt("q4_k_m", DType::Q4_K, Mix::Q4KM, 15),
    qt("q5_k", DType::Q5_K, Mix::Pure, 16),
    qt("q5_k_s", DType::Q5_K, Mix::Pure, 16),
    qt("q5_k_m", DType::Q5_K, Mix::Q5KM, 17),
    qt("q6_k", DType::Q6_K, Mix::Pure, 18),
];

pub fn parse_type(name: &str) -> Result<QuantType> {
    let want = name.to_ascii_lowercase();
    TYPES
        .iter()
        .find(|t| t.name == want)
        .copied()
        .ok_or_else(|| {
            Error::Input(format!(
                "unknown quantization type '{name}'; valid types: {}",
                TYPES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// What the rules need to know of the model.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub arch: String,
    pub n_layer: usize,
    /// The file has its own `output.weight` (else `token_embd` doubles as the output).
    pub has_output: bool,
}

/// llama.cpp's "use more bits" layers: the first and last eighth, and every third between.
pub fn more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize).rem_euclid(3) == 2
}

/// Whether a tensor is a weight matrix that gets quantized.
pub fn is_quantizable(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 2 && name.ends_with("weight") && !name.ends_with("_norm.weight")
}

/// The dtype of tensor `name` (GGUF naming) of `shape` (outermost first) in a file of type `t`.
pub fn tensor_type(t: &QuantType, name: &str, shape: &[usize], m: &ModelFacts) -> Result<DType> {
    if !is_quantizable(name, shape) {
        return Ok(DType::F32);
    }
    let cols = *shape.last().expect("2-D or more");
    if !t.base.is_quantized() {
        return Ok(t.base);
    }
    let layer = crate::weights::names::layer_of(name);
    let is = |part: &str| name.contains(part);
    let is_output = name == "output.weight" || (!m.has_output && name == "token_embd.weight");
    let mut ty = t.base;
    if is_output {
        if !cols.is_multiple_of(256) {
            ty = DType::Q8_0;
        } else if ty != DType::Q8_0 {
            ty = DType::Q6_K;
        }
    } else if let Some(i) = layer {
        let n = m.n_layer;
        if is("attn_v.weight") {
            ty = match t.mix {
                Mix::Q3KM if i < 2 => DType::Q5_K,
                Mix::Q3KM => DType::Q4_K,
                Mix::Q4KM | Mix::Q5KM if more_bits(i, n) => DType::Q6_K,
                Mix::Q4KS if i < 4 => DType::Q5_K,
                _ => ty,
            };
            // llama.cpp's 70B rule: 8 query heads share each attn_v, which is cheap to widen.
            let is_70b = m.arch == "llama" && m.n_layer == 80;
            if is_70b && t.mix != Mix::Pure && matches!(ty, DType::Q3_K | DType::Q4_K) {
                ty = DType::Q5_K;
            }
        } else if is("attn_qkv.weight") {
            ty = match t.mix {
                Mix::Q3KM => DType::Q4_K,
                Mix::Q4KM => DType::Q5_K,
                Mix::Q5KM => DType::Q6_K,
                _ => ty,
            };
        } else if is("ffn_down") {
            ty = match t.mix {
                Mix::Q3KM if i < n / 16 => DType::Q5_K,
                Mix::Q3KM => DType::Q4_K,
                Mix::Q4KM | Mix::Q5KM if more_bits(i, n) => DType::Q6_K,
                Mix::Q4KS if i < n / 8 => DType::Q5_K,
                _ => ty,
            };
        } else if is("attn_output.weight") && t.mix == Mix::Q3KM {
            ty = DType::Q4_K;
        }
    }
    fallback(ty, name, cols)
}

/// A type whose blocks fit rows of `cols` elements, as llama.cpp falls back.
fn fallback(ty: DType, name: &str, cols: usize) -> Result<DType> {
    if cols.is_multiple_of(ty.block_elems()) {
        return Ok(ty);
    }
    let next = match ty {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        other => {
            return Err(Error::Input(format!(
                "tensor '{name}' has rows of {cols} elements, which {other} (blocks of {}) \
                 cannot hold; choose f16, bf16, f32 or a K-quant type (those fall back to a \
                 type that fits)",
                other.block_elems()
            )))
        }
    };
    if cols.is_multiple_of(next.block_elems()) {
        Ok(next)
    } else {
        Ok(DType::F16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_of_32() {
        let on: Vec<usize> = (0..32).filter(|&i| more_bits(i, 32)).collect();
        assert_eq!(
            on,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(DType::Q4_K, "x", 96).unwrap(), DType::Q5_0);
        assert_eq!(fallback(DType::Q6_K, "x", 96).unwrap(), DType::Q8_0);
        assert_eq!(fallback(DType::Q5_K, "x", 100).unwrap(), DType::F16);
        assert!(fallback(DType::Q8_0, "x", 100).is_err());
    }
}
