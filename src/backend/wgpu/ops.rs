//! The `Backend` ops on wgpu: each checks its arguments against the buffers it will bind
//! (so every index a shader computes stays in range), then records its dispatches. The
//! shader of op `x` is `shaders/x.wgsl` (see pipelines.rs for what is prepended).

use super::buffers::{self, WgpuBuf, WgpuCache, WgpuWeight};
use super::record::Bind;
use super::Wgpu;
use crate::backend::{Backend, MemInfo, Op, RopeLayout, SupportTable, WeightView};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::TensorInfo;

/// On GPUs, matmuls of up to this many tokens use the gemv kernel (once per token); more
/// use the tiled kernel, which dequantizes each weight element once per 32 tokens. CPU
/// adapters use rows (fewer than ROWS_TOKENS tokens) or rows4. See matmul.wgsl.
const GEMV_MAX_T: usize = 2;
/// Weight rows per gemv workgroup (`GEMV_ROWS` in matmul.wgsl).
const GEMV_ROWS: usize = 4;
/// Rows per rows/rows4 workgroup and tokens per rows4 workgroup (`ROWS_R * ROWS_WG` and
/// `ROWS_T` in matmul.wgsl).
const ROWS_ROWS: usize = 128;
const ROWS_TOKENS: usize = 4;
/// Output tile of the tiled kernel, as `TILE_T`/`TILE_N` in matmul.wgsl.
const TILE_T: usize = 32;
const TILE_N: usize = 64;
/// Invocations per workgroup of the elementwise shaders.
const ELEMENTWISE_WG: usize = 256;

fn input(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

/// `buf` must hold `need` f32.
fn fits(what: &str, buf: &WgpuBuf, need: usize) -> Result<u64> {
    if buf.len < need {
        return Err(input(format!(
            "{what}: buffer of {} f32 is smaller than the {need} the op needs",
            buf.len
        )));
    }
    Ok(need as u64 * 4)
}

pub(super) fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| input(format!("{what} = {v} does not fit the shaders' u32")))
}

/// A 1-D weight (norm or bias) of `n` elements in a single piece.
fn vector_weight(w: &WgpuWeight, n: usize, op: Op) -> Result<&::wgpu::Buffer> {
    if w.rows * w.cols != n || w.pieces.len() != 1 {
        return Err(input(format!(
            "{op}: weight '{}' has {} x {} elements in {} pieces, expected {n} in one",
            w.name,
            w.rows,
            w.cols,
            w.pieces.len()
        )));
    }
    Ok(&w.pieces[0].buffer)
}

impl Wgpu {
    /// The step's ids and positions must cover `t` rows; positions must index `max_ctx`.
    fn check_step(&self, op: Op, t: usize, max_ctx: Option<usize>) -> Result<()> {
        let step = self.step()?;
        if t > step.positions.len() {
            return Err(input(format!(
                "{op}: {t} rows but set_step gave {}",
                step.positions.len()
            )));
        }
        if let Some(max) = max_ctx {
            if let Some(p) = step.positions[..t].iter().find(|&&p| p as usize >= max) {
                return Err(input(format!(
                    "{op}: position {p} is past the KV cache's {max} positions"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn launch(
        &self,
        op: Op,
        dtype: Option<crate::dtype::DType>,
        entry: &'static str,
        params: &[u32],
        bufs: &[Bind<'_>],
        groups: usize,
    ) -> Result<()> {
        let pipeline = self.pipelines.get(&self.gpu, op, dtype, entry)?;
        self.recorder()?
            .dispatch(&self.gpu, &pipeline, params, bufs, groups as u64)
    }

    /// The matmul kernel for `n` rows of `t` tokens on this device, and its workgroup count
    /// (matmul.wgsl and matmul_i8.wgsl have the same entry points and tile sizes).
    pub(super) fn matmul_entry(&self, n: usize, t: usize) -> (&'static str, usize) {
        if self.gpu.cpu_kernels && t < ROWS_TOKENS {
            ("rows", n.div_ceil(ROWS_ROWS) * t)
        } else if self.gpu.cpu_kernels {
            ("rows4", n.div_ceil(ROWS_ROWS) * t.div_ceil(ROWS_TOKENS))
        } else if t <= GEMV_MAX_T {
            ("gemv", n.div_ceil(GEMV_ROWS) * t)
        } else {
            ("tiled", n.div_ceil(TILE_N) * t.div_ceil(TILE_T))
        }
    }

    /// `Backend::matmul`, or with `add` out += the product (`matmul_add`; not for I8);
    /// for an I8 weight `quantize` says whether x must be quantized first (false: the
    /// scratch holds it already, see `matmul_group`).
    fn matmul_view(
        &self,
        x: &WgpuBuf,
        view: WeightView<'_, WgpuWeight>,
        out: &WgpuBuf,
        t: usize,
        quantize: bool,
        add: bool,
    ) -> Result<()> {
        let w = view.w;
        if w.dtype != DType::I8 && (view.scale.is_some() || view.zero.is_some()) {
            return Err(input(format!(
                "matmul: '{}' is {} but comes with per-row scales, which only int8 (I8) \
                 weights have",
                w.name, w.dtype
            )));
        }
        if view.cols != w.cols || view.row0 + view.rows > w.rows {
            return Err(input(format!(
                "matmul: view of rows {}..{} x {} cols does not fit '{}' ({} x {})",
                view.row0,
                view.row0 + view.rows,
                view.cols,
                w.name,
                w.rows,
                w.cols
            )));
        }
        if x.buffer == out.buffer {
            return Err(input("matmul: x and out must be different buffers"));
        }
        let x_bytes = fits("matmul x", x, t * w.cols)?;
        let out_bytes = fits("matmul out", out, t * view.rows)?;
        if w.dtype == DType::I8 {
            if add {
                return Err(input("matmul_add of an I8 weight: run matmul and add"));
            }
            return self.matmul_i8(x, view, out, t, quantize);
        }
        let (lo_view, hi_view) = (view.row0, view.row0 + view.rows);
        for piece in &w.pieces {
            let lo = lo_view.max(piece.row0);
            let hi = hi_view.min(piece.row0 + piece.rows);
            if lo >= hi {
                continue;
            }
            let n = hi - lo;
            let params = [
                to_u32("t", t)?,
                to_u32("rows", n)?,
                to_u32("cols", w.cols)?,
                to_u32("row bytes", w.row_bytes)?,
                to_u32("row", lo - piece.row0)?,
                to_u32("out stride", view.rows)?,
                to_u32("out column", lo - lo_view)?,
                u32::from(add),
            ];
            let bufs = [
                Bind::whole(&piece.buffer),
                Bind::new(&x.buffer, x_bytes),
                Bind::new(&out.buffer, out_bytes),
            ];
            let (entry, groups) = self.matmul_entry(n, t);
            self.launch(Op::Matmul, Some(w.dtype), entry, &params, &bufs, groups)?;
        }
        Ok(())
    }

    fn elementwise(&self, op: Op, params: &[u32], bufs: &[Bind<'_>], n: usize) -> Result<()> {
        self.launch(op, None, "main", params, bufs, n.div_ceil(ELEMENTWISE_WG))
    }
}

impl Backend for Wgpu {
    type Buf = WgpuBuf;
    type Weight = WgpuWeight;
    type Cache = WgpuCache;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn device(&self) -> String {
        self.describe().adapter.to_string()
    }

    fn support(&self) -> SupportTable {
        Wgpu::support_table()
    }

    fn memory(&self) -> Option<MemInfo> {
        None
    }

    fn allocated_bytes(&self) -> u64 {
        self.gpu.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn upload_weight(&self, t: &TensorInfo, bytes: &[u8]) -> Result<WgpuWeight> {
        buffers::upload_weight(&self.gpu, t, bytes, self.max_piece)
    }

    fn alloc(&self, len: usize) -> Result<WgpuBuf> {
        let buffer = buffers::storage(&self.gpu, "activations", len as u64 * 4)?;
        let held = buffers::Held::new(&self.gpu, buffer.size());
        Ok(WgpuBuf {
            buffer,
            len,
            _held: held,
        })
    }

    fn write(&self, buf: &WgpuBuf, data: &[f32]) -> Result<()> {
        fits("write", buf, data.len())?;
        self.recorder()?
            .upload(&self.gpu, &buf.buffer, 0, bytemuck::cast_slice(data))
    }

    fn read(&self, buf: &WgpuBuf, len: usize) -> Result<Vec<f32>> {
        let bytes = fits("read", buf, len)?;
        let raw = self.recorder()?.read(&self.gpu, &buf.buffer, bytes)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn alloc_cache(
        &self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_ctx: usize,
    ) -> Result<WgpuCache> {
        buffers::alloc_cache(&self.gpu, layers, kv_heads, head_dim, max_ctx)
    }

    fn set_step(&self, ids: &[u32], positions: &[u32]) -> Result<()> {
        if ids.len() != positions.len() {
            return Err(input(format!(
                "set_step: {} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        let mut step = self.step()?;
        if ids.len() > step.capacity {
            let cap = ids.len().next_power_of_two();
            step.ids_buf = buffers::storage(&self.gpu, "step ids", cap as u64 * 4)?;
            step.pos_buf = buffers::storage(&self.gpu, "step positions", cap as u64 * 4)?;
            step.capacity = cap;
        }
        let mut rec = self.recorder()?;
        rec.upload(&self.gpu, &step.ids_buf, 0, bytemuck::cast_slice(ids))?;
        rec.upload(&self.gpu, &step.pos_buf, 0, bytemuck::cast_slice(positions))?;
        step.ids = ids.to_vec();
        step.positions = positions.to_vec();
        Ok(())
    }

    fn embedding(&self, table: &WgpuWeight, out: &WgpuBuf, t: usize) -> Result<()> {
        let out_bytes = fits("embedding out", out, t * table.cols)?;
        let step = self.step()?;
        if t > step.ids.len() {
            return Err(input(format!(
                "embedding: {t} rows but set_step gave {}",
                step.ids.len()
            )));
        }
        if let Some(id) = step.ids[..t].iter().find(|&&id| id as usize >= table.rows) {
            return Err(input(format!(
                "token id {id} is out of range for '{}' ({} rows)",
                table.name, table.rows
            )));
        }
        // Only the pieces some id falls in.
        let mut used: Vec<usize> = Vec::new();
        for &id in &step.ids[..t] {
            let p = table.piece_of(id as usize).map(|p| p.row0);
            if let Some(row0) = p {
                if !used.contains(&row0) {
                    used.push(row0);
                }
            }
        }
        for piece in table.pieces.iter().filter(|p| used.contains(&p.row0)) {
            let params = [
                to_u32("t", t)?,
                to_u32("cols", table.cols)?,
                to_u32("row bytes", table.row_bytes)?,
                to_u32("row", piece.row0)?,
                to_u32("rows", piece.rows)?,
                0,
                0,
                0,
            ];
            let bufs = [
                Bind::whole(&piece.buffer),
                Bind::new(&step.ids_buf, t as u64 * 4),
                Bind::new(&out.buffer, out_bytes),
            ];
            self.launch(Op::Embedding, Some(table.dtype), "main", &params, &bufs, t)?;
        }
        Ok(())
    }

    fn rms_norm(
        &self,
        x: &WgpuBuf,
        w: &WgpuWeight,
        out: &WgpuBuf,
        t: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        let bytes = fits("rms_norm x", x, t * dim)?;
        fits("rms_norm out", out, t * dim)?;
        let wb = vector_weight(w, dim, Op::RmsNorm)?;
        let params = [to_u32("t", t)?, to_u32("dim", dim)?, eps.to_bits(), 0];
        let bufs = [
            Bind::whole(wb),
            Bind::new(&x.buffer, bytes),
            Bind::new(&out.buffer, bytes),
        ];
        self.launch(Op::RmsNorm, Some(w.dtype), "main", &params, &bufs, t)
    }

    fn matmul(
        &self,
        x: &WgpuBuf,
        view: WeightView<'_, WgpuWeight>,
        out: &WgpuBuf,
        t: usize,
    ) -> Result<()> {
        self.matmul_view(x, view, out, t, true, false)
    }

    fn matmul_add(
        &self,
        x: &WgpuBuf,
        view: WeightView<'_, WgpuWeight>,
        y: &WgpuBuf,
        resid: &WgpuBuf,
        t: usize,
    ) -> Result<()> {
        if view.w.dtype == DType::I8 {
            self.matmul_view(x, view, y, t, true, false)?;
            return self.add(resid, y, t * view.rows);
        }
        self.matmul_view(x, view, resid, t, true, true)
    }

    /// As `matmul` for each pair; x is quantized once for all the int8 weights (q, k and
    /// v; gate and up of a W8A8 model).
    fn matmul_group(
        &self,
        x: &WgpuBuf,
        views: &[WeightView<'_, WgpuWeight>],
        outs: &[&WgpuBuf],
        t: usize,
    ) -> Result<()> {
        if views.len() != outs.len() {
            return Err(input(format!(
                "matmul_group: {} weights but {} outputs",
                views.len(),
                outs.len()
            )));
        }
        // The column count x was quantized for, once one int8 weight has run.
        let mut quantized = None;
        for (v, out) in views.iter().zip(outs) {
            let i8 = v.w.dtype == DType::I8;
            self.matmul_view(x, *v, out, t, !i8 || quantized != Some(v.cols), false)?;
            if i8 {
                quantized = Some(v.cols);
            }
        }
        Ok(())
    }

    fn add_bias(&self, x: &WgpuBuf, bias: &WgpuWeight, t: usize, n: usize) -> Result<()> {
        let bytes = fits("add_bias x", x, t * n)?;
        let wb = vector_weight(bias, n, Op::AddBias)?;
        let params = [to_u32("len", t * n)?, to_u32("n", n)?, 0, 0];
        let bufs = [Bind::whole(wb), Bind::new(&x.buffer, bytes)];
        self.launch(
            Op::AddBias,
            Some(bias.dtype),
            "main",
            &params,
            &bufs,
            (t * n).div_ceil(ELEMENTWISE_WG),
        )
    }

    fn rope(
        &self,
        x: &WgpuBuf,
        inv_freq: &WgpuBuf,
        t: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        if !head_dim.is_multiple_of(2) {
            return Err(input(format!("rope: head_dim {head_dim} is odd")));
        }
        self.check_step(Op::Rope, t, None)?;
        let bytes = fits("rope x", x, t * heads * head_dim)?;
        let f_bytes = fits("rope inv_freq", inv_freq, head_dim / 2)?;
        let layout = match layout {
            RopeLayout::Normal => 0,
            RopeLayout::Neox => 1,
        };
        let params = [
            to_u32("t", t)?,
            to_u32("heads", heads)?,
            to_u32("head_dim", head_dim)?,
            layout,
            scale.to_bits(),
            0,
            0,
            0,
        ];
        let step = self.step()?;
        let bufs = [
            Bind::new(&step.pos_buf, t as u64 * 4),
            Bind::new(&inv_freq.buffer, f_bytes),
            Bind::new(&x.buffer, bytes),
        ];
        self.elementwise(Op::Rope, &params, &bufs, t * heads * head_dim / 2)
    }

    fn kv_write(
        &self,
        cache: &WgpuCache,
        layer: usize,
        k: &WgpuBuf,
        v: &WgpuBuf,
        t: usize,
    ) -> Result<()> {
        if layer >= cache.layers() {
            return Err(input(format!(
                "kv_write: layer {layer} of a {}-layer cache",
                cache.layers()
            )));
        }
        self.check_step(Op::KvWrite, t, Some(cache.max_ctx))?;
        let n = t * cache.kv_heads * cache.head_dim;
        let kb = fits("kv_write k", k, n)?;
        let vb = fits("kv_write v", v, n)?;
        let params = [
            to_u32("t", t)?,
            to_u32("kv_heads", cache.kv_heads)?,
            to_u32("head_dim", cache.head_dim)?,
            to_u32("max_ctx", cache.max_ctx)?,
        ];
        let step = self.step()?;
        let bufs = [
            Bind::new(&step.pos_buf, t as u64 * 4),
            Bind::new(&k.buffer, kb),
            Bind::new(&v.buffer, vb),
            Bind::whole(&cache.k[layer]),
            Bind::whole(&cache.v[layer]),
        ];
        self.elementwise(Op::KvWrite, &params, &bufs, n)
    }

    fn attention(
        &self,
        q: &WgpuBuf,
        cache: &WgpuCache,
        layer: usize,
        out: &WgpuBuf,
        t: usize,
        heads: usize,
        scale: f32,
    ) -> Result<()> {
        if layer >= cache.layers() {
            return Err(input(format!(
                "attention: layer {layer} of a {}-layer cache",
                cache.layers()
            )));
        }
        if heads == 0 || !heads.is_multiple_of(cache.kv_heads) {
            return Err(input(format!(
                "attention: {heads} query heads is not a multiple of {} kv heads",
                cache.kv_heads
            )));
        }
        self.check_step(Op::Attention, t, Some(cache.max_ctx))?;
        let n = t * heads * cache.head_dim;
        let qb = fits("attention q", q, n)?;
        let ob = fits("attention out", out, n)?;
        let params = [
            to_u32("t", t)?,
            to_u32("heads", heads)?,
            to_u32("kv_heads", cache.kv_heads)?,
            to_u32("head_dim", cache.head_dim)?,
            to_u32("max_ctx", cache.max_ctx)?,
            scale.to_bits(),
            0,
            0,
        ];
        let step = self.step()?;
        let bufs = [
            Bind::new(&step.pos_buf, t as u64 * 4),
            Bind::new(&q.buffer, qb),
            Bind::whole(&cache.k[layer]),
            Bind::whole(&cache.v[layer]),
            Bind::new(&out.buffer, ob),
        ];
        self.launch(Op::Attention, None, "main", &params, &bufs, t * heads)
    }

    fn swiglu(&self, gate: &WgpuBuf, up: &WgpuBuf, out: &WgpuBuf, n: usize) -> Result<()> {
        let bytes = fits("swiglu gate", gate, n)?;
        fits("swiglu up", up, n)?;
        fits("swiglu out", out, n)?;
        let params = [to_u32("n", n)?, 0, 0, 0];
        let bufs = [
            Bind::new(&gate.buffer, bytes),
            Bind::new(&up.buffer, bytes),
            Bind::new(&out.buffer, bytes),
        ];
        self.elementwise(Op::Swiglu, &params, &bufs, n)
    }

    fn add(&self, x: &WgpuBuf, y: &WgpuBuf, n: usize) -> Result<()> {
        let bytes = fits("add x", x, n)?;
        fits("add y", y, n)?;
        let params = [to_u32("n", n)?, 0, 0, 0];
        let bufs = [Bind::new(&x.buffer, bytes), Bind::new(&y.buffer, bytes)];
        self.elementwise(Op::Add, &params, &bufs, n)
    }

    fn copy(
        &self,
        src: &WgpuBuf,
        src_off: usize,
        dst: &WgpuBuf,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        let sb = fits("copy src", src, src_off + n)?;
        let db = fits("copy dst", dst, dst_off + n)?;
        if src.buffer == dst.buffer && src_off < dst_off + n && dst_off < src_off + n {
            return Err(input("copy: source and destination ranges overlap"));
        }
        let params = [
            to_u32("n", n)?,
            to_u32("src offset", src_off)?,
            to_u32("dst offset", dst_off)?,
            0,
        ];
        let bufs = [Bind::new(&src.buffer, sb), Bind::new(&dst.buffer, db)];
        self.elementwise(Op::Copy, &params, &bufs, n)
    }

    fn argmax(&self, buf: &WgpuBuf, len: usize) -> Result<u32> {
        if len == 0 {
            return Err(input("argmax of nothing"));
        }
        let xb = fits("argmax x", buf, len)?;
        let out = self.alloc(1)?;
        let params = [to_u32("n", len)?, 0, 0, 0];
        let bufs = [Bind::new(&buf.buffer, xb), Bind::new(&out.buffer, 4)];
        self.launch(Op::Argmax, None, "main", &params, &bufs, 1)?;
        Ok(self.read(&out, 1)?[0] as u32)
    }
}
