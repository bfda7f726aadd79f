//! matmul: out[t, rows] = x[t, cols] . W[row0.., cols]^T with W in its file dtype.
//!
//! - t <= MAX_T (decode): `matmul_gemv` (kernels/matmul.cu), one pass over the weight rows,
//!   bandwidth-bound.
//! - larger t (prefill): cuBLASLt on tensor cores. x is cast to the weight's f16/bf16 (F32
//!   weights: an f32 product, no cast); a GGUF weight is dequantized to f16 in bands of rows
//!   into a per-call scratch buffer that is overwritten by the next band: never a stored copy.

use super::blas::{Elem, Gemm};
use super::nvrtc::{self, gemv_rows_per_warp, Variant};
use super::ops::arg;
use super::{Cuda, CudaBuf, CudaWeight, DevMem};
use crate::backend::WeightView;
use crate::dtype::DType;
use crate::error::Result;

/// Most tokens matmul_gemv takes (MAX_T in matmul.cu).
pub const MAX_T: usize = 8;
/// f16 elements of the dequantization band (64 MiB).
const BAND_ELEMS: usize = 32 << 20;
/// Warps per block of matmul_gemv (at most: its __launch_bounds__ is 256 threads).
const GEMV_WARPS: usize = 8;

/// The alignment quant.cuh's loads assume for a row of a GGUF type: Q4_K and Q5_K blocks
/// (144 and 176 bytes) are read 16 bytes at a time, Q4_1, Q5_1 and Q2_K (20, 24, 84 bytes)
/// 4 at a time, the others are only 2-byte aligned and read through funnel shifts. Whole
/// rows of a tensor always have it (block sizes are multiples of it); this guards views.
fn block_alignment(dtype: DType) -> u64 {
    match dtype {
        DType::Q4_K | DType::Q5_K => 16,
        DType::Q4_1 | DType::Q5_1 | DType::Q2_K => 4,
        _ if dtype.is_quantized() => 2,
        _ => 1,
    }
}

/// Which kernel computes a matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// matmul_gemv up to MAX_T tokens, cuBLASLt above (when the shape suits it).
    Auto,
    /// matmul_gemv, in chunks of MAX_T tokens.
    Gemv,
    /// cuBLASLt (after a cast / band dequantization); an error for shapes it does not take.
    Blas,
}

/// Scratch of the cuBLASLt and int8 paths, grown on demand outside recordings.
#[derive(Default)]
pub struct Scratch {
    /// x as f16/bf16.
    cast: Option<DevMem>,
    /// A band of dequantized weight rows (f16).
    band: Option<DevMem>,
    /// x quantized per token for I8 weights: int8 values, then f32 scales, then int32 sums.
    quant: Option<DevMem>,
}

impl Cuda {
    /// Device address of a scratch buffer of at least `bytes`, growing it if needed.
    fn scratch(&self, which: fn(&mut Scratch) -> &mut Option<DevMem>, bytes: usize) -> Result<u64> {
        let mut s = self.lock(&self.scratch)?;
        if let Some(m) = which(&mut s).as_ref() {
            if m.bytes() >= bytes {
                return Ok(m.ptr());
            }
        }
        drop(s);
        self.invalidate_graphs("matmul scratch grows")?;
        let mut s = self.lock(&self.scratch)?;
        let slot = which(&mut s);
        // Free the old buffer first so both never need to fit at once.
        *slot = None;
        let m = self.dev_mem(bytes.next_power_of_two())?;
        let p = m.ptr();
        *slot = Some(m);
        Ok(p)
    }

    /// The matmul op, with the path forced when `path` is not Auto (tests compare paths).
    pub fn op_matmul(
        &self,
        x: &CudaBuf,
        w: &WeightView<'_, CudaWeight>,
        out: &CudaBuf,
        t: usize,
        path: Path,
    ) -> Result<()> {
        let wt = w.w;
        if wt.dtype == DType::I8 {
            return self.matmul_i8(x, w, out, t, path);
        }
        if w.scale.is_some() || w.zero.is_some() {
            return Err(self.err(format!(
                "matmul of '{}': per-row scales and zero points belong to I8 weights, not {}",
                wt.name, wt.dtype
            )));
        }
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
        if t == 0 || rows == 0 {
            return Ok(());
        }
        let row_bytes = wt.dtype.row_bytes(cols).ok_or_else(|| {
            self.err(format!(
                "'{}': {cols} columns are not whole {} blocks",
                wt.name, wt.dtype
            ))
        })?;
        if cols == 0 {
            return Err(self.err(format!("matmul of '{}' with 0 columns", wt.name)));
        }
        self.need_len("matmul x", x, t * cols)?;
        self.need_len("matmul out", out, t * rows)?;
        if x.ptr() == out.ptr() {
            return Err(
                self.err("matmul: out must not be x (every row of x is read while out is written)")
            );
        }
        let base = wt.ptr() + (w.row0 * row_bytes) as u64;
        let align = block_alignment(wt.dtype);
        if !base.is_multiple_of(align) || !(row_bytes as u64).is_multiple_of(align) {
            return Err(self.err(format!(
                "{} rows of '{}' are not {align}-byte aligned, which its kernels assume",
                wt.dtype, wt.name
            )));
        }
        // cuBLASLt gets shapes its tensor-core kernels take: 16-byte aligned rows of W and x
        // and an output row stride of whole 16 bytes. Anything else runs matmul_gemv over
        // chunks of MAX_T tokens (rare shapes only: real models are all multiples of 64).
        let blas_ok = rows.is_multiple_of(4)
            && (wt.dtype.is_quantized() || (cols.is_multiple_of(8) && base.is_multiple_of(16)));
        let use_blas = match path {
            Path::Auto => t > MAX_T && blas_ok,
            Path::Gemv => false,
            Path::Blas if blas_ok => true,
            Path::Blas => {
                return Err(self.err(format!(
                    "cuBLASLt path asked for a {rows} x {cols} {} view that it does not take",
                    wt.dtype
                )))
            }
        };
        if use_blas {
            return self.blas_matmul(x, wt.dtype, base, row_bytes, out, t, rows, cols);
        }
        let mut t0 = 0;
        while t0 < t {
            let n = MAX_T.min(t - t0);
            let xp = x.ptr() + (4 * t0 * cols) as u64;
            let op = out.ptr() + (4 * t0 * rows) as u64;
            self.gemv(xp, wt.dtype, base, row_bytes, op, n, rows, cols)?;
            t0 += n;
        }
        Ok(())
    }

    fn need_len(&self, what: &str, b: &CudaBuf, n: usize) -> Result<()> {
        if b.len() < n {
            return Err(self.err(format!(
                "{what}: buffer holds {} floats, {n} needed",
                b.len()
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv(
        &self,
        xp: u64,
        dtype: DType,
        base: u64,
        row_bytes: usize,
        op: u64,
        t: usize,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        // Plain types load 16-byte vectors: rows must be whole vectors and 16-byte aligned.
        // GGUF blocks are read at their own (2-byte) alignment, except Q4_K / Q5_K whose
        // 144- and 176-byte blocks keep 16-byte alignment and are read 16 bytes at a time.
        let scalar =
            !dtype.is_quantized() && (!row_bytes.is_multiple_of(16) || !base.is_multiple_of(16));
        let v = Variant::matmul(dtype, scalar)?;
        // Eight warps per block, fewer when that would leave SMs idle (k/v projections of
        // GQA models have only a few hundred rows).
        let nr = gemv_rows_per_warp(dtype) as usize;
        let sms = self.info.multiprocessors as usize;
        let mut warps = GEMV_WARPS;
        while warps > 2 && rows.div_ceil(warps * nr) < sms {
            warps /= 2;
        }
        let rows_per_block = warps * nr;
        let blocks = u32::try_from(rows.div_ceil(rows_per_block))
            .map_err(|_| self.err("matmul: too many rows"))?;
        let (rb, r, c, tt) = (
            row_bytes as i64,
            i32::try_from(rows).map_err(|_| self.err("rows"))?,
            i32::try_from(cols).map_err(|_| self.err("cols"))?,
            t as i32,
        );
        self.launch(
            &v,
            "matmul_gemv",
            (blocks, 1, 1),
            ((warps * 32) as u32, 1, 1),
            0,
            &mut [
                arg(&base),
                arg(&rb),
                arg(&xp),
                arg(&op),
                arg(&r),
                arg(&c),
                arg(&tt),
            ],
        )
    }

    /// Launches matmul_cast of `v`: n floats of x into `dst` as f16/bf16.
    fn cast_x(&self, v: &Variant, x: &CudaBuf, dst: u64, n: usize) -> Result<()> {
        let (xp, nn) = (x.ptr(), n as i64);
        let blocks = n.div_ceil(256).min(self.info.multiprocessors as usize * 16) as u32;
        self.launch(
            v,
            "matmul_cast",
            (blocks, 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&xp), arg(&dst), arg(&nn)],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn blas_matmul(
        &self,
        x: &CudaBuf,
        dtype: DType,
        base: u64,
        row_bytes: usize,
        out: &CudaBuf,
        t: usize,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let gemm = |m: usize, a: u64, a_elem: Elem, b: u64, b_elem: Elem, d: u64| Gemm {
            m,
            n: t,
            k: cols,
            a,
            a_elem,
            b,
            b_elem,
            d,
            ldd: rows,
        };
        match dtype {
            DType::F32 => {
                let g = gemm(rows, base, Elem::F32, x.ptr(), Elem::F32, out.ptr());
                self.lock(&self.blas)?.gemm(&g)
            }
            DType::F16 | DType::BF16 => {
                let elem = if dtype == DType::F16 {
                    Elem::F16
                } else {
                    Elem::BF16
                };
                let v = Variant::matmul(dtype, false)?;
                let xs = self.scratch(|s| &mut s.cast, t * cols * 2)?;
                self.cast_x(&v, x, xs, t * cols)?;
                let g = gemm(rows, base, elem, xs, elem, out.ptr());
                self.lock(&self.blas)?.gemm(&g)
            }
            _ if dtype.is_quantized() => {
                let v = Variant::matmul(dtype, false)?;
                let xs = self.scratch(|s| &mut s.cast, t * cols * 2)?;
                self.cast_x(&v, x, xs, t * cols)?;
                let band = (BAND_ELEMS / cols).clamp(1, rows);
                let ws = self.scratch(|s| &mut s.band, band * cols * 2)?;
                let mut r0 = 0;
                while r0 < rows {
                    let n = band.min(rows - r0);
                    let (wp, rb) = (base + (r0 * row_bytes) as u64, row_bytes as i64);
                    let (ni, ci) = (n as i32, cols as i32);
                    let units = n * (cols / 32);
                    let blocks = units
                        .div_ceil(256)
                        .min(self.info.multiprocessors as usize * 16)
                        as u32;
                    self.launch(
                        &v,
                        "matmul_dequant",
                        (blocks, 1, 1),
                        (256, 1, 1),
                        0,
                        &mut [arg(&wp), arg(&rb), arg(&ws), arg(&ni), arg(&ci)],
                    )?;
                    // out[:, r0..r0+n]: column-major rows r0.. of the m x t output.
                    let g = gemm(n, ws, Elem::F16, xs, Elem::F16, out.ptr() + 4 * r0 as u64);
                    self.lock(&self.blas)?.gemm(&g)?;
                    r0 += n;
                }
                Ok(())
            }
            _ => Err(self.err(format!("no matmul for dtype {dtype}"))),
        }
    }

    /// W8A8: x quantized per token (matmul_i8_quantize), then int8 products with int32
    /// accumulation: matmul_i8_gemv up to MAX_T tokens, cuBLASLt above (then
    /// matmul_i8_scale), each scaled by the token's and the row's scale.
    fn matmul_i8(
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
