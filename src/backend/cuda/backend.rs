//! `Backend` for `Cuda`: each trait op checked and launched by its `op_*` method (ops.rs,
//! matmul.rs, gemv.rs, attention.rs), memory and recordings by the device code in mod.rs.

use super::{cuda_err, matmul, ops, support_table, Cuda, CudaBuf, CudaCache, CudaWeight};
use crate::backend::{Backend, MemInfo, RopeLayout, SupportTable, WeightView};
use crate::dtype::DType;
use crate::error::Result;
use crate::weights::TensorInfo;
use cudarc::driver::result as dr;
use std::sync::atomic::Ordering;

impl Backend for Cuda {
    type Buf = CudaBuf;
    type Weight = CudaWeight;
    type Cache = CudaCache;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device(&self) -> String {
        self.describe()
    }

    fn support(&self) -> SupportTable {
        support_table()
    }

    fn memory(&self) -> Option<MemInfo> {
        self.bind().ok()?;
        let (free, total) = self.ctx.mem_get_info().ok()?;
        Some(MemInfo {
            free: free as u64,
            total: total as u64,
        })
    }

    fn allocated_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    fn upload_weight(&self, t: &TensorInfo, bytes: &[u8]) -> Result<CudaWeight> {
        self.upload(t, bytes)
    }

    fn alloc(&self, len: usize) -> Result<CudaBuf> {
        let bytes = len
            .checked_mul(4)
            .ok_or_else(|| self.err(format!("buffer of {len} floats overflows")))?;
        Ok(CudaBuf {
            mem: self.dev_mem(bytes)?,
            len,
        })
    }

    fn write(&self, buf: &CudaBuf, data: &[f32]) -> Result<()> {
        self.check_buf("write", buf, data.len())?;
        self.bind()?;
        // SAFETY: the destination holds data.len() floats (checked); a pageable source is
        // consumed before the call returns.
        unsafe { dr::memcpy_htod_async(buf.ptr(), data, self.stream.cu_stream()) }
            .map_err(|e| cuda_err("copy to device", e))
    }

    fn argmax(&self, buf: &CudaBuf, len: usize) -> Result<u32> {
        self.op_argmax(buf, len)
    }

    fn read(&self, buf: &CudaBuf, len: usize) -> Result<Vec<f32>> {
        self.check_buf("read", buf, len)?;
        // SAFETY: the buffer holds len floats (checked).
        unsafe { self.read_back(buf.ptr(), len) }
    }

    fn alloc_cache(
        &self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_ctx: usize,
    ) -> Result<CudaCache> {
        self.new_cache(layers, kv_heads, head_dim, max_ctx)
    }

    fn set_step(&self, ids: &[u32], positions: &[u32]) -> Result<()> {
        self.set_step_rows(ids, positions)
    }

    fn record(&self, key: Option<u64>, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.record_graph(key, f)
    }

    fn clear_recordings(&self) -> Result<()> {
        self.clear_graphs()
    }

    fn check_memory(&self, need_bytes: u64) -> Result<()> {
        Cuda::check_memory(self, need_bytes)
    }

    fn cache_bytes(&self, layers: usize, kv_heads: usize, head_dim: usize, max_ctx: usize) -> u64 {
        // K and V in f16.
        (2 * layers * kv_heads * head_dim * max_ctx * 2) as u64
    }

    fn embedding(&self, table: &CudaWeight, out: &CudaBuf, t: usize) -> Result<()> {
        self.op_embedding(table, out, t)
    }

    fn rms_norm(
        &self,
        x: &CudaBuf,
        w: &CudaWeight,
        out: &CudaBuf,
        t: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        self.op_rms_norm(x, w, out, t, dim, eps)
    }

    fn matmul(
        &self,
        x: &CudaBuf,
        w: WeightView<'_, CudaWeight>,
        out: &CudaBuf,
        t: usize,
    ) -> Result<()> {
        self.op_matmul(x, &w, out, t, matmul::Path::Auto)
    }

    fn matmul_group(
        &self,
        x: &CudaBuf,
        views: &[WeightView<'_, CudaWeight>],
        outs: &[&CudaBuf],
        t: usize,
    ) -> Result<()> {
        self.op_matmul_group(x, views, outs, t)
    }

    fn add_bias(&self, x: &CudaBuf, bias: &CudaWeight, t: usize, n: usize) -> Result<()> {
        self.op_add_bias(x, bias, t, n)
    }

    fn rope(
        &self,
        x: &CudaBuf,
        inv_freq: &CudaBuf,
        t: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        self.op_rope(
            x,
            None,
            inv_freq,
            t,
            (heads, 0),
            head_dim,
            scale,
            layout,
            None,
        )
    }

    fn kv_write(
        &self,
        cache: &CudaCache,
        layer: usize,
        k: &CudaBuf,
        v: &CudaBuf,
        t: usize,
    ) -> Result<()> {
        self.op_kv_write(cache, layer, k, v, t)
    }

    fn attention(
        &self,
        q: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        heads: usize,
        scale: f32,
    ) -> Result<()> {
        self.op_attention(q, cache, layer, out, t, heads, scale, ops::AttnPath::Auto)
    }

    fn swiglu(&self, gate: &CudaBuf, up: &CudaBuf, out: &CudaBuf, n: usize) -> Result<()> {
        self.op_swiglu(gate, up, out, n)
    }

    fn add(&self, x: &CudaBuf, y: &CudaBuf, n: usize) -> Result<()> {
        self.op_add(x, y, n)
    }

    fn matmul_swiglu(
        &self,
        x: &CudaBuf,
        views: [WeightView<'_, CudaWeight>; 2],
        outs: [&CudaBuf; 2],
        t: usize,
    ) -> Result<()> {
        self.op_matmul_swiglu(x, None, views, outs, t)
    }

    fn norm_matmul_group(
        &self,
        x: &CudaBuf,
        (w, eps): (&CudaWeight, f32),
        xn: &CudaBuf,
        views: &[WeightView<'_, CudaWeight>],
        outs: &[&CudaBuf],
        t: usize,
    ) -> Result<()> {
        let norm = matmul::NormIn { w, eps, xn };
        self.op_norm_matmul_group(x, Some(norm), views, outs, t)
    }

    fn norm_matmul_swiglu(
        &self,
        x: &CudaBuf,
        (w, eps): (&CudaWeight, f32),
        xn: &CudaBuf,
        views: [WeightView<'_, CudaWeight>; 2],
        outs: [&CudaBuf; 2],
        t: usize,
    ) -> Result<()> {
        let norm = matmul::NormIn { w, eps, xn };
        self.op_matmul_swiglu(x, Some(norm), views, outs, t)
    }

    fn matmul_add(
        &self,
        x: &CudaBuf,
        w: WeightView<'_, CudaWeight>,
        y: &CudaBuf,
        resid: &CudaBuf,
        t: usize,
    ) -> Result<()> {
        if w.w.dtype == DType::I8 {
            self.op_matmul(x, &w, y, t, matmul::Path::Auto)?;
            return self.op_add(resid, y, t * w.rows);
        }
        self.op_matmul_add(x, &w, resid, t, matmul::Path::Auto, true)
    }

    fn rope_qk(
        &self,
        q: &CudaBuf,
        k: &CudaBuf,
        inv_freq: &CudaBuf,
        t: usize,
        heads: (usize, usize),
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        self.op_rope(
            q,
            Some(k),
            inv_freq,
            t,
            heads,
            head_dim,
            scale,
            layout,
            None,
        )
    }

    fn rope_kv_write(
        &self,
        (q, k, v): (&CudaBuf, &CudaBuf, &CudaBuf),
        inv_freq: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        t: usize,
        heads: (usize, usize),
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        let kv = Some((cache, layer, v));
        self.op_rope(q, Some(k), inv_freq, t, heads, head_dim, scale, layout, kv)
    }

    fn rope_attention(
        &self,
        qkv: (&CudaBuf, &CudaBuf, &CudaBuf),
        inv_freq: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        heads: (usize, usize),
        head_dim: usize,
        rope: (f32, RopeLayout),
        scale: f32,
    ) -> Result<()> {
        self.op_rope_attention(
            qkv, inv_freq, cache, layer, out, t, heads, head_dim, rope, scale,
        )
    }

    fn copy(
        &self,
        src: &CudaBuf,
        src_off: usize,
        dst: &CudaBuf,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        self.op_copy(src, src_off, dst, dst_off, n)
    }
}
