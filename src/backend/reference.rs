//! The reference backend: every op in plain Rust, f32 buffers, sums in f64. It is the oracle
//! the wgpu and CUDA backends are checked against (src/backend/cases.rs), so it is written
//! for obviousness, not speed: weights stay as their file bytes and each op that reads one
//! decodes the rows it needs with `quant::dequantize_row`.

use super::{Backend, Op, RopeLayout, SupportTable, WeightView};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant;
use crate::weights::TensorInfo;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

const NAME: &str = "reference";

fn err(message: impl std::fmt::Display) -> Error {
    Error::backend(NAME, message)
}

/// Dtypes of the small vectors rms_norm and add_bias read (norm weights, biases).
const FLOATS: &[DType] = &[DType::F32, DType::F16, DType::BF16];

pub struct Reference {
    ids: RefCell<Vec<u32>>,
    positions: RefCell<Vec<u32>>,
    live: Rc<Cell<u64>>,
}

/// Bytes held by a buffer, weight or cache, counted in `Reference::allocated_bytes` while it
/// lives.
struct Held {
    live: Rc<Cell<u64>>,
    bytes: u64,
}

impl Held {
    fn new(live: &Rc<Cell<u64>>, bytes: usize) -> Held {
        live.set(live.get() + bytes as u64);
        Held {
            live: live.clone(),
            bytes: bytes as u64,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live.set(self.live.get() - self.bytes);
    }
}

/// A buffer of f32 on the host.
pub struct RefBuf {
    data: RefCell<Vec<f32>>,
    _held: Held,
}

/// A weight as the file stores it.
pub struct RefWeight {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
    _held: Held,
}

impl RefWeight {
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }
    fn cols(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Row `r` decoded to f32 (I8 as its integer values).
    fn row(&self, r: usize) -> Result<Vec<f32>> {
        let cols = self.cols();
        if r >= self.rows() {
            return Err(err(format!(
                "row {r} of '{}' which has {} rows",
                self.name,
                self.rows()
            )));
        }
        if self.dtype == DType::I8 {
            return Ok(self.bytes[r * cols..][..cols]
                .iter()
                .map(|&b| b as i8 as f32)
                .collect());
        }
        let rb = self
            .dtype
            .row_bytes(cols)
            .ok_or_else(|| err(format!("'{}': rows are not whole blocks", self.name)))?;
        let mut out = vec![0f32; cols];
        quant::dequantize_row(self.dtype, &self.bytes[r * rb..][..rb], &mut out)?;
        Ok(out)
    }

    /// Every element, decoded (for small vectors: norms, biases, scales).
    fn values(&self) -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity(self.rows() * self.cols());
        for r in 0..self.rows() {
            v.extend(self.row(r)?);
        }
        Ok(v)
    }
}

/// Keys and values of every layer: [layer][position][kv_head][head_dim], NaN until written so
/// that attention over a position nobody wrote shows up in the result.
pub struct RefCache {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    max_ctx: usize,
    k: RefCell<Vec<f32>>,
    v: RefCell<Vec<f32>>,
    _held: Held,
}

impl RefCache {
    fn at(&self, layer: usize, pos: usize) -> usize {
        (layer * self.max_ctx + pos) * self.kv_heads * self.head_dim
    }
}

impl Default for Reference {
    fn default() -> Self {
        Self::new()
    }
}

impl Reference {
    pub fn new() -> Reference {
        Reference {
            ids: RefCell::new(Vec::new()),
            positions: RefCell::new(Vec::new()),
            live: Rc::new(Cell::new(0)),
        }
    }

    fn need(&self, op: Op, w: &RefWeight) -> Result<()> {
        if self.support().supports(op, w.dtype) {
            Ok(())
        } else {
            Err(err(format!(
                "{op} does not take '{}' of dtype {}",
                w.name, w.dtype
            )))
        }
    }

    /// The step's positions, checked to cover `t` rows.
    fn positions(&self, t: usize) -> Result<Vec<u32>> {
        let p = self.positions.borrow();
        if p.len() < t {
            return Err(err(format!(
                "the step has {} positions, the op needs {t} (call set_step first)",
                p.len()
            )));
        }
        Ok(p[..t].to_vec())
    }

    /// What a W8A8 backend computes for an I8 weight (compressed-tensors with dynamic
    /// per-token activation quantization), next to `matmul`'s exact float product of the
    /// dequantized weight. Same arguments as `matmul`.
    pub fn matmul_w8a8_dynamic(
        &self,
        x: &RefBuf,
        w: WeightView<'_, RefWeight>,
        out: &RefBuf,
        t: usize,
    ) -> Result<()> {
        if w.w.dtype != DType::I8 {
            return Err(err(format!(
                "matmul_w8a8_dynamic takes an I8 weight, not {}",
                w.w.dtype
            )));
        }
        let (scale, zero) = int8_params(&w)?;
        let x = read(x, t * w.cols, "x")?;
        let xq: Vec<(Vec<i8>, f32)> = x
            .chunks_exact(w.cols.max(1))
            .map(quantize_activations)
            .collect();
        let mut y = vec![0f32; t * w.rows];
        for r in 0..w.rows {
            let row = w.w.row(w.row0 + r)?;
            let z = zero.as_ref().map_or(0.0, |z| z[w.row0 + r]);
            for (ti, (qx, sx)) in xq.iter().enumerate() {
                let acc: f64 = qx
                    .iter()
                    .zip(&row)
                    .map(|(&q, &wv)| q as f64 * (wv as f64 - z as f64))
                    .sum();
                y[ti * w.rows + r] = (acc * *sx as f64 * scale[w.row0 + r] as f64) as f32;
            }
        }
        write_into(out, 0, &y)
    }
}

/// Per-token symmetric int8 quantization of activations, as compressed-tensors' dynamic
/// W8A8 does it (and vLLM's kernels): scale = max|x| / 127, q = x / scale rounded half to
/// even. Returns the levels and the scale.
pub fn quantize_activations(x: &[f32]) -> (Vec<i8>, f32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let scale = amax / 127.0;
    if scale == 0.0 {
        return (vec![0; x.len()], 0.0);
    }
    let q = x
        .iter()
        .map(|&v| (v / scale).round_ties_even().clamp(-128.0, 127.0) as i8)
        .collect();
    (q, scale)
}

/// The per-row scales (and zero points) of an I8 weight view, decoded.
fn int8_params(w: &WeightView<'_, RefWeight>) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let rows = w.w.rows();
    let scale = w
        .scale
        .ok_or_else(|| err(format!("I8 weight '{}' has no scale", w.w.name)))?
        .values()?;
    let zero = w.zero.map(|z| z.values()).transpose()?;
    if scale.len() != rows || zero.as_ref().is_some_and(|z| z.len() != rows) {
        return Err(err(format!(
            "'{}' has {rows} rows but {} scales and {:?} zero points",
            w.w.name,
            scale.len(),
            zero.as_ref().map(|z| z.len())
        )));
    }
    Ok((scale, zero))
}

/// The first `len` values of a buffer, or an error if it is shorter.
fn read(b: &RefBuf, len: usize, what: &str) -> Result<Vec<f32>> {
    let v = b.data.borrow();
    if v.len() < len {
        return Err(err(format!(
            "{what} holds {} values, the op reads {len}",
            v.len()
        )));
    }
    Ok(v[..len].to_vec())
}

/// Writes `data` at `at`; inputs were copied out first, so `b` may be one of them.
fn write_into(b: &RefBuf, at: usize, data: &[f32]) -> Result<()> {
    let mut v = b.data.borrow_mut();
    let end = at
        .checked_add(data.len())
        .filter(|&e| e <= v.len())
        .ok_or_else(|| {
            err(format!(
                "writing {} values at {at} into a buffer of {}",
                data.len(),
                v.len()
            ))
        })?;
    v[at..end].copy_from_slice(data);
    Ok(())
}

impl Backend for Reference {
    type Buf = RefBuf;
    type Weight = RefWeight;
    type Cache = RefCache;

    fn name(&self) -> &'static str {
        NAME
    }

    fn device(&self) -> String {
        "host CPU (plain Rust, f64 sums)".into()
    }

    fn support(&self) -> SupportTable {
        let mut matmul = quant::DEQUANTIZE_DTYPES.to_vec();
        matmul.push(DType::I8);
        let f32_only: &[DType] = &[DType::F32];
        SupportTable::new(&[
            (Op::Embedding, quant::DEQUANTIZE_DTYPES),
            (Op::RmsNorm, FLOATS),
            (Op::Matmul, &matmul),
            (Op::AddBias, FLOATS),
            (Op::Rope, f32_only),
            (Op::KvWrite, f32_only),
            (Op::Attention, f32_only),
            (Op::Swiglu, f32_only),
            (Op::Add, f32_only),
            (Op::Copy, f32_only),
            (Op::Argmax, f32_only),
        ])
    }

    fn allocated_bytes(&self) -> u64 {
        self.live.get()
    }

    fn upload_weight(&self, t: &TensorInfo, bytes: &[u8]) -> Result<RefWeight> {
        match t.dtype.tensor_bytes(&t.shape) {
            Some(n) if n == bytes.len() => Ok(RefWeight {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                bytes: bytes.to_vec(),
                _held: Held::new(&self.live, bytes.len()),
            }),
            need => Err(err(format!(
                "'{}' ({} {:?}) needs {need:?} bytes, got {}",
                t.name,
                t.dtype,
                t.shape,
                bytes.len()
            ))),
        }
    }

    fn alloc(&self, len: usize) -> Result<RefBuf> {
        Ok(RefBuf {
            data: RefCell::new(vec![f32::NAN; len]),
            _held: Held::new(&self.live, len * 4),
        })
    }

    fn write(&self, buf: &RefBuf, data: &[f32]) -> Result<()> {
        write_into(buf, 0, data)
    }

    fn read(&self, buf: &RefBuf, len: usize) -> Result<Vec<f32>> {
        read(buf, len, "buffer")
    }

    fn alloc_cache(
        &self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_ctx: usize,
    ) -> Result<RefCache> {
        let len = [layers, kv_heads, head_dim, max_ctx]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| err("KV cache size overflows"))?;
        Ok(RefCache {
            layers,
            kv_heads,
            head_dim,
            max_ctx,
            k: RefCell::new(vec![f32::NAN; len]),
            v: RefCell::new(vec![f32::NAN; len]),
            _held: Held::new(&self.live, len * 8),
        })
    }

    fn set_step(&self, ids: &[u32], positions: &[u32]) -> Result<()> {
        if ids.len() != positions.len() {
            return Err(err(format!(
                "{} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        *self.ids.borrow_mut() = ids.to_vec();
        *self.positions.borrow_mut() = positions.to_vec();
        Ok(())
    }

    fn embedding(&self, table: &RefWeight, out: &RefBuf, t: usize) -> Result<()> {
        self.need(Op::Embedding, table)?;
        let ids = self.ids.borrow().clone();
        if ids.len() < t {
            return Err(err(format!(
                "embedding of {t} rows, the step has {}",
                ids.len()
            )));
        }
        let mut y = Vec::with_capacity(t * table.cols());
        for &id in &ids[..t] {
            y.extend(table.row(id as usize)?);
        }
        write_into(out, 0, &y)
    }

    fn rms_norm(
        &self,
        x: &RefBuf,
        w: &RefWeight,
        out: &RefBuf,
        t: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        self.need(Op::RmsNorm, w)?;
        let wv = w.values()?;
        if wv.len() != dim {
            return Err(err(format!("norm weight of {} for dim {dim}", wv.len())));
        }
        let x = read(x, t * dim, "x")?;
        let mut y = Vec::with_capacity(t * dim);
        for row in x.chunks_exact(dim.max(1)) {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            y.extend(
                row.iter()
                    .zip(&wv)
                    .map(|(&v, &g)| (v as f64 * inv * g as f64) as f32),
            );
        }
        write_into(out, 0, &y)
    }

    fn matmul(
        &self,
        x: &RefBuf,
        w: WeightView<'_, RefWeight>,
        out: &RefBuf,
        t: usize,
    ) -> Result<()> {
        self.need(Op::Matmul, w.w)?;
        if w.cols != w.w.cols() || w.row0 + w.rows > w.w.rows() {
            return Err(err(format!(
                "view rows {}..{} x {} of '{}' {:?}",
                w.row0,
                w.row0 + w.rows,
                w.cols,
                w.w.name,
                w.w.shape
            )));
        }
        let (scale, zero) = if w.w.dtype == DType::I8 {
            let (s, z) = int8_params(&w)?;
            (Some(s), z)
        } else {
            (None, None)
        };
        let x = read(x, t * w.cols, "x")?;
        let mut y = vec![0f32; t * w.rows];
        for r in 0..w.rows {
            let row = w.w.row(w.row0 + r)?;
            let z = zero.as_ref().map_or(0.0, |z| z[w.row0 + r] as f64);
            let s = scale.as_ref().map_or(1.0, |s| s[w.row0 + r] as f64);
            for (ti, xt) in x.chunks_exact(w.cols.max(1)).enumerate() {
                let acc: f64 = xt
                    .iter()
                    .zip(&row)
                    .map(|(&a, &b)| a as f64 * (b as f64 - z))
                    .sum();
                y[ti * w.rows + r] = (acc * s) as f32;
            }
        }
        write_into(out, 0, &y)
    }

    fn add_bias(&self, x: &RefBuf, bias: &RefWeight, t: usize, n: usize) -> Result<()> {
        self.need(Op::AddBias, bias)?;
        let b = bias.values()?;
        if b.len() != n {
            return Err(err(format!("bias of {} for width {n}", b.len())));
        }
        let mut y = read(x, t * n, "x")?;
        for row in y.chunks_exact_mut(n.max(1)) {
            row.iter_mut().zip(&b).for_each(|(v, &b)| *v += b);
        }
        write_into(x, 0, &y)
    }

    fn rope(
        &self,
        x: &RefBuf,
        inv_freq: &RefBuf,
        t: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
    ) -> Result<()> {
        if !head_dim.is_multiple_of(2) || heads == 0 {
            return Err(err(format!("rope of {heads} heads of dim {head_dim}")));
        }
        let half = head_dim / 2;
        let freq = read(inv_freq, half, "inv_freq")?;
        let pos = self.positions(t)?;
        let mut y = read(x, t * heads * head_dim, "x")?;
        for (row, &p) in y.chunks_exact_mut(heads * head_dim).zip(&pos) {
            for head in row.chunks_exact_mut(head_dim) {
                for (i, &f) in freq.iter().enumerate() {
                    // The angle is an f32 product, as Hugging Face and every kernel form it;
                    // only cos and sin and the rotation are done in f64.
                    let angle = (p as f32 * f) as f64;
                    let (sin, cos) = angle.sin_cos();
                    let (cos, sin) = (cos * scale as f64, sin * scale as f64);
                    let (a, b) = match layout {
                        RopeLayout::Normal => (2 * i, 2 * i + 1),
                        RopeLayout::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a] as f64, head[b] as f64);
                    head[a] = (x0 * cos - x1 * sin) as f32;
                    head[b] = (x0 * sin + x1 * cos) as f32;
                }
            }
        }
        write_into(x, 0, &y)
    }

    fn kv_write(
        &self,
        cache: &RefCache,
        layer: usize,
        k: &RefBuf,
        v: &RefBuf,
        t: usize,
    ) -> Result<()> {
        let width = cache.kv_heads * cache.head_dim;
        if layer >= cache.layers {
            return Err(err(format!(
                "layer {layer} of a {}-layer cache",
                cache.layers
            )));
        }
        let pos = self.positions(t)?;
        let (kx, vx) = (read(k, t * width, "k")?, read(v, t * width, "v")?);
        let (mut kc, mut vc) = (cache.k.borrow_mut(), cache.v.borrow_mut());
        for (r, &p) in pos.iter().enumerate() {
            if p as usize >= cache.max_ctx {
                return Err(err(format!(
                    "position {p} past the cache's {}",
                    cache.max_ctx
                )));
            }
            let at = cache.at(layer, p as usize);
            kc[at..at + width].copy_from_slice(&kx[r * width..][..width]);
            vc[at..at + width].copy_from_slice(&vx[r * width..][..width]);
        }
        Ok(())
    }

    fn attention(
        &self,
        q: &RefBuf,
        cache: &RefCache,
        layer: usize,
        out: &RefBuf,
        t: usize,
        heads: usize,
        scale: f32,
    ) -> Result<()> {
        let (kvh, d) = (cache.kv_heads, cache.head_dim);
        if layer >= cache.layers || kvh == 0 || !heads.is_multiple_of(kvh) {
            return Err(err(format!(
                "attention of {heads} heads over {kvh} kv heads, layer {layer} of {}",
                cache.layers
            )));
        }
        let group = heads / kvh;
        let pos = self.positions(t)?;
        let qx = read(q, t * heads * d, "q")?;
        let (kc, vc) = (cache.k.borrow(), cache.v.borrow());
        let mut y = vec![0f32; t * heads * d];
        for (r, &p) in pos.iter().enumerate() {
            let seen = p as usize + 1;
            if seen > cache.max_ctx {
                return Err(err(format!(
                    "position {p} past the cache's {}",
                    cache.max_ctx
                )));
            }
            for h in 0..heads {
                let qh = &qx[(r * heads + h) * d..][..d];
                let kv_at = |j: usize| cache.at(layer, j) + (h / group) * d;
                let scores: Vec<f64> = (0..seen)
                    .map(|j| {
                        let kj = &kc[kv_at(j)..][..d];
                        let dot: f64 = qh.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                        dot * scale as f64
                    })
                    .collect();
                let max = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let yh = &mut y[(r * heads + h) * d..][..d];
                for (i, yv) in yh.iter_mut().enumerate() {
                    let acc: f64 = (0..seen)
                        .map(|j| weights[j] * vc[kv_at(j) + i] as f64)
                        .sum();
                    *yv = (acc / total) as f32;
                }
            }
        }
        drop((kc, vc));
        write_into(out, 0, &y)
    }

    fn swiglu(&self, gate: &RefBuf, up: &RefBuf, out: &RefBuf, n: usize) -> Result<()> {
        let (g, u) = (read(gate, n, "gate")?, read(up, n, "up")?);
        let y: Vec<f32> = g
            .iter()
            .zip(&u)
            .map(|(&g, &u)| {
                let g = g as f64;
                (g / (1.0 + (-g).exp()) * u as f64) as f32
            })
            .collect();
        write_into(out, 0, &y)
    }

    fn add(&self, x: &RefBuf, y: &RefBuf, n: usize) -> Result<()> {
        let (a, b) = (read(x, n, "x")?, read(y, n, "y")?);
        let s: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        write_into(x, 0, &s)
    }

    fn copy(
        &self,
        src: &RefBuf,
        src_off: usize,
        dst: &RefBuf,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        let end = src_off
            .checked_add(n)
            .ok_or_else(|| err("copy range overflows"))?;
        let v = read(src, end, "src")?;
        write_into(dst, dst_off, &v[src_off..])
    }
}
