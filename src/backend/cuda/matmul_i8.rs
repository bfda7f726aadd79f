//! W8A8 matmul (compressed-tensors int8 weights with per-row scales, activations quantized
//! per token at run time): kernels/matmul_i8.cu.

use super::blas::{Elem, Gemm};
use super::matmul::{Path, MAX_T};
use super::nvrtc::{self, Variant};
use super::ops::arg;
use super::{Cuda, CudaBuf, CudaWeight};
use crate::backend::WeightView;
use crate::dtype::DType;
use crate::error::Result;

impl Cuda {
    /// W8A8: x quantized per token (matmul_i8_quantize), then int8 products with int32
    /// accumulation: matmul_i8_gemv up to MAX_T tokens, cuBLASLt above (then
    /// matmul_i8_scale), each scaled by the token's and the row's scale.
    pub(crate) fn matmul_i8(
        &self,
        x: &CudaBuf,
        w: &WeightView<'_, CudaWeight>,
        out: &CudaBuf,
        t: usize,
        path: Path,
    ) -> Result<()> {
        let wt = w.w;
        if wt.shape.len() != 2 || w.cols != wt.cols() || w.row0 + w.rows > wt.rows() {
            return Err(self.err(format!(
                "matmul: view rows {}..{} x {} cols of '{}' with shape {:?}",
                w.row0,
                w.row0 + w.rows,
                w.cols,
                wt.name,
                wt.shape
            )));
        }
        let (rows, cols) = (w.rows, w.cols);
        let scale = w
            .scale
            .ok_or_else(|| self.err(format!("int8 weight '{}' has no per-row scale", wt.name)))?;
        let per_row = |v: &CudaWeight| v.shape.iter().product::<usize>() == wt.rows();
        if !nvrtc::VECTOR_DTYPES.contains(&scale.dtype) || !per_row(scale) {
            return Err(self.err(format!(
                "scale '{}' of '{}' is {} {:?}; one F32/F16/BF16 value per row is needed",
                scale.name, wt.name, scale.dtype, scale.shape
            )));
        }
        if let Some(z) = w.zero {
            if z.dtype != DType::I8 || !per_row(z) {
                return Err(self.err(format!(
                    "zero point '{}' of '{}' is {} {:?}; one I8 value per row is needed",
                    z.name, wt.name, z.dtype, z.shape
                )));
            }
        }
        if t == 0 || rows == 0 {
            return Ok(());
        }
        if !cols.is_multiple_of(4) {
            return Err(self.err(format!(
                "int8 weight '{}' has {cols} columns; the int8 kernels need a multiple of 4",
                wt.name
            )));
        }
        self.need_len("matmul x", x, t * cols)?;
        self.need_len("matmul out", out, t * rows)?;
        if x.ptr() == out.ptr() {
            return Err(self.err("matmul: out must not be x"));
        }
        let base = wt.ptr() + (w.row0 * cols) as u64;
        let vec16 = cols.is_multiple_of(16) && base.is_multiple_of(16);
        let v = Variant::matmul_i8(scale.dtype, vec16)?;
        let qbytes = (t * cols).next_multiple_of(256);
        let q = self.scratch(|s| &mut s.quant, qbytes + 8 * t)?;
        let (qx, sx, sq) = (q, q + qbytes as u64, q + (qbytes + 4 * t) as u64);
        let (xp, ci) = (x.ptr(), i32::try_from(cols).map_err(|_| self.err("cols"))?);
        self.launch(
            &v,
            "matmul_i8_quantize",
            (t as u32, 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&xp), arg(&qx), arg(&sx), arg(&sq), arg(&ci)],
        )?;
        let sp = scale.ptr() + (w.row0 * scale.dtype.block_bytes()) as u64;
        let zp = w.zero.map_or(0u64, |z| z.ptr() + w.row0 as u64);
        let ri = i32::try_from(rows).map_err(|_| self.err("rows"))?;
        let blas_ok = rows.is_multiple_of(4) && vec16;
        let use_blas = match path {
            Path::Auto => t > MAX_T && blas_ok,
            Path::Gemv => false,
            Path::Blas if blas_ok => true,
            Path::Blas => {
                return Err(self.err(format!(
                    "cuBLASLt path asked for a {rows} x {cols} int8 view that it does not take"
                )))
            }
        };
        if use_blas {
            let g = Gemm {
                m: rows,
                n: t,
                k: cols,
                a: base,
                a_elem: Elem::I8,
                b: qx,
                b_elem: Elem::I8,
                d: out.ptr(),
                ldd: rows,
                accumulate: false,
            };
            self.lock(&self.blas)?.gemm(&g)?;
            let (op, total) = (out.ptr(), (t * rows) as i64);
            let blocks = (t * rows)
                .div_ceil(256)
                .min(self.info.multiprocessors as usize * 16) as u32;
            return self.launch(
                &v,
                "matmul_i8_scale",
                (blocks, 1, 1),
                (256, 1, 1),
                0,
                &mut [
                    arg(&op),
                    arg(&sx),
                    arg(&sq),
                    arg(&sp),
                    arg(&zp),
                    arg(&ri),
                    arg(&total),
                ],
            );
        }
        // Two rows per warp (NR in matmul_i8.cu), eight warps per block.
        let blocks = u32::try_from(rows.div_ceil(16)).map_err(|_| self.err("rows"))?;
        let rb = cols as i64;
        let mut t0 = 0;
        while t0 < t {
            let n = MAX_T.min(t - t0);
            let (qxt, sxt, sqt) = (
                qx + (t0 * cols) as u64,
                sx + 4 * t0 as u64,
                sq + 4 * t0 as u64,
            );
            let (op, ni) = (out.ptr() + (4 * t0 * rows) as u64, n as i32);
            self.launch(
                &v,
                "matmul_i8_gemv",
                (blocks, 1, 1),
                (256, 1, 1),
                0,
                &mut [
                    arg(&base),
                    arg(&rb),
                    arg(&qxt),
                    arg(&sxt),
                    arg(&sqt),
                    arg(&sp),
                    arg(&zp),
                    arg(&op),
                    arg(&ri),
                    arg(&ci),
                    arg(&ni),
                ],
            )?;
            t0 += n;
        }
        Ok(())
    }
}
