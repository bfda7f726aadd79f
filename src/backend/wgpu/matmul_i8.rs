//! matmul of I8 weights (compressed-tensors W8A8) on wgpu: the activations are quantized
//! per token into a scratch (entry `quantize`, shaders/matmul_i8_quantize.wgsl), then
//! multiplied with the int8 weight in i32 (shaders/matmul_i8.wgsl), and scaled by the
//! token's and the row's scale. The weight, its scales and zero points stay on the device
//! as the file has them.

use super::buffers::{self, Held, WgpuBuf, WgpuWeight};
use super::ops::to_u32;
use super::record::Bind;
use super::Wgpu;
use crate::backend::{Op, WeightView};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Bytes per token of the per-token (scale, sum of levels) pairs (`TokenScale`).
const TOKEN_SCALE_BYTES: usize = 8;

/// Where `quantize` puts the activations: int8 levels packed 4 per word, [t, k], and a
/// `TokenScale` per token. Grown on demand, shared by every int8 matmul (the dispatches
/// run in the order they are recorded, so each product reads the quantization recorded
/// just before it).
pub(crate) struct I8Scratch {
    levels: ::wgpu::Buffer,
    scales: ::wgpu::Buffer,
    _held: Held,
}

fn input(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

/// The dtype code of a scale or zero point in matmul_i8.wgsl's `Params.codes`.
fn code(d: DType) -> Option<u32> {
    match d {
        DType::F32 => Some(1),
        DType::F16 => Some(2),
        DType::BF16 => Some(3),
        DType::I8 => Some(4),
        _ => None,
    }
}

/// A per-row vector of `w` (its scale or zero point): `rows` elements of one of `dtypes`,
/// in a single buffer.
fn per_row<'a>(
    v: &'a WgpuWeight,
    what: &str,
    w: &WgpuWeight,
    dtypes: &[DType],
) -> Result<(&'a ::wgpu::Buffer, u32)> {
    let names: Vec<String> = dtypes.iter().map(|d| d.to_string()).collect();
    if !dtypes.contains(&v.dtype) || v.rows * v.cols != w.rows || v.pieces.len() != 1 {
        return Err(input(format!(
            "matmul: {what} '{}' of int8 weight '{}' is {} with {} x {} elements; one {} \
             value per row ({} rows) is needed",
            v.name,
            w.name,
            v.dtype,
            v.rows,
            v.cols,
            names.join("/"),
            w.rows
        )));
    }
    let c = code(v.dtype).ok_or_else(|| input(format!("no dtype code for {}", v.dtype)))?;
    Ok((&v.pieces[0].buffer, c))
}

impl Wgpu {
    /// `view` of an I8 weight times the `t` rows of x (already checked against the view by
    /// `matmul`). `quantize`: quantize x first; false when the scratch already holds x's
    /// quantization (the second and later int8 weights of a `matmul_group`).
    pub(super) fn matmul_i8(
        &self,
        x: &WgpuBuf,
        view: WeightView<'_, WgpuWeight>,
        out: &WgpuBuf,
        t: usize,
        quantize: bool,
    ) -> Result<()> {
        let w = view.w;
        let scale = view.scale.ok_or_else(|| {
            input(format!(
                "matmul: int8 weight '{}' has no per-row scale (weight_scale)",
                w.name
            ))
        })?;
        let (scale_buf, scale_code) =
            per_row(scale, "scale", w, &[DType::F32, DType::F16, DType::BF16])?;
        let (zero_buf, zero_code) = match view.zero {
            Some(z) => per_row(
                z,
                "zero point",
                w,
                &[DType::I8, DType::F32, DType::F16, DType::BF16],
            )?,
            // Bound in its place and never read.
            None => (scale_buf, 0),
        };
        let k = w.cols;
        if !k.is_multiple_of(4) {
            return Err(input(format!(
                "matmul: int8 weight '{}' has {k} columns; the int8 kernels read rows as \
                 packed words of 4 and need a multiple of 4",
                w.name
            )));
        }
        if t == 0 {
            return Ok(());
        }
        let x_bytes = t as u64 * k as u64 * 4;
        let out_bytes = (t * view.rows) as u64 * 4;
        let levels_bytes = (t * k) as u64;
        let scales_bytes = (t * TOKEN_SCALE_BYTES) as u64;
        let scratch = self.i8_scratch(levels_bytes, scales_bytes)?;
        let scratch = scratch
            .as_ref()
            .ok_or_else(|| Error::backend("wgpu", "int8 scratch missing after allocation"))?;
        let levels = || Bind::new(&scratch.levels, levels_bytes).at(4);
        let scales = || Bind::new(&scratch.scales, scales_bytes).at(5);
        let (tu, ku) = (to_u32("t", t)?, to_u32("cols", k)?);
        if quantize {
            let params = [tu, 0, ku, 0, 0, 0, 0, 0];
            let bufs = [levels(), scales(), Bind::new(&x.buffer, x_bytes).at(7)];
            self.launch(Op::Matmul, Some(DType::I8), "quantize", &params, &bufs, t)?;
        }
        let codes = scale_code | zero_code << 8;
        let (lo_view, hi_view) = (view.row0, view.row0 + view.rows);
        for piece in &w.pieces {
            let lo = lo_view.max(piece.row0);
            let hi = hi_view.min(piece.row0 + piece.rows);
            if lo >= hi {
                continue;
            }
            let n = hi - lo;
            let params = [
                tu,
                to_u32("rows", n)?,
                ku,
                to_u32("row", lo - piece.row0)?,
                to_u32("out stride", view.rows)?,
                to_u32("out column", lo - lo_view)?,
                to_u32("row", lo)?,
                codes,
            ];
            let bufs = [
                Bind::whole(&piece.buffer).at(1),
                Bind::whole(scale_buf).at(2),
                Bind::whole(zero_buf).at(3),
                levels(),
                scales(),
                Bind::new(&out.buffer, out_bytes).at(6),
            ];
            let (entry, groups) = self.matmul_entry(n, t);
            self.launch(Op::Matmul, Some(DType::I8), entry, &params, &bufs, groups)?;
        }
        Ok(())
    }

    /// The scratch, at least `levels` and `scales` bytes large.
    fn i8_scratch(
        &self,
        levels: u64,
        scales: u64,
    ) -> Result<std::sync::MutexGuard<'_, Option<I8Scratch>>> {
        let mut guard = self
            .i8_scratch
            .lock()
            .map_err(|_| Error::backend("wgpu", "int8 scratch poisoned by an earlier panic"))?;
        let fits = guard
            .as_ref()
            .is_some_and(|s| s.levels.size() >= levels && s.scales.size() >= scales);
        if !fits {
            let old = guard.take();
            let grow = |b: Option<&::wgpu::Buffer>, need: u64| {
                need.max(b.map_or(0, |b| b.size())).next_power_of_two()
            };
            let levels = grow(old.as_ref().map(|s| &s.levels), levels);
            let scales = grow(old.as_ref().map(|s| &s.scales), scales);
            *guard = Some(I8Scratch {
                levels: buffers::storage(&self.gpu, "int8 activations", levels)?,
                scales: buffers::storage(&self.gpu, "int8 activation scales", scales)?,
                _held: Held::new(&self.gpu, levels + scales),
            });
        }
        Ok(guard)
    }
}
