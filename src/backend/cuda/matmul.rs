//! matmul: out[t, rows] = x[t, cols] . W[row0.., cols]^T with W in its file dtype.
//!
//! - t <= MAX_T (decode): `matmul_gemv` (kernels/matmul.cu), one pass over the weight rows,
//!   bandwidth-bound; `matmul_group` runs the linears of one input (q/k/v, gate/up) in one
//!   launch.
//! - larger t (prefill): cuBLASLt on tensor cores. x is cast to the weight's f16/bf16 (F32
//!   weights: an f32 product, no cast); a GGUF weight is dequantized to f16 in bands of rows
//!   into a per-call scratch buffer that is overwritten by the next band: never a stored copy.
//!   A group casts x once for all its products. Exact products (LAMINA_CUDA_MATMUL=exact)
//!   also cast what the rounding dropped and add a second product of it.

use super::blas::{Elem, Gemm};
use super::gemv::{Seg, GEMV_ROWS};
use super::nvrtc::{self, Variant};
use super::ops::arg;
use super::{Cuda, CudaBuf, CudaWeight, DevMem};
use crate::backend::WeightView;
use crate::dtype::DType;
use crate::error::Result;

/// Most tokens matmul_gemv takes (MAX_T in matmul.cu).
pub const MAX_T: usize = 8;
/// f16 elements of the dequantization band (64 MiB).
const BAND_ELEMS: usize = 32 << 20;

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
    pub(crate) cast: Option<DevMem>,
    /// A band of dequantized weight rows (f16).
    pub(crate) band: Option<DevMem>,
    /// x quantized per token for I8 weights: int8 values, then f32 scales, then int32 sums.
    pub(crate) quant: Option<DevMem>,
}

/// What a matmul_gemv launch does around its product (FUSE_* in matmul.cu): `add` adds it
/// to the output (a residual add); `norm` (weight address, dtype code 0 F32 / 1 F16 / 2 BF16,
/// eps) multiplies rms_norm(x) * weight instead of x, for one token of a GGUF weight whose x
/// fits in shared memory (`norm_fuse`); `swiglu` stores silu(gate) * up.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fuse {
    pub add: bool,
    pub norm: Option<(u64, i32, f32)>,
    pub swiglu: bool,
}

/// Views one matmul_gemv launch can take together.
fn like(a: &Checked, b: &Checked) -> bool {
    a.dtype == b.dtype && a.cols == b.cols && a.row_bytes == b.row_bytes && a.scalar == b.scalar
}

/// An rms_norm of x ahead of products (`Backend::norm_matmul_group`): its weight and eps,
/// and where the normalized x goes when the norm cannot ride in the products' launches.
#[derive(Clone, Copy)]
pub struct NormIn<'a> {
    pub w: &'a CudaWeight,
    pub eps: f32,
    pub xn: &'a CudaBuf,
}

/// A checked weight view, ready to launch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Checked {
    pub(super) dtype: DType,
    pub(super) base: u64,
    pub(super) row_bytes: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// A plain-type view whose rows are not whole 16-byte vectors (matmul_gemv's SCALAR).
    pub(super) scalar: bool,
    /// cuBLASLt takes the shape.
    pub(super) blas_ok: bool,
}

impl Cuda {
    /// Device address of a scratch buffer of at least `bytes`, growing it if needed.
    pub(crate) fn scratch(
        &self,
        which: fn(&mut Scratch) -> &mut Option<DevMem>,
        bytes: usize,
    ) -> Result<u64> {
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

    /// Checks a (non-I8) matmul's view and buffers; None when there is nothing to compute.
    fn check_view(
        &self,
        x: &CudaBuf,
        w: &WeightView<'_, CudaWeight>,
        out: &CudaBuf,
        t: usize,
    ) -> Result<Option<Checked>> {
        let wt = w.w;
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
            return Ok(None);
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
        let quantized = wt.dtype.is_quantized();
        // Plain types load 16-byte vectors: rows must be whole vectors and 16-byte aligned.
        let scalar = !quantized && (!row_bytes.is_multiple_of(16) || !base.is_multiple_of(16));
        // cuBLASLt gets shapes its tensor-core kernels take: 16-byte aligned rows of W and x
        // and an output row stride of whole 16 bytes. Anything else runs matmul_gemv over
        // chunks of MAX_T tokens (rare shapes only: real models are all multiples of 64).
        let blas_ok = rows.is_multiple_of(4)
            && (quantized || (cols.is_multiple_of(8) && base.is_multiple_of(16)));
        Ok(Some(Checked {
            dtype: wt.dtype,
            base,
            row_bytes,
            rows,
            cols,
            scalar,
            blas_ok,
        }))
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
        self.op_matmul_add(x, w, out, t, path, false)
    }

    /// `op_matmul`, or with `add` out += the product (`Backend::matmul_add`, which sends I8
    /// weights through a separate add).
    pub fn op_matmul_add(
        &self,
        x: &CudaBuf,
        w: &WeightView<'_, CudaWeight>,
        out: &CudaBuf,
        t: usize,
        path: Path,
        add: bool,
    ) -> Result<()> {
        if w.w.dtype == DType::I8 {
            if add {
                return Err(self.err("matmul_add of I8 weights: run matmul and add"));
            }
            return self.matmul_i8(x, w, out, t, path);
        }
        let Some(c) = self.check_view(x, w, out, t)? else {
            return Ok(());
        };
        let use_blas = match path {
            Path::Auto => t > MAX_T && c.blas_ok,
            Path::Gemv => false,
            Path::Blas if c.blas_ok => true,
            Path::Blas => {
                return Err(self.err(format!(
                    "cuBLASLt path asked for a {} x {} {} view that it does not take",
                    c.rows, c.cols, c.dtype
                )))
            }
        };
        if use_blas {
            return self.blas_matmul(x, &c, out, t, None, add);
        }
        let seg = Seg {
            base: c.base,
            out: out.ptr(),
            rows: c.rows,
        };
        let fuse = Fuse {
            add,
            ..Fuse::default()
        };
        self.gemv_chunked(x, &c, None, &[seg], t, fuse)
    }

    /// Several matmuls of the same x (`Backend::matmul_group`): for up to MAX_T tokens one
    /// matmul_gemv launch over the concatenated rows when the weights share dtype and shape
    /// of rows (q/k/v, gate/up of every real model), else one launch per format; for prefill
    /// x is cast once and each weight runs its cuBLASLt product. Anything else is one matmul
    /// per weight.
    pub fn op_matmul_group(
        &self,
        x: &CudaBuf,
        views: &[WeightView<'_, CudaWeight>],
        outs: &[&CudaBuf],
        t: usize,
    ) -> Result<()> {
        self.op_norm_matmul_group(x, None, views, outs, t)
    }

    /// `op_matmul_group` of rms_norm(x) (`Backend::norm_matmul_group`): fused into the
    /// launches' staging of x where `norm_fuse` allows, else the norm into `norm.xn` first.
    pub fn op_norm_matmul_group(
        &self,
        x: &CudaBuf,
        norm: Option<NormIn<'_>>,
        views: &[WeightView<'_, CudaWeight>],
        outs: &[&CudaBuf],
        t: usize,
    ) -> Result<()> {
        if views.len() != outs.len() || views.is_empty() {
            return Err(self.err(format!(
                "matmul_group: {} weights but {} outputs",
                views.len(),
                outs.len()
            )));
        }
        let fuse = match norm {
            None => Fuse::default(),
            Some(n) => match self.norm_fuse(x, &n, views, outs, t)? {
                Some(f) => f,
                None => {
                    self.op_rms_norm(x, n.w, n.xn, t, views[0].cols, n.eps)?;
                    return self.op_norm_matmul_group(n.xn, None, views, outs, t);
                }
            },
        };
        let one_by_one = |c: &Cuda| -> Result<()> {
            for (v, o) in views.iter().zip(outs) {
                c.op_matmul(x, v, o, t, Path::Auto)?;
            }
            Ok(())
        };
        // (norm_fuse has checked everything below for a fused norm: it takes the launches.)
        let unfused = fuse.norm.is_none();
        if unfused && (views.len() < 2 || views.iter().any(|v| v.w.dtype == DType::I8)) {
            return one_by_one(self);
        }
        let mut checked = Vec::with_capacity(views.len());
        for (v, o) in views.iter().zip(outs) {
            match self.check_view(x, v, o, t)? {
                Some(c) => checked.push(c),
                None => return one_by_one(self),
            }
        }
        let c0 = checked[0];
        if t > MAX_T {
            if !checked.iter().all(|c| like(c, &c0) && c.blas_ok) {
                return one_by_one(self);
            }
            let xs = self.cast_for_blas(x, c0.dtype, t * c0.cols)?;
            for (c, o) in checked.iter().zip(outs) {
                self.blas_matmul(x, c, o, t, xs, false)?;
            }
            return Ok(());
        }
        if views.len() > 3 {
            return one_by_one(self);
        }
        // A Q4_K_M (Q5_K_M) layer's Q6_K v beside Q4_K q and k: one launch of both formats
        // for a token whose x is staged as digits (the v rows from an even row, so that no
        // warp's row pair spans both).
        if let [q, k, v] = checked[..] {
            let rows01 = q.rows + k.rows;
            if t == 1
                && like(&q, &k)
                && v.cols == q.cols
                && nvrtc::MIXED_MATMULS.contains(&(q.dtype, v.dtype))
                && nvrtc::gemv_digits(q.dtype)
                && rows01.is_multiple_of(GEMV_ROWS)
                && self.gemv_shape(&q, Some(&v), rows01 + v.rows, t).1
            {
                let segs: Vec<Seg> = checked
                    .iter()
                    .zip(outs)
                    .map(|(c, o)| Seg {
                        base: c.base,
                        out: o.ptr(),
                        rows: c.rows,
                    })
                    .collect();
                return self.gemv_chunked(x, &q, Some(&v), &segs, t, fuse);
            }
        }
        // Otherwise one launch per format, each over the rows of its weights: one launch in
        // all for weights of one format.
        let mut done = vec![false; checked.len()];
        for i in 0..checked.len() {
            if done[i] {
                continue;
            }
            let mut segs = Vec::new();
            for j in i..checked.len() {
                if !done[j] && like(&checked[j], &checked[i]) {
                    done[j] = true;
                    segs.push(Seg {
                        base: checked[j].base,
                        out: outs[j].ptr(),
                        rows: checked[j].rows,
                    });
                }
            }
            self.gemv_chunked(x, &checked[i], None, &segs, t, fuse)?;
        }
        Ok(())
    }

    /// Whether a norm can ride in the launches of `views` (one token; GGUF weights whose
    /// launches stage x in shared memory; an F32/F16/BF16 norm weight of x's width): the
    /// fusion to pass them, or None.
    fn norm_fuse(
        &self,
        x: &CudaBuf,
        n: &NormIn<'_>,
        views: &[WeightView<'_, CudaWeight>],
        outs: &[&CudaBuf],
        t: usize,
    ) -> Result<Option<Fuse>> {
        let dt = match n.w.dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            _ => return Ok(None),
        };
        let cols = views[0].cols;
        if t != 1
            || views.len() > 3
            || n.w.shape.iter().product::<usize>() < cols
            || !cols.is_multiple_of(4)
            || views
                .iter()
                .any(|v| !v.w.dtype.is_quantized() || v.cols != cols)
        {
            return Ok(None);
        }
        for (v, o) in views.iter().zip(outs) {
            match self.check_view(x, v, o, t)? {
                Some(c) if self.gemv_shape(&c, None, v.rows, t).1 => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(Fuse {
            norm: Some((n.w.ptr(), dt, n.eps)),
            ..Fuse::default()
        }))
    }

    /// `Backend::matmul_swiglu`: for up to MAX_T tokens and gate and up of one dtype and
    /// shape, one matmul_gemv launch whose warps each compute a gate row and its up row and
    /// store silu(gate) * up into outs[0] (outs[1] is not written); otherwise the parts.
    /// With `norm`, of rms_norm(x) as in `op_norm_matmul_group`.
    pub fn op_matmul_swiglu(
        &self,
        x: &CudaBuf,
        norm: Option<NormIn<'_>>,
        views: [WeightView<'_, CudaWeight>; 2],
        outs: [&CudaBuf; 2],
        t: usize,
    ) -> Result<()> {
        let fuse = match norm {
            None => Fuse::default(),
            Some(n) => match self.norm_fuse(x, &n, &views, &outs, t)? {
                Some(f) => f,
                None => {
                    self.op_rms_norm(x, n.w, n.xn, t, views[0].cols, n.eps)?;
                    return self.op_matmul_swiglu(n.xn, None, views, outs, t);
                }
            },
        };
        let parts = |c: &Cuda| -> Result<()> {
            c.op_norm_matmul_group(x, norm, &views, &outs, t)?;
            c.op_swiglu(outs[0], outs[1], outs[0], t * views[0].rows)
        };
        if self.swiglu_parts || t > MAX_T || views.iter().any(|v| v.w.dtype == DType::I8) {
            return parts(self);
        }
        let (Some(g), Some(u)) = (
            self.check_view(x, &views[0], outs[0], t)?,
            self.check_view(x, &views[1], outs[0], t)?,
        ) else {
            return parts(self);
        };
        if !like(&g, &u) || g.rows != u.rows {
            return parts(self);
        }
        let out = outs[0].ptr();
        #[rustfmt::skip]
        let segs = [Seg { base: g.base, out, rows: g.rows }, Seg { base: u.base, out, rows: u.rows }];
        let fuse = Fuse {
            swiglu: true,
            ..fuse
        };
        self.gemv_chunked(x, &g, None, &segs, t, fuse)
    }

    pub(crate) fn need_len(&self, what: &str, b: &CudaBuf, n: usize) -> Result<()> {
        if b.len() < n {
            return Err(self.err(format!(
                "{what}: buffer holds {} floats, {n} needed",
                b.len()
            )));
        }
        Ok(())
    }

    /// Launches matmul_cast of `v`: n floats of x into `dst` as f16/bf16, or with `lo`
    /// what that rounding dropped.
    fn cast_x(&self, v: &Variant, lo: bool, x: &CudaBuf, dst: u64, n: usize) -> Result<()> {
        let (xp, nn, lo) = (x.ptr(), n as i64, i32::from(lo));
        let blocks = n
            .div_ceil(4 * 256)
            .clamp(1, self.info.multiprocessors as usize * 16) as u32;
        self.launch(
            v,
            "matmul_cast",
            (blocks, 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&xp), arg(&dst), arg(&nn), arg(&lo)],
        )
    }

    /// x (n floats) cast for cuBLASLt products with `dtype` weights, into the cast scratch:
    /// bf16 for BF16, f16 for F16 and GGUF blocks; None for F32 (an f32 product). With
    /// exact products, what the cast dropped follows at xs + 2n bytes.
    fn cast_for_blas(&self, x: &CudaBuf, dtype: DType, n: usize) -> Result<Option<u64>> {
        if dtype == DType::F32 {
            return Ok(None);
        }
        let v = Variant::matmul(dtype, false)?;
        let halves = if self.exact_products { 2 } else { 1 };
        let xs = self.scratch(|s| &mut s.cast, halves * n * 2)?;
        self.cast_x(&v, false, x, xs, n)?;
        if self.exact_products {
            self.cast_x(&v, true, x, xs + 2 * n as u64, n)?;
        }
        Ok(Some(xs))
    }

    /// The product `g`, and with exact products the same weights times the low half of x
    /// (at g.b + 2 * n * k bytes) added to it.
    fn blas_gemm(&self, g: Gemm) -> Result<()> {
        let mut blas = self.lock(&self.blas)?;
        blas.gemm(&g)?;
        if self.exact_products && matches!(g.b_elem, Elem::F16 | Elem::BF16) {
            let lo = Gemm {
                b: g.b + 2 * (g.n * g.k) as u64,
                accumulate: true,
                ..g
            };
            blas.gemm(&lo)?;
        }
        Ok(())
    }

    /// The cuBLASLt product of a checked view (added to `out` with `add`); `xs` is x
    /// already cast by cast_for_blas.
    fn blas_matmul(
        &self,
        x: &CudaBuf,
        c: &Checked,
        out: &CudaBuf,
        t: usize,
        xs: Option<u64>,
        add: bool,
    ) -> Result<()> {
        let (dtype, base, row_bytes, rows, cols) = (c.dtype, c.base, c.row_bytes, c.rows, c.cols);
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
            accumulate: add,
        };
        let xs = match xs {
            Some(p) => p,
            None if dtype == DType::F32 => 0,
            None => self
                .cast_for_blas(x, dtype, t * cols)?
                .ok_or_else(|| self.err("matmul: no cast"))?,
        };
        match dtype {
            DType::F32 => {
                self.blas_gemm(gemm(rows, base, Elem::F32, x.ptr(), Elem::F32, out.ptr()))
            }
            DType::F16 | DType::BF16 => {
                let elem = if dtype == DType::F16 {
                    Elem::F16
                } else {
                    Elem::BF16
                };
                self.blas_gemm(gemm(rows, base, elem, xs, elem, out.ptr()))
            }
            _ if dtype.is_quantized() => {
                let v = Variant::matmul(dtype, false)?;
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
                    self.blas_gemm(g)?;
                    r0 += n;
                }
                Ok(())
            }
            _ => Err(self.err(format!("no matmul for dtype {dtype}"))),
        }
    }
}
