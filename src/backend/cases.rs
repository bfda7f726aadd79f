//! The per-op conformance cases: every op x every dtype it takes x shapes with odd sizes and
//! sizes that are not multiples of the usual tiles. Each backend's test runs them all against
//! the reference (`run_all`); `bench` of single ops reuses `prepare`.
//!
//! Inputs are random (seeded, never zeros); quantized weights are random f32 quantized with
//! `crate::quant`. Output buffers start as NaN on the backend under test, so an element it
//! never writes shows up. The measure is NMSE = sum((a - r)^2) / sum(r^2) against the
//! reference r, under `nmse_limit` of the case's dtype.
//!
//! Weightless ops (rope, kv_write, attention, swiglu, add, copy, argmax) have dtype F32: a backend
//! lists them in its support table as (op, F32), or their cases are skipped.

use super::reference::Reference;
pub use super::rng::Rng;
use super::{Backend, Op, RopeLayout, WeightView};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant;
use crate::weights::TensorInfo;

/// One conformance case. Which fields an op reads:
///
/// | op         | fields                                                                    |
/// |------------|---------------------------------------------------------------------------|
/// | embedding  | t ids, n = dim, k = vocab                                                 |
/// | rms_norm   | t rows of n                                                               |
/// | matmul     | t rows, weight view of n rows from row0 of k columns; I8: scale_dtype, zero_point; add: matmul_add |
/// | add_bias   | t rows of n                                                               |
/// | rope       | t rows of heads x head_dim at positions offset.., layout, scale           |
/// | kv_write   | t rows at positions offset.. into layer 1 (read back by attention)        |
/// | attention  | t queries at positions offset.. over heads/kv_heads x head_dim, scale     |
/// | swiglu/add | n elements                                                                |
/// | copy       | n elements from src[k..] to dst[offset..]                                 |
/// | argmax     | n elements; k = 1: NaNs and the largest value twice                       |
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub op: Op,
    /// The weight's dtype, or F32 for weightless ops.
    pub dtype: DType,
    pub t: usize,
    pub n: usize,
    pub k: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub offset: usize,
    pub layout: RopeLayout,
    /// Rope: factor on cos/sin. Attention: softmax scale.
    pub scale: f32,
    pub row0: usize,
    pub scale_dtype: DType,
    pub zero_point: bool,
    /// Matmul: `matmul_add` onto a random output (the residual add) instead of `matmul`.
    pub add: bool,
}

impl Case {
    fn new(op: Op, dtype: DType) -> Case {
        Case {
            name: String::new(),
            op,
            dtype,
            t: 1,
            n: 1,
            k: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
            offset: 0,
            layout: RopeLayout::Normal,
            scale: 1.0,
            row0: 0,
            scale_dtype: DType::F32,
            zero_point: false,
            add: false,
        }
    }

    fn named(mut self) -> Case {
        let c = &self;
        let dt = c.dtype.to_string().to_lowercase();
        self.name = match c.op {
            Op::Embedding => format!("embedding_{dt}_t{}_dim{}_vocab{}", c.t, c.n, c.k),
            Op::RmsNorm | Op::AddBias => format!("{}_{dt}_t{}_n{}", c.op, c.t, c.n),
            Op::Matmul => {
                let mut s = format!("matmul_{dt}_t{}_n{}_k{}", c.t, c.n, c.k);
                if c.row0 > 0 {
                    s += &format!("_row0_{}", c.row0);
                }
                if c.dtype == DType::I8 {
                    s += &format!("_scale_{}", c.scale_dtype.to_string().to_lowercase());
                    if c.zero_point {
                        s += "_zero";
                    }
                }
                if c.add {
                    s += "_add";
                }
                s
            }
            Op::Rope => format!(
                "rope_{}_t{}_h{}_d{}_pos{}_s{}",
                if c.layout == RopeLayout::Neox {
                    "neox"
                } else {
                    "normal"
                },
                c.t,
                c.heads,
                c.head_dim,
                c.offset,
                c.scale
            ),
            Op::KvWrite | Op::Attention => format!(
                "{}_t{}_h{}_kv{}_d{}_past{}",
                c.op, c.t, c.heads, c.kv_heads, c.head_dim, c.offset
            ),
            Op::Swiglu | Op::Add => format!("{}_n{}", c.op, c.n),
            Op::Copy => format!("copy_n{}_from{}_to{}", c.n, c.k, c.offset),
            Op::Argmax => format!("argmax_n{}{}", c.n, ["", "_nan_ties"][c.k]),
        };
        self
    }
}

/// The largest NMSE a backend may show against the reference. The inputs are identical and
/// weights are decoded exactly, so what remains is summation order and what a backend may
/// legitimately round: f16 KV cache or fast cos/sin (F32), f16 or bf16 activations in a
/// product with an f16 or bf16 weight, activations quantized to 8 bits for integer products
/// (I8 W8A8 per token; block types per block, as llama.cpp's q8_1 does). Real bugs (a wrong
/// nibble, scale or offset) give 1e-2 or more.
pub fn nmse_limit(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-6,
        DType::F16 => 1e-5,
        DType::BF16 => 1e-4,
        _ => 5e-4,
    }
}

const MATMUL_DTYPES: &[DType] = &[
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
    DType::I8,
];
const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Inner sizes per dtype: whole blocks; for float weights even (f16/bf16 rows start on a
/// 4-byte boundary) but not multiples of 4; I8 multiples of 4 (packed int8 dot products).
fn inner_sizes(dtype: DType) -> [usize; 5] {
    match dtype.block_elems() {
        256 => [256, 512, 768, 1280, 2048],
        32 => [32, 96, 288, 800, 2048],
        _ if dtype == DType::I8 => [32, 96, 260, 772, 2048],
        _ => [2, 96, 130, 770, 2048],
    }
}

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for &dt in MATMUL_DTYPES {
        let ks = inner_sizes(dt);
        // (t, n, k index, row0): decode and prefill, tiny and odd, and views into a fused
        // weight (row0 > 0) as Phi-3's qkv and gate_up are read.
        let shapes = [
            (1, 1, 0, 0),
            (1, 257, 3, 0),
            (3, 5, 1, 0),
            (17, 33, 2, 0),
            (64, 257, 1, 0),
            (1, 33, 2, 7),
            (5, 64, 3, 64),
            (2, 17, 4, 0),
        ];
        for (i, &(t, n, ki, row0)) in shapes.iter().enumerate() {
            let mut c = Case::new(Op::Matmul, dt);
            (c.t, c.n, c.k, c.row0) = (t, n, ks[ki], row0);
            if dt == DType::I8 {
                c.scale_dtype = if i % 2 == 0 { DType::F32 } else { DType::BF16 };
                c.zero_point = i % 3 == 2;
            }
            v.push(c.named());
        }
        // matmul_add: decode, a view of a fused weight, prefill.
        for (t, n, ki, row0) in [(1, 257, 3, 0), (5, 64, 3, 64), (64, 257, 1, 0)] {
            let mut c = Case::new(Op::Matmul, dt);
            (c.t, c.n, c.k, c.row0, c.add) = (t, n, ks[ki], row0, true);
            v.push(c.named());
        }
    }
    for &dt in quant::DEQUANTIZE_DTYPES {
        let ks = inner_sizes(dt);
        for (t, dim, vocab) in [(1, ks[0], 50), (7, ks[2], 100)] {
            let mut c = Case::new(Op::Embedding, dt);
            (c.t, c.n, c.k) = (t, dim, vocab);
            v.push(c.named());
        }
    }
    for dt in FLOATS {
        let odd = if dt == DType::F32 { 257 } else { 258 };
        for (t, n) in [(1, 64), (3, 896), (17, odd), (2, 2048)] {
            let mut c = Case::new(Op::RmsNorm, dt);
            (c.t, c.n) = (t, n);
            v.push(c.named());
        }
        for (t, n) in [(1, 896), (5, 130), (17, 64)] {
            let mut c = Case::new(Op::AddBias, dt);
            (c.t, c.n) = (t, n);
            v.push(c.named());
        }
    }
    for layout in [RopeLayout::Normal, RopeLayout::Neox] {
        for (t, heads, d, pos, scale) in [
            (1, 3, 64, 0, 1.0),
            (7, 5, 128, 13, 1.0),
            (17, 2, 80, 0, 1.0),
            (1, 9, 64, 3000, 1.0),
            (4, 3, 96, 100, 1.1902),
        ] {
            let mut c = Case::new(Op::Rope, DType::F32);
            (c.t, c.heads, c.head_dim, c.offset, c.scale, c.layout) =
                (t, heads, d, pos, scale, layout);
            v.push(c.named());
        }
    }
    for (t, heads, kv, d, past) in [(1, 2, 2, 64, 10), (7, 3, 3, 80, 0), (5, 4, 4, 128, 20)] {
        let mut c = Case::new(Op::KvWrite, DType::F32);
        (c.t, c.heads, c.kv_heads, c.head_dim, c.offset) = (t, heads, kv, d, past);
        c.scale = 1.0 / (d as f32).sqrt();
        v.push(c.named());
    }
    // Decode over a long cache and prefill with the causal mask, from 0 and after a chunk;
    // GQA ratios 1, 3, 4 and 8; odd head counts.
    for (t, heads, kv, d, past) in [
        (1, 4, 4, 64, 300),
        (1, 6, 2, 80, 200),
        (1, 12, 3, 64, 511),
        (1, 8, 1, 128, 150),
        (17, 4, 4, 64, 0),
        (9, 8, 2, 128, 0),
        (5, 3, 1, 80, 40),
        (33, 7, 7, 64, 0),
        (64, 8, 8, 64, 0),
    ] {
        let mut c = Case::new(Op::Attention, DType::F32);
        (c.t, c.heads, c.kv_heads, c.head_dim, c.offset) = (t, heads, kv, d, past);
        c.scale = 1.0 / (d as f32).sqrt();
        v.push(c.named());
    }
    for op in [Op::Swiglu, Op::Add] {
        for n in [1, 17, 1000, 4099] {
            let mut c = Case::new(op, DType::F32);
            c.n = n;
            v.push(c.named());
        }
    }
    for (n, from, to) in [(1, 0, 0), (17, 3, 5), (1000, 7, 0), (4099, 0, 11)] {
        let mut c = Case::new(Op::Copy, DType::F32);
        (c.n, c.k, c.offset) = (n, from, to);
        v.push(c.named());
    }
    // k = 1: NaNs and the largest value twice (the first one wins).
    for (n, k) in [(1, 0), (17, 1), (1000, 0), (4099, 1), (128_256, 1)] {
        let mut c = Case::new(Op::Argmax, DType::F32);
        (c.n, c.k) = (n, k);
        v.push(c.named());
    }
    v
}

/// A random weight of `dtype` (`shape` outermost first), as a file would hold it.
fn weight(
    rng: &mut Rng,
    name: &str,
    dtype: DType,
    shape: &[usize],
    scale: f32,
) -> Result<(TensorInfo, Vec<u8>)> {
    let cols = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    let bytes = if dtype == DType::I8 {
        (0..rows * cols)
            .map(|_| (rng.below(255) as i32 - 127) as i8 as u8)
            .collect()
    } else {
        let mut b = Vec::new();
        for _ in 0..rows {
            b.extend(quant::quantize_row(dtype, &rng.normals(cols, scale))?);
        }
        b
    };
    Ok(tensor(name, dtype, shape, bytes))
}

/// A fill of the KV cache made while preparing a case.
struct Fill {
    layer: usize,
    positions: Vec<u32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

/// A case's inputs on the host: made once, uploaded to each backend alike.
pub struct Inputs {
    bufs: Vec<Vec<f32>>,
    weights: Vec<(TensorInfo, Vec<u8>)>,
    /// (layers, kv_heads, head_dim, max_ctx) and what is written into it before the op.
    cache: Option<(usize, usize, usize, usize)>,
    fills: Vec<Fill>,
    ids: Vec<u32>,
    positions: Vec<u32>,
    out: usize,
    out_len: usize,
}

/// The inputs of `case` made from `seed`. The compared buffer starts as NaN (for copy: its
/// target range).
pub fn inputs(case: &Case, seed: u64) -> Result<Inputs> {
    let c = case;
    let mut rng = Rng::new(seed);
    let nan = |n: usize| vec![f32::NAN; n];
    let mut bufs: Vec<Vec<f32>> = Vec::new();
    let mut weights = Vec::new();
    let mut fills = Vec::new();
    let mut cache = None;
    let mut ids = vec![0u32; c.t];
    let positions: Vec<u32> = (c.offset..c.offset + c.t).map(|p| p as u32).collect();
    let (out, out_len);
    let name = |what: &str| format!("case.{}.{what}", c.name);
    match c.op {
        Op::Embedding => {
            weights.push(weight(&mut rng, &name("table"), c.dtype, &[c.k, c.n], 1.0)?);
            ids = (0..c.t).map(|_| rng.below(c.k) as u32).collect();
            ids[c.t - 1] = (c.k - 1) as u32;
            bufs.push(nan(c.t * c.n));
            (out, out_len) = (0, c.t * c.n);
        }
        Op::RmsNorm => {
            weights.push(weight(&mut rng, &name("norm"), c.dtype, &[c.n], 1.0)?);
            bufs.push(rng.normals(c.t * c.n, 1.0));
            bufs.push(nan(c.t * c.n));
            (out, out_len) = (1, c.t * c.n);
        }
        Op::Matmul => {
            let rows = c.n + 2 * c.row0;
            let s = 1.0 / (c.k as f32).sqrt();
            weights.push(weight(&mut rng, &name("w"), c.dtype, &[rows, c.k], s)?);
            if c.dtype == DType::I8 {
                let scales: Vec<f32> = (0..rows)
                    .map(|_| s / 127.0 * (0.5 + rng.uniform() as f32))
                    .collect();
                let bytes = quant::quantize_row(c.scale_dtype, &scales)?;
                weights.push(tensor(&name("scale"), c.scale_dtype, &[rows, 1], bytes));
                if c.zero_point {
                    let z = (0..rows)
                        .map(|_| (rng.below(17) as i32 - 8) as i8 as u8)
                        .collect();
                    weights.push(tensor(&name("zero"), DType::I8, &[rows, 1], z));
                }
            }
            bufs.push(rng.normals(c.t * c.k, 1.0));
            if c.add {
                bufs.push(rng.normals(c.t * c.n, 1.0));
                bufs.push(nan(c.t * c.n));
            } else {
                bufs.push(nan(c.t * c.n));
            }
            (out, out_len) = (1, c.t * c.n);
        }
        Op::AddBias => {
            weights.push(weight(&mut rng, &name("bias"), c.dtype, &[c.n], 1.0)?);
            bufs.push(rng.normals(c.t * c.n, 1.0));
            (out, out_len) = (0, c.t * c.n);
        }
        Op::Rope => {
            let d = c.head_dim;
            bufs.push(rng.normals(c.t * c.heads * d, 1.0));
            bufs.push(
                (0..d / 2)
                    .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
                    .collect(),
            );
            (out, out_len) = (0, c.t * c.heads * d);
        }
        Op::KvWrite | Op::Attention => {
            let width = c.kv_heads * c.head_dim;
            let all = c.offset + c.t;
            // Layer 0 holds other keys and values: reading the wrong layer shows.
            let fill = |rng: &mut Rng, layer, from: usize, to: usize| Fill {
                layer,
                positions: (from as u32..to as u32).collect(),
                k: rng.normals((to - from) * width, 1.0),
                v: rng.normals((to - from) * width, 1.0),
            };
            fills.push(fill(&mut rng, 0, 0, all));
            if c.offset > 0 {
                fills.push(fill(&mut rng, 1, 0, c.offset));
            }
            cache = Some((2, c.kv_heads, c.head_dim, all + 3));
            // This step's keys and values: kv_write's op, or written before attention runs.
            let this = fill(&mut rng, 1, c.offset, all);
            bufs.push(rng.normals(c.t * c.heads * c.head_dim, 1.0));
            bufs.push(nan(c.t * c.heads * c.head_dim));
            bufs.push(this.k.clone());
            bufs.push(this.v.clone());
            if c.op == Op::Attention {
                fills.push(this);
            }
            (out, out_len) = (1, c.t * c.heads * c.head_dim);
        }
        Op::Swiglu => {
            bufs.push(rng.normals(c.n, 2.0));
            bufs.push(rng.normals(c.n, 1.0));
            bufs.push(nan(c.n));
            (out, out_len) = (2, c.n);
        }
        Op::Add => {
            bufs.push(rng.normals(c.n, 1.0));
            bufs.push(rng.normals(c.n, 1.0));
            (out, out_len) = (0, c.n);
        }
        Op::Copy => {
            bufs.push(rng.normals(c.k + c.n + 2, 1.0));
            let mut dst = rng.normals(c.offset + c.n + 3, 1.0);
            dst[c.offset..c.offset + c.n].fill(f32::NAN);
            (out, out_len) = (1, dst.len());
            bufs.push(dst);
        }
        Op::Argmax => {
            let mut x = rng.normals(c.n, 1.0);
            if c.k == 1 {
                (x[0], x[c.n / 2]) = (f32::NAN, f32::NAN);
                (x[c.n / 3], x[c.n - 1]) = (9.0, 9.0);
            }
            bufs.push(x);
            (out, out_len) = (1, c.n);
            bufs.push(nan(c.n));
        }
    }
    Ok(Inputs {
        bufs,
        weights,
        cache,
        fills,
        ids,
        positions,
        out,
        out_len,
    })
}

/// A case with its inputs on one backend: `step` then `op` runs it (and `op` alone is what
/// `bench` times), `output` reads the result.
pub struct Prepared<'a, B: Backend> {
    b: &'a B,
    pub case: Case,
    bufs: Vec<B::Buf>,
    weights: Vec<B::Weight>,
    cache: Option<B::Cache>,
    ids: Vec<u32>,
    positions: Vec<u32>,
    out: usize,
    out_len: usize,
}

/// Uploads `inputs` (made by `inputs(case, ..)`) to `b`.
pub fn prepare<'a, B: Backend>(b: &'a B, case: &Case, inputs: &Inputs) -> Result<Prepared<'a, B>> {
    let Inputs {
        bufs,
        weights,
        cache,
        fills,
        ids,
        positions,
        out,
        out_len,
    } = inputs;
    let mut dev_bufs = Vec::new();
    for data in bufs {
        let buf = b.alloc(data.len())?;
        b.write(&buf, data)?;
        dev_bufs.push(buf);
    }
    let mut dev_weights = Vec::new();
    for (info, bytes) in weights {
        dev_weights.push(b.upload_weight(info, bytes)?);
    }
    let dev_cache = match *cache {
        Some((layers, kv, d, ctx)) => {
            let cache = b.alloc_cache(layers, kv, d, ctx)?;
            for f in fills {
                let (k, v) = (b.alloc(f.k.len())?, b.alloc(f.v.len())?);
                b.write(&k, &f.k)?;
                b.write(&v, &f.v)?;
                b.set_step(&vec![0; f.positions.len()], &f.positions)?;
                b.kv_write(&cache, f.layer, &k, &v, f.positions.len())?;
            }
            Some(cache)
        }
        None => None,
    };
    Ok(Prepared {
        b,
        case: case.clone(),
        bufs: dev_bufs,
        weights: dev_weights,
        cache: dev_cache,
        ids: ids.clone(),
        positions: positions.clone(),
        out: *out,
        out_len: *out_len,
    })
}

/// A tensor as if read from a file: its descriptor and bytes.
fn tensor(name: &str, dtype: DType, shape: &[usize], bytes: Vec<u8>) -> (TensorInfo, Vec<u8>) {
    let info = TensorInfo {
        name: name.to_string(),
        file_name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        file: 0,
        offset: 0,
        len: bytes.len(),
    };
    (info, bytes)
}

const EPS: f32 = 1e-5;

impl<B: Backend> Prepared<'_, B> {
    /// Places the case's token ids and positions.
    pub fn step(&self) -> Result<()> {
        self.b.set_step(&self.ids, &self.positions)
    }

    fn cache(&self) -> Result<&B::Cache> {
        self.cache
            .as_ref()
            .ok_or_else(|| Error::Input(format!("case {} has no cache", self.case.name)))
    }

    /// The op under test, once.
    pub fn op(&self) -> Result<()> {
        let (b, c, buf, w) = (self.b, &self.case, &self.bufs, &self.weights);
        match c.op {
            Op::Embedding => b.embedding(&w[0], &buf[0], c.t),
            Op::RmsNorm => b.rms_norm(&buf[0], &w[0], &buf[1], c.t, c.n, EPS),
            Op::Matmul => {
                let view = WeightView {
                    w: &w[0],
                    row0: c.row0,
                    rows: c.n,
                    cols: c.k,
                    scale: w.get(1),
                    zero: w.get(2),
                };
                if c.add {
                    b.matmul_add(&buf[0], view, &buf[2], &buf[1], c.t)
                } else {
                    b.matmul(&buf[0], view, &buf[1], c.t)
                }
            }
            Op::AddBias => b.add_bias(&buf[0], &w[0], c.t, c.n),
            Op::Rope => b.rope(
                &buf[0], &buf[1], c.t, c.heads, c.head_dim, c.scale, c.layout,
            ),
            Op::KvWrite => b.kv_write(self.cache()?, 1, &buf[2], &buf[3], c.t),
            Op::Attention => b.attention(&buf[0], self.cache()?, 1, &buf[1], c.t, c.heads, c.scale),
            Op::Swiglu => b.swiglu(&buf[0], &buf[1], &buf[2], c.n),
            Op::Add => b.add(&buf[0], &buf[1], c.n),
            Op::Copy => b.copy(&buf[0], c.k, &buf[1], c.offset, c.n),
            // The index as a one-hot row: any other index differs in two elements.
            Op::Argmax => {
                let mut hot = vec![0.0; c.n];
                if let Some(h) = hot.get_mut(b.argmax(&buf[0], c.n)? as usize) {
                    *h = 1.0;
                }
                b.write(&buf[1], &hot)
            }
        }
    }

    /// The compared buffer. After kv_write it is read back through attention of the step's
    /// queries over the written layer.
    pub fn output(&self) -> Result<Vec<f32>> {
        let c = &self.case;
        if c.op == Op::KvWrite {
            self.step()?;
            let cache = self.cache()?;
            self.b.attention(
                &self.bufs[0],
                cache,
                1,
                &self.bufs[1],
                c.t,
                c.heads,
                c.scale,
            )?;
        }
        self.b.read(&self.bufs[self.out], self.out_len)
    }
}

/// How one case came out on a backend.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub nmse: f64,
    pub limit: f64,
    /// NaN or infinite elements in the backend's output (an unwritten element stays NaN).
    pub non_finite: usize,
    pub len: usize,
    /// The backend's support table lacks (op, dtype): not run.
    pub skipped: bool,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        !self.skipped && self.non_finite == 0 && self.nmse <= self.limit
    }
}

/// NMSE of `got` against `want`, over the finite elements of `got`; the others counted.
pub fn compare(got: &[f32], want: &[f32], limit: f64) -> CaseResult {
    let (mut num, mut den, mut non_finite) = (0.0f64, 0.0f64, 0);
    for (&a, &r) in got.iter().zip(want) {
        if !a.is_finite() {
            non_finite += 1;
            continue;
        }
        num += (a as f64 - r as f64).powi(2);
        den += (r as f64).powi(2);
    }
    let nmse = if num == 0.0 { 0.0 } else { num / den };
    CaseResult {
        nmse,
        limit,
        non_finite,
        len: got.len(),
        skipped: false,
    }
}

fn run<B: Backend>(b: &B, case: &Case, inputs: &Inputs) -> Result<Vec<f32>> {
    let p = prepare(b, case, inputs)?;
    p.step()?;
    p.op()?;
    p.output()
}

/// Runs `case` on `b` and on the reference with the same inputs and compares the outputs.
pub fn run_case<B: Backend>(b: &B, case: &Case, seed: u64) -> Result<CaseResult> {
    let inputs = inputs(case, seed)?;
    let want = run(&Reference::new(), case, &inputs)?;
    if want.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "case {}: the reference output is not finite (a harness error)",
            case.name
        )));
    }
    let got = run(b, case, &inputs)?;
    Ok(compare(&got, &want, nmse_limit(case.dtype)))
}

/// A case's seed: from its name, so adding cases does not change the others' inputs.
pub fn seed_of(case: &Case) -> u64 {
    case.name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// Every case `b` supports, run; the others reported as skipped.
pub fn run_all<B: Backend>(b: &B) -> Vec<(Case, Result<CaseResult>)> {
    let support = b.support();
    cases()
        .into_iter()
        .map(|c| {
            let r = if support.supports(c.op, c.dtype) {
                run_case(b, &c, seed_of(&c))
            } else {
                Ok(CaseResult {
                    nmse: 0.0,
                    limit: nmse_limit(c.dtype),
                    non_finite: 0,
                    len: 0,
                    skipped: true,
                })
            };
            (c, r)
        })
        .collect()
}

/// Counts of `run_all`'s results and a line per case.
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
    pub report: String,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }
}

pub fn summarize(results: &[(Case, Result<CaseResult>)]) -> Summary {
    let mut s = Summary {
        passed: 0,
        failed: 0,
        errors: 0,
        skipped: 0,
        report: String::new(),
    };
    for (c, r) in results {
        let line = match r {
            Ok(r) if r.skipped => {
                s.skipped += 1;
                format!("skip  {}", c.name)
            }
            Ok(r) if r.passed() => {
                s.passed += 1;
                format!(
                    "ok    {:<48} nmse {:.2e} (limit {:.0e})",
                    c.name, r.nmse, r.limit
                )
            }
            Ok(r) => {
                s.failed += 1;
                format!(
                    "FAIL  {:<48} nmse {:.2e} (limit {:.0e}), {} of {} not finite",
                    c.name, r.nmse, r.limit, r.non_finite, r.len
                )
            }
            Err(e) => {
                s.errors += 1;
                format!("ERROR {:<48} {e}", c.name)
            }
        };
        s.report += &line;
        s.report.push('\n');
    }
    s.report += &format!(
        "conformance of {} cases: passed {}, failed {}, errors {}, skipped {}\n",
        results.len(),
        s.passed,
        s.failed,
        s.errors,
        s.skipped
    );
    s
}
