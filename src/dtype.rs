//! Tensor dtypes: names, GGML type ids, block sizes and bytes per block.

use crate::error::{Error, Result};

/// Every dtype a weight file can hold. Quantized GGML types are blocks of `block_elems()`
/// elements stored in `block_bytes()` bytes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    I16,
    I32,
    I64,
    F8_E4M3,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    IQ1_M,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (dtype, GGML type id, elements per block, bytes per block)
const TABLE: &[(DType, u32, usize, usize)] = &[
    (DType::F32, 0, 1, 4),
    (DType::F16, 1, 1, 2),
    (DType::Q4_0, 2, 32, 18),
    (DType::Q4_1, 3, 32, 20),
    (DType::Q5_0, 6, 32, 22),
    (DType::Q5_1, 7, 32, 24),
    (DType::Q8_0, 8, 32, 34),
    (DType::Q8_1, 9, 32, 36),
    (DType::Q2_K, 10, 256, 84),
    (DType::Q3_K, 11, 256, 110),
    (DType::Q4_K, 12, 256, 144),
    (DType::Q5_K, 13, 256, 176),
    (DType::Q6_K, 14, 256, 210),
    (DType::Q8_K, 15, 256, 292),
    (DType::IQ2_XXS, 16, 256, 66),
    (DType::IQ2_XS, 17, 256, 74),
    (DType::IQ3_XXS, 18, 256, 98),
    (DType::IQ1_S, 19, 256, 50),
    (DType::IQ4_NL, 20, 32, 18),
    (DType::IQ3_S, 21, 256, 110),
    (DType::IQ2_S, 22, 256, 82),
    (DType::IQ4_XS, 23, 256, 136),
    (DType::I8, 24, 1, 1),
    (DType::I16, 25, 1, 2),
    (DType::I32, 26, 1, 4),
    (DType::I64, 27, 1, 8),
    (DType::F64, 28, 1, 8),
    (DType::IQ1_M, 29, 256, 56),
    (DType::BF16, 30, 1, 2),
    (DType::TQ1_0, 34, 256, 54),
    (DType::TQ2_0, 35, 256, 66),
    (DType::MXFP4, 39, 32, 17),
    // Not a GGML type: safetensors only, so it gets an id GGML will not use.
    (DType::F8_E4M3, u32::MAX, 1, 1),
];

impl DType {
    fn row(self) -> &'static (DType, u32, usize, usize) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every DType is in TABLE")
    }

    /// The dtype of a GGML type id, or an error naming the id.
    pub fn from_ggml(id: u32) -> Result<DType> {
        TABLE
            .iter()
            .find(|r| r.1 == id && id != u32::MAX)
            .map(|r| r.0)
            .ok_or_else(|| Error::Format(format!("unknown GGML tensor type id {id}")))
    }

    pub fn ggml_id(self) -> Option<u32> {
        let id = self.row().1;
        (id != u32::MAX).then_some(id)
    }

    /// Elements per block (1 for plain scalar types).
    pub fn block_elems(self) -> usize {
        self.row().2
    }

    /// Bytes per block (bytes per element for plain scalar types).
    pub fn block_bytes(self) -> usize {
        self.row().3
    }

    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bytes of a row of `n` elements, or None when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_elems())
            .then(|| n / self.block_elems() * self.block_bytes())
    }

    /// Bytes of a tensor of this shape (innermost dimension last), checked for overflow
    /// and for whole blocks.
    pub fn tensor_bytes(self, shape: &[usize]) -> Option<usize> {
        let inner = *shape.last().unwrap_or(&1);
        let outer = shape[..shape.len().saturating_sub(1)]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        self.row_bytes(inner)?.checked_mul(outer)
    }

    pub fn all() -> impl Iterator<Item = DType> {
        TABLE.iter().map(|r| r.0)
    }
}

/// Shown with GGML's spelling (Q4_K, BF16, ...), which is also ours.
impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
