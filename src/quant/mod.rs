//! Rows of weights in their file dtype, to f32 and back: the definition every kernel of ours is
//! checked against, and the quantizer of `lamina quantize` and of random test weights.
//!
//! Formats follow GGML's block layouts (little-endian, f16 block scales). Dequantization does
//! the float operations in the order GGML's reference and gguf-py do them (scale times sub-scale
//! first, then times the level, then minus the offset), so results agree bit for bit.

mod kquants;
mod legacy;
mod search;

use crate::dtype::DType;
use crate::error::{Error, Result};
use half::{bf16, f16};

/// Dtypes `dequantize_row` reads.
pub const DEQUANTIZE_DTYPES: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Dtypes `quantize_row` writes.
pub const QUANTIZE_DTYPES: &[DType] = DEQUANTIZE_DTYPES;

fn unsupported(what: &str, dtype: DType, list: &[DType]) -> Error {
    let names = list
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Error::Input(format!(
        "cannot {what} dtype {dtype}: lamina {what}s only {names}"
    ))
}

/// Checks that `elems` is a whole number of blocks and returns the row's byte length.
fn row_len(dtype: DType, elems: usize) -> Result<usize> {
    dtype.row_bytes(elems).ok_or_else(|| {
        Error::Input(format!(
            "a {dtype} row has a multiple of {} elements; got {elems}",
            dtype.block_elems()
        ))
    })
}

/// Decodes one row (or any whole number of blocks) of `dtype` into `out`; `bytes` must hold
/// exactly the blocks of `out.len()` elements.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    if !DEQUANTIZE_DTYPES.contains(&dtype) {
        return Err(unsupported("dequantize", dtype, DEQUANTIZE_DTYPES));
    }
    let need = row_len(dtype, out.len())?;
    if bytes.len() != need {
        return Err(Error::Format(format!(
            "a {dtype} row of {} elements takes {need} bytes; got {}",
            out.len(),
            bytes.len()
        )));
    }
    let be = dtype.block_bytes();
    let ne = dtype.block_elems();
    let blocks = bytes.chunks_exact(be).zip(out.chunks_exact_mut(ne));
    match dtype {
        DType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        DType::F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
        DType::BF16 => blocks.for_each(|(b, y)| y[0] = bf16_at(b, 0)),
        DType::Q4_0 => blocks.for_each(|(b, y)| legacy::dequant_q4_0(b, y)),
        DType::Q4_1 => blocks.for_each(|(b, y)| legacy::dequant_q4_1(b, y)),
        DType::Q5_0 => blocks.for_each(|(b, y)| legacy::dequant_q5_0(b, y)),
        DType::Q5_1 => blocks.for_each(|(b, y)| legacy::dequant_q5_1(b, y)),
        DType::Q8_0 => blocks.for_each(|(b, y)| legacy::dequant_q8_0(b, y)),
        DType::Q2_K => blocks.for_each(|(b, y)| kquants::dequant_q2_k(b, y)),
        DType::Q3_K => blocks.for_each(|(b, y)| kquants::dequant_q3_k(b, y)),
        DType::Q4_K => blocks.for_each(|(b, y)| kquants::dequant_q4_k(b, y)),
        DType::Q5_K => blocks.for_each(|(b, y)| kquants::dequant_q5_k(b, y)),
        DType::Q6_K => blocks.for_each(|(b, y)| kquants::dequant_q6_k(b, y)),
        _ => unreachable!("checked against DEQUANTIZE_DTYPES above"),
    }
    Ok(())
}

/// Encodes `src` (a whole number of blocks) as `dtype`: round to nearest for F16/BF16 and the
/// legacy block types (the same bytes GGML's reference quantizer writes), a least-squares
/// scale search for the K-quants.
pub fn quantize_row(dtype: DType, src: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; row_len(dtype, src.len())?];
    quantize_row_into(dtype, src, &mut out)?;
    Ok(out)
}

/// `quantize_row` into a caller's buffer, which must be exactly the row's byte length (no
/// allocation per row: `lamina quantize` calls this billions of elements at a time).
pub fn quantize_row_into(dtype: DType, src: &[f32], out: &mut [u8]) -> Result<()> {
    if !QUANTIZE_DTYPES.contains(&dtype) {
        return Err(unsupported("quantize", dtype, QUANTIZE_DTYPES));
    }
    let need = row_len(dtype, src.len())?;
    if out.len() != need {
        return Err(Error::Format(format!(
            "a {dtype} row of {} elements takes {need} bytes; the buffer has {}",
            src.len(),
            out.len()
        )));
    }
    let be = dtype.block_bytes();
    let ne = dtype.block_elems();
    let blocks = src.chunks_exact(ne).zip(out.chunks_exact_mut(be));
    match dtype {
        DType::F32 => blocks.for_each(|(x, b)| b.copy_from_slice(&x[0].to_le_bytes())),
        DType::F16 => blocks.for_each(|(x, b)| b.copy_from_slice(&f16_bytes(x[0]))),
        DType::BF16 => {
            blocks.for_each(|(x, b)| b.copy_from_slice(&bf16::from_f32(x[0]).to_le_bytes()))
        }
        DType::Q4_0 => blocks.for_each(|(x, b)| legacy::quant_q4_0(x, b)),
        DType::Q4_1 => blocks.for_each(|(x, b)| legacy::quant_q4_1(x, b)),
        DType::Q5_0 => blocks.for_each(|(x, b)| legacy::quant_q5_0(x, b)),
        DType::Q5_1 => blocks.for_each(|(x, b)| legacy::quant_q5_1(x, b)),
        DType::Q8_0 => blocks.for_each(|(x, b)| legacy::quant_q8_0(x, b)),
        DType::Q2_K => blocks.for_each(|(x, b)| kquants::quant_q2_k(x, b)),
        DType::Q3_K => blocks.for_each(|(x, b)| kquants::quant_q3_k(x, b)),
        DType::Q4_K => blocks.for_each(|(x, b)| kquants::quant_q4_k(x, b)),
        DType::Q5_K => blocks.for_each(|(x, b)| kquants::quant_q5_k(x, b)),
        DType::Q6_K => blocks.for_each(|(x, b)| kquants::quant_q6_k(x, b)),
        _ => unreachable!("checked against QUANTIZE_DTYPES above"),
    }
    Ok(())
}

/// The little-endian f16 at byte `at`, widened (exactly) to f32.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

fn bf16_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[at], b[at + 1]]) as u32) << 16)
}

/// f32 to f16 bytes, rounding to nearest even (as numpy's astype and GGML do).
fn f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// f32 rounded to f16 and back: the value a block scale really has once stored.
fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}
