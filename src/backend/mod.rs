//! The `Backend` trait: the ops of a Llama-family forward pass, device memory, and the table
//! of (op, dtype) pairs a backend can run. Implemented by `wgpu`, `cuda` and `reference`
//! (plain Rust, the test oracle).
//!
//! Activations are f32, row-major `[t, width]`. Weights stay in their file dtype; the
//! kernels read that dtype directly. An op's name here is also its shader file
//! (`shaders/<op>*.wgsl`), its kernel file (`kernels/<op>*.cu`) and its test cases.

pub mod cases;
pub mod cuda;
pub mod reference;
mod rng;
pub mod wgpu;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::TensorInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Op {
    Embedding,
    RmsNorm,
    Matmul,
    AddBias,
    Rope,
    KvWrite,
    Attention,
    Swiglu,
    Add,
    Copy,
    Argmax,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::RmsNorm => "rms_norm",
            Op::Matmul => "matmul",
            Op::AddBias => "add_bias",
            Op::Rope => "rope",
            Op::KvWrite => "kv_write",
            Op::Attention => "attention",
            Op::Swiglu => "swiglu",
            Op::Add => "add",
            Op::Copy => "copy",
            Op::Argmax => "argmax",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a backend can run: the weight dtypes each weight-reading op accepts.
#[derive(Clone, Debug, Default)]
pub struct SupportTable {
    pub entries: Vec<(Op, DType)>,
}

impl SupportTable {
    pub fn new(ops: &[(Op, &[DType])]) -> SupportTable {
        let entries = ops
            .iter()
            .flat_map(|(op, dts)| dts.iter().map(move |d| (*op, *d)))
            .collect();
        SupportTable { entries }
    }

    pub fn supports(&self, op: Op, dtype: DType) -> bool {
        self.entries.contains(&(op, dtype))
    }

    pub fn dtypes_for(&self, op: Op) -> Vec<DType> {
        self.entries
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, d)| *d)
            .collect()
    }

    /// The standard error for a tensor this table cannot run, or Ok.
    pub fn check(&self, backend: &str, device: &str, t: &TensorInfo, op: Op) -> Result<()> {
        if self.supports(op, t.dtype) {
            return Ok(());
        }
        let supported = self.dtypes_for(op);
        let list = supported
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let suggestion = if t.dtype.is_quantized() || t.dtype == DType::I8 {
            format!(
                "Use a file quantized to one of those types (e.g. re-quantize with `lamina \
                 quantize IN OUT --type q8_0` or llama-quantize), or a backend that supports \
                 {} (see `lamina inspect MODEL`).",
                t.dtype
            )
        } else {
            format!(
                "Use a file whose weights are in one of those dtypes, or a backend that \
                 supports {} (see `lamina inspect MODEL`).",
                t.dtype
            )
        };
        Err(Error::UnsupportedDtype(Box::new(
            crate::error::Unsupported {
                tensor: t.name.clone(),
                dtype: t.dtype,
                op: op.name().to_string(),
                backend: backend.to_string(),
                device: device.to_string(),
                supported: if list.is_empty() {
                    "nothing".into()
                } else {
                    list
                },
                suggestion,
            },
        )))
    }
}

/// Which elements rope rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RopeLayout {
    /// Adjacent pairs (2i, 2i+1): GGUF llama files, whose Q/K rows the converter permuted.
    Normal,
    /// Halves (i, i + d/2), Hugging Face's rotate_half: HF checkpoints, and GGUF qwen2/phi3.
    Neox,
}

/// A weight matrix `[rows, cols]`, or a range of rows of one (Phi-3's fused qkv and
/// gate_up are read through such views, never copied).
#[derive(Debug)]
pub struct WeightView<'a, W> {
    pub w: &'a W,
    pub row0: usize,
    pub rows: usize,
    pub cols: usize,
    /// Per-row (output channel) scale of an int8 weight, and its zero point if asymmetric.
    pub scale: Option<&'a W>,
    pub zero: Option<&'a W>,
}

impl<W> Clone for WeightView<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W> Copy for WeightView<'_, W> {}

/// Device memory in bytes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MemInfo {
    pub free: u64,
    pub total: u64,
}

/// The ops of the forward pass over one device. Ops are enqueued in order on one queue or
/// stream; `read` waits for everything before it.
///
/// Each step starts with `set_step`, which places the step's token ids and positions on the
/// device; `embedding`, `rope`, `kv_write` and `attention` read them from there, so a decode
/// step issues the same launches every time (a CUDA graph can replay it).
#[allow(clippy::too_many_arguments)]
pub trait Backend {
    /// A device buffer of f32.
    type Buf;
    /// An uploaded weight tensor in its file dtype.
    type Weight;
    /// The KV cache of all layers.
    type Cache;

    fn name(&self) -> &'static str;
    /// The device, in words (adapter or GPU name, driver).
    fn device(&self) -> String;
    fn support(&self) -> SupportTable;
    fn memory(&self) -> Option<MemInfo> {
        None
    }
    /// Bytes of device memory this backend's live buffers, weights and caches hold.
    fn allocated_bytes(&self) -> u64;
    /// Fails, with the numbers and what to change, when `need_bytes` more would not fit on
    /// the device (backends that cannot tell say nothing).
    fn check_memory(&self, need_bytes: u64) -> Result<()> {
        let _ = need_bytes;
        Ok(())
    }
    /// Bytes of a KV cache `alloc_cache` would make (its storage dtype is the backend's).
    fn cache_bytes(&self, layers: usize, kv_heads: usize, head_dim: usize, max_ctx: usize) -> u64 {
        (2 * layers * kv_heads * head_dim * max_ctx * 4) as u64
    }

    /// Uploads a tensor's bytes unchanged (its dtype and shape from `t`).
    fn upload_weight(&self, t: &TensorInfo, bytes: &[u8]) -> Result<Self::Weight>;
    /// A buffer of `len` f32; its contents are undefined until written.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    fn write(&self, buf: &Self::Buf, data: &[f32]) -> Result<()>;
    fn read(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>>;
    /// The index of the largest of buf[0, len) as `sample::argmax` gives it (the first on
    /// ties; NaN never wins): greedy decoding. A backend may find it on the device and read
    /// back one index instead of the logits.
    fn argmax(&self, buf: &Self::Buf, len: usize) -> Result<u32> {
        Ok(crate::sample::argmax(&self.read(buf, len)?))
    }
    /// A KV cache for `max_ctx` positions.
    fn alloc_cache(
        &self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_ctx: usize,
    ) -> Result<Self::Cache>;

    /// The token ids and positions of the `ids.len()` rows of this step.
    fn set_step(&self, ids: &[u32], positions: &[u32]) -> Result<()>;
    /// Runs `f`, which enqueues a step's ops. A backend may record them under `key` the first
    /// time and replay the recording later instead of calling `f` (CUDA graphs).
    fn record(&self, key: Option<u64>, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let _ = key;
        f()
    }
    /// Forgets every recording (their buffers are about to be freed).
    fn clear_recordings(&self) -> Result<()> {
        Ok(())
    }

    /// out[t, :] = table[ids[t], :]
    fn embedding(&self, table: &Self::Weight, out: &Self::Buf, t: usize) -> Result<()>;
    /// out = x / rms(x) * w, per row of `dim`.
    fn rms_norm(
        &self,
        x: &Self::Buf,
        w: &Self::Weight,
        out: &Self::Buf,
        t: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()>;
    /// out[t, rows] = x[t, cols] . W[rows, cols]^T
    fn matmul(
        &self,
        x: &Self::Buf,
        w: WeightView<'_, Self::Weight>,
        out: &Self::Buf,
        t: usize,
    ) -> Result<()>;
    /// The same as `matmul` for each (view, out) pair, for weights that read the same x
    /// (q, k and v; gate and up): a backend may do them in one launch.
    fn matmul_group(
        &self,
        x: &Self::Buf,
        views: &[WeightView<'_, Self::Weight>],
        outs: &[&Self::Buf],
        t: usize,
    ) -> Result<()> {
        for (v, out) in views.iter().zip(outs) {
            self.matmul(x, *v, out, t)?;
        }
        Ok(())
    }
    /// Gate and up products of the same x into outs[0] and outs[1], then
    /// outs[0] = silu(gate) * up (`swiglu`): a backend may do it in one pass, leaving
    /// outs[1] unwritten.
    fn matmul_swiglu(
        &self,
        x: &Self::Buf,
        views: [WeightView<'_, Self::Weight>; 2],
        outs: [&Self::Buf; 2],
        t: usize,
    ) -> Result<()> {
        self.matmul_group(x, &views, &outs, t)?;
        self.swiglu(outs[0], outs[1], outs[0], t * views[0].rows)
    }
    /// `rms_norm(x, w)` into `xn` (of `eps`, over the products' columns), then
    /// `matmul_group` of xn: a backend may fuse the norm into the products' reading of x,
    /// leaving xn unwritten.
    fn norm_matmul_group(
        &self,
        x: &Self::Buf,
        (w, eps): (&Self::Weight, f32),
        xn: &Self::Buf,
        views: &[WeightView<'_, Self::Weight>],
        outs: &[&Self::Buf],
        t: usize,
    ) -> Result<()> {
        let dim = views
            .first()
            .ok_or_else(|| Error::backend(self.name(), "norm_matmul_group of no weights"))?
            .cols;
        self.rms_norm(x, w, xn, t, dim, eps)?;
        self.matmul_group(xn, views, outs, t)
    }
    /// `norm_matmul_group` for `matmul_swiglu`.
    fn norm_matmul_swiglu(
        &self,
        x: &Self::Buf,
        (w, eps): (&Self::Weight, f32),
        xn: &Self::Buf,
        views: [WeightView<'_, Self::Weight>; 2],
        outs: [&Self::Buf; 2],
        t: usize,
    ) -> Result<()> {
        self.rms_norm(x, w, xn, t, views[0].cols, eps)?;
        self.matmul_swiglu(xn, views, outs, t)
    }
    /// resid += x . W^T (the residual add after the o and down projections): `matmul` into
    /// `y`, then `add`; a backend may add in the product's store, leaving y unwritten.
    fn matmul_add(
        &self,
        x: &Self::Buf,
        w: WeightView<'_, Self::Weight>,
        y: &Self::Buf,
        resid: &Self::Buf,
        t: usize,
    ) -> Result<()> {
        self.matmul(x, w, y, t)?;
        self.add(resid, y, t * w.rows)
    }
    /// x[t, :] += bias
    fn add_bias(&self, x: &Self::Buf, bias: &Self::Weight, t: usize, n: usize) -> Result<()>;
    /// Rotates each head of x in place by angle position * inv_freq[i], with cos and sin
    /// multiplied by `scale` (longrope's attention factor; 1 otherwise).
    fn rope(
        &self,
        x: &Self::Buf,
        inv_freq: &Self::Buf,
        t: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()>;
    /// `rope` on a step's queries (`heads`) and keys (`kv_heads`); a backend may do both in
    /// one launch.
    #[allow(clippy::too_many_arguments)]
    fn rope_qk(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        inv_freq: &Self::Buf,
        t: usize,
        (heads, kv_heads): (usize, usize),
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        self.rope(q, inv_freq, t, heads, head_dim, scale, layout)?;
        self.rope(k, inv_freq, t, kv_heads, head_dim, scale, layout)
    }
    /// `rope_qk`, then `kv_write` of the rotated keys and the values into `layer` of the
    /// cache; a backend may do all of it in one launch.
    #[allow(clippy::too_many_arguments)]
    fn rope_kv_write(
        &self,
        (q, k, v): (&Self::Buf, &Self::Buf, &Self::Buf),
        inv_freq: &Self::Buf,
        cache: &Self::Cache,
        layer: usize,
        t: usize,
        heads: (usize, usize),
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        self.rope_qk(q, k, inv_freq, t, heads, head_dim, scale, layout)?;
        self.kv_write(cache, layer, k, v, t)
    }
    /// `rope_kv_write`, then `attention` of the rotated queries into `out`; a backend may do
    /// it in one launch (and then need not rotate q and k in place). `rope` is the cos/sin
    /// factor and layout, `scale` the softmax scale.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &self,
        (q, k, v): (&Self::Buf, &Self::Buf, &Self::Buf),
        inv_freq: &Self::Buf,
        cache: &Self::Cache,
        layer: usize,
        out: &Self::Buf,
        t: usize,
        heads: (usize, usize),
        head_dim: usize,
        rope: (f32, RopeLayout),
        scale: f32,
    ) -> Result<()> {
        let (rs, layout) = rope;
        self.rope_kv_write(
            (q, k, v),
            inv_freq,
            cache,
            layer,
            t,
            heads,
            head_dim,
            rs,
            layout,
        )?;
        self.attention(q, cache, layer, out, t, heads.0, scale)
    }
    /// Stores the step's keys and values at their positions in `layer` of the cache.
    fn kv_write(
        &self,
        cache: &Self::Cache,
        layer: usize,
        k: &Self::Buf,
        v: &Self::Buf,
        t: usize,
    ) -> Result<()>;
    /// Causal attention of the step's queries over the cache (grouped-query: query head h
    /// reads kv head h / (heads / kv_heads)); row t sees positions 0..=positions[t].
    fn attention(
        &self,
        q: &Self::Buf,
        cache: &Self::Cache,
        layer: usize,
        out: &Self::Buf,
        t: usize,
        heads: usize,
        scale: f32,
    ) -> Result<()>;
    /// out = silu(gate) * up
    fn swiglu(&self, gate: &Self::Buf, up: &Self::Buf, out: &Self::Buf, n: usize) -> Result<()>;
    /// x += y
    fn add(&self, x: &Self::Buf, y: &Self::Buf, n: usize) -> Result<()>;
    /// dst[dst_off..dst_off+n] = src[src_off..src_off+n]
    fn copy(
        &self,
        src: &Self::Buf,
        src_off: usize,
        dst: &Self::Buf,
        dst_off: usize,
        n: usize,
    ) -> Result<()>;
}
