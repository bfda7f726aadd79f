//! CUDA ops on an NVIDIA GPU. These tests are ignored where there is none (CI, the build
//! machine): `cargo test` lists them as ignored, never as passed. scripts/gpu_check.sh runs
//! them on a GPU machine with `--ignored`.
//!
//! Besides the per-op case table against the reference (`ops_cuda_match_reference`), they
//! check the backend against itself where two code paths must agree: matmul_gemv against
//! cuBLASLt, a replayed CUDA graph against direct launches, split decode attention against
//! single-pass attention.

use lamina::backend::cases;
use lamina::backend::cuda::matmul::Path;
use lamina::backend::cuda::ops::AttnPath;
use lamina::backend::cuda::{nvrtc, Cuda, CudaBuf, CudaCache, CudaWeight};
use lamina::backend::{Backend, RopeLayout, WeightView};
use lamina::dtype::DType;
use lamina::weights::TensorInfo;

fn cuda() -> Cuda {
    Cuda::new(0).unwrap_or_else(|e| panic!("this test needs an NVIDIA GPU: {e}"))
}

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1), never exactly zero.
    fn f(&mut self) -> f32 {
        let v = (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        if v == 0.0 {
            0.5
        } else {
            v
        }
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// Byte offsets of the f16 scale fields in one block of each GGUF type.
fn scale_offsets(d: DType) -> &'static [usize] {
    match d {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// The largest |element| / scale of a GGUF type's codes (with its offsets and minimums), so
/// that scales of peak / code_peak keep every element within about `peak`.
fn code_peak(d: DType) -> f32 {
    match d {
        DType::Q8_0 | DType::Q3_K => 128.0,
        DType::Q4_0 | DType::Q4_1 => 16.0,
        DType::Q5_0 | DType::Q5_1 => 32.0,
        DType::Q2_K => 60.0,
        DType::Q4_K => 1008.0,
        DType::Q5_K => 2016.0,
        DType::Q6_K => 4096.0,
        _ => 1.0,
    }
}

/// A random, valid tensor of `dtype`: random quant bits with small finite scales.
fn weight_bytes(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    weight_bytes_peak(rng, dtype, rows, cols, None)
}

/// Like `weight_bytes`; with `peak`, elements stay within about +-peak (plain types:
/// uniform in [-peak, peak); GGUF types: scales between half and all of peak / code_peak).
fn weight_bytes_peak(
    rng: &mut Rng,
    dtype: DType,
    rows: usize,
    cols: usize,
    peak: Option<f32>,
) -> Vec<u8> {
    let n = rows * cols;
    let amp = peak.unwrap_or(1.0);
    match dtype {
        DType::F32 => rng
            .vec(n)
            .iter()
            .flat_map(|v| (amp * v).to_le_bytes())
            .collect(),
        DType::F16 => rng.vec(n).iter().flat_map(|&v| f16(amp * v)).collect(),
        DType::BF16 => rng
            .vec(n)
            .iter()
            .flat_map(|&v| half::bf16::from_f32(amp * v).to_le_bytes())
            .collect(),
        d => {
            let bytes = d.tensor_bytes(&[rows, cols]).expect("whole blocks");
            let mut b: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
            for blk in b.chunks_mut(d.block_bytes()) {
                for &o in scale_offsets(d) {
                    let scale = match peak {
                        Some(p) => p / code_peak(d) * (0.5 + 0.5 * rng.f().abs()),
                        None => 0.01 + 0.02 * rng.f().abs(),
                    };
                    blk[o..o + 2].copy_from_slice(&f16(scale));
                }
            }
            b
        }
    }
}

fn upload(c: &Cuda, name: &str, dtype: DType, shape: &[usize], bytes: &[u8]) -> CudaWeight {
    let t = TensorInfo {
        name: name.into(),
        file_name: name.into(),
        dtype,
        shape: shape.to_vec(),
        file: 0,
        offset: 0,
        len: bytes.len(),
    };
    c.upload_weight(&t, bytes).unwrap()
}

/// A random weight; past 2048 rows the first 2048 rows repeat (big tensors for timing
/// stay cheap to make and still hold no zeros).
fn random_weight(
    c: &Cuda,
    rng: &mut Rng,
    name: &str,
    dtype: DType,
    rows: usize,
    cols: usize,
) -> CudaWeight {
    let head = weight_bytes(rng, dtype, rows.min(2048), cols);
    let row_bytes = dtype.row_bytes(cols).unwrap();
    let bytes: Vec<u8> = head
        .chunks(row_bytes)
        .cycle()
        .take(rows)
        .flatten()
        .copied()
        .collect();
    upload(c, name, dtype, &[rows, cols], &bytes)
}

fn buf(c: &Cuda, data: &[f32]) -> CudaBuf {
    let b = c.alloc(data.len()).unwrap();
    c.write(&b, data).unwrap();
    b
}

/// A buffer filled with NaN, so an element a kernel forgets stays visible.
fn poisoned(c: &Cuda, n: usize) -> CudaBuf {
    buf(c, &vec![f32::NAN; n])
}

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    num / den.max(1e-30)
}

fn view(w: &CudaWeight, row0: usize, rows: usize) -> WeightView<'_, CudaWeight> {
    WeightView {
        w,
        row0,
        rows,
        cols: w.cols(),
        scale: None,
        zero: None,
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn ops_cuda_match_reference() {
    // The per-op case table (src/backend/cases.rs) on CUDA against the reference backend.
    let c = cuda();
    let results = cases::run_all(&c);
    let s = cases::summarize(&results);
    println!("{}", s.report);
    assert_eq!(
        s.skipped, 0,
        "CUDA skipped cases its support table should cover"
    );
    assert!(s.ok(), "CUDA conformance failed:\n{}", s.report);
    assert_eq!(s.passed, cases::cases().len());
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn grouped_matmul_matches_separate_matmuls() {
    // matmul_group over three row ranges of one tensor (odd sizes, so row pairs of the
    // grouped GEMV straddle the ranges) must give what three matmuls give: for decode token
    // counts one launch over the concatenated rows, for prefill one cast of x. 8192 columns
    // at 8 tokens put x past shared memory on an H100 (matmul_gemv_xg).
    let c = cuda();
    let mut rng = Rng(0x9e0);
    let mut report = Vec::new();
    for &dtype in nvrtc::MATMUL_DTYPES {
        for (cols, ts) in [(512usize, &[1usize, 2, 8, 13][..]), (8192, &[1, 8][..])] {
            let sizes = [37usize, 21, 70];
            let rows: usize = sizes.iter().sum();
            let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
            let views = [
                view(&w, 0, sizes[0]),
                view(&w, sizes[0], sizes[1]),
                view(&w, sizes[0] + sizes[1], sizes[2]),
            ];
            for &t in ts {
                let x = buf(&c, &rng.vec(t * cols));
                let outs: Vec<CudaBuf> = sizes.iter().map(|&n| poisoned(&c, t * n)).collect();
                let refs: Vec<&CudaBuf> = outs.iter().collect();
                c.matmul_group(&x, &views, &refs, t).unwrap();
                for (i, v) in views.iter().enumerate() {
                    let one = poisoned(&c, t * sizes[i]);
                    c.op_matmul(&x, v, &one, t, Path::Auto).unwrap();
                    let (a, b) = (
                        c.read(&outs[i], t * sizes[i]).unwrap(),
                        c.read(&one, t * sizes[i]).unwrap(),
                    );
                    let e = nmse(&a, &b);
                    report.push(format!("{dtype} cols {cols} t={t} part {i}: nmse {e:.1e}"));
                    assert!(
                        e < 1e-12,
                        "{dtype} cols {cols} t={t}: grouped part {i} differs: nmse {e:.3e}\n{}",
                        report.join("\n")
                    );
                }
            }
        }
    }
    // Two weights, and a group of plain and GGUF weights (done one by one).
    let a = random_weight(&c, &mut rng, "a", DType::BF16, 64, 256);
    let b = random_weight(&c, &mut rng, "b", DType::Q8_0, 32, 256);
    let x = buf(&c, &rng.vec(256));
    let (oa, ob) = (poisoned(&c, 64), poisoned(&c, 32));
    c.matmul_group(&x, &[view(&a, 0, 64), view(&b, 0, 32)], &[&oa, &ob], 1)
        .unwrap();
    let (sa, sb) = (poisoned(&c, 64), poisoned(&c, 32));
    c.matmul(&x, view(&a, 0, 64), &sa, 1).unwrap();
    c.matmul(&x, view(&b, 0, 32), &sb, 1).unwrap();
    assert_eq!(c.read(&oa, 64).unwrap(), c.read(&sa, 64).unwrap());
    assert_eq!(c.read(&ob, 32).unwrap(), c.read(&sb, 32).unwrap());
}

/// A one-layer model of real structure (GQA, fused q/k/v and gate/up read through row views
/// as Phi-3's are, GGUF and 16-bit weights) for step tests. Weights are scaled as a trained
/// model's are (rows of cols elements within about 2 / sqrt(cols)), so activations stay near
/// 1: unscaled random blocks (Q4_K elements up to ~30) made the FFN's activations exceed
/// f16's range, and the f16 operands of the prefill product turned them into inf.
struct Mini {
    emb: CudaWeight,
    norm: CudaWeight,
    wqkv: CudaWeight,
    wo: CudaWeight,
    gate_up: CudaWeight,
    down: CudaWeight,
    out: CudaWeight,
    inv_freq: CudaBuf,
    bufs: Vec<CudaBuf>,
}

const HID: usize = 256;
const HEADS: usize = 4;
const KVH: usize = 2;
const HD: usize = 64;
const FFN: usize = 512;
const VOCAB: usize = 96;
const MAXT: usize = 16;

/// A weight whose elements stay within about 2 / sqrt(cols).
fn scaled_weight(
    c: &Cuda,
    rng: &mut Rng,
    name: &str,
    dtype: DType,
    rows: usize,
    cols: usize,
) -> CudaWeight {
    let peak = 2.0 / (cols as f32).sqrt();
    let bytes = weight_bytes_peak(rng, dtype, rows, cols, Some(peak));
    upload(c, name, dtype, &[rows, cols], &bytes)
}

impl Mini {
    fn new(c: &Cuda) -> Mini {
        let mut rng = Rng(2024);
        let norm_w: Vec<u8> = (0..HID)
            .flat_map(|_| (1.0 + 0.1 * rng.f()).to_le_bytes())
            .collect();
        let inv: Vec<f32> = (0..HD / 2)
            .map(|i| 10000f32.powf(-2.0 * i as f32 / HD as f32))
            .collect();
        let emb = weight_bytes_peak(&mut rng, DType::Q8_0, VOCAB, HID, Some(1.0));
        let qkv_rows = (HEADS + 2 * KVH) * HD;
        Mini {
            emb: upload(c, "token_embd.weight", DType::Q8_0, &[VOCAB, HID], &emb),
            norm: upload(c, "attn_norm.weight", DType::F32, &[HID], &norm_w),
            wqkv: scaled_weight(c, &mut rng, "attn_qkv.weight", DType::Q8_0, qkv_rows, HID),
            wo: scaled_weight(
                c,
                &mut rng,
                "attn_output.weight",
                DType::F16,
                HID,
                HEADS * HD,
            ),
            gate_up: scaled_weight(c, &mut rng, "ffn_gate_up.weight", DType::BF16, 2 * FFN, HID),
            down: scaled_weight(c, &mut rng, "ffn_down.weight", DType::Q6_K, HID, FFN),
            out: scaled_weight(c, &mut rng, "output.weight", DType::Q4_K, VOCAB, HID),
            inv_freq: buf(c, &inv),
            bufs: (0..9)
                .map(|_| c.alloc(MAXT * FFN.max(HEADS * HD)).unwrap())
                .collect(),
        }
    }

    /// Enqueues one step of t rows (ids/positions already set); logits land in bufs[8].
    /// q/k/v and gate/up go through matmul_group, as the forward pass does.
    fn step(&self, c: &Cuda, cache: &CudaCache, t: usize) -> lamina::Result<()> {
        let [x, h, q, k, v, a, g, u, logits] = &self.bufs[..] else {
            unreachable!()
        };
        let (nq, nkv) = (HEADS * HD, KVH * HD);
        c.embedding(&self.emb, x, t)?;
        c.rms_norm(x, &self.norm, h, t, HID, 1e-5)?;
        let qkv = [
            view(&self.wqkv, 0, nq),
            view(&self.wqkv, nq, nkv),
            view(&self.wqkv, nq + nkv, nkv),
        ];
        c.matmul_group(h, &qkv, &[q, k, v], t)?;
        let (rope, scale) = ((1.0, RopeLayout::Neox), 1.0 / (HD as f32).sqrt());
        c.rope_attention(
            (q, k, v),
            &self.inv_freq,
            cache,
            0,
            a,
            t,
            (HEADS, KVH),
            HD,
            rope,
            scale,
        )?;
        c.matmul(a, view(&self.wo, 0, HID), h, t)?;
        c.add(x, h, t * HID)?;
        c.rms_norm(x, &self.norm, h, t, HID, 1e-5)?;
        let gu = [view(&self.gate_up, 0, FFN), view(&self.gate_up, FFN, FFN)];
        c.matmul_group(h, &gu, &[g, u], t)?;
        c.swiglu(g, u, g, t * FFN)?;
        c.matmul(g, view(&self.down, 0, HID), h, t)?;
        c.add(x, h, t * HID)?;
        c.rms_norm(x, &self.norm, h, t, HID, 1e-5)?;
        c.matmul(h, view(&self.out, 0, VOCAB), logits, t)
    }

    /// Prefill of 11 tokens (cuBLASLt and prefill attention), then `steps` decode steps,
    /// recorded under a key when `graph`. Returns each step's logits.
    fn run(&self, c: &Cuda, graph: bool, steps: usize) -> Vec<Vec<f32>> {
        let cache = c.alloc_cache(1, KVH, HD, 4096).unwrap();
        let prompt: Vec<u32> = (0..11).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
        let pos: Vec<u32> = (0..prompt.len() as u32).collect();
        c.set_step(&prompt, &pos).unwrap();
        c.record(None, &mut || self.step(c, &cache, prompt.len()))
            .unwrap();
        let mut out = vec![c.read(&self.bufs[8], prompt.len() * VOCAB).unwrap()];
        for s in 0..steps {
            let id = (s as u32 * 13 + 5) % VOCAB as u32;
            c.set_step(&[id], &[prompt.len() as u32 + s as u32])
                .unwrap();
            let key = graph.then_some(1);
            c.record(key, &mut || self.step(c, &cache, 1)).unwrap();
            out.push(c.read(&self.bufs[8], VOCAB).unwrap());
        }
        out
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn graph_replay_matches_direct_launches() {
    let c = cuda();
    let m = Mini::new(&c);
    let direct = m.run(&c, false, 6);
    c.clear_graphs().unwrap();
    let replayed = m.run(&c, true, 6);
    for (i, (a, b)) in direct.iter().zip(&replayed).enumerate() {
        assert!(
            a.iter().all(|v| v.is_finite()),
            "step {i}: non-finite logits"
        );
        assert_eq!(
            a, b,
            "step {i}: replayed graph differs from direct launches"
        );
    }
    // Decode steps see different tokens and positions, so their logits differ.
    assert_ne!(
        direct[1], direct[2],
        "decode steps produced identical logits"
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn split_decode_attention_matches_single_pass() {
    // Keys and values for 1000 positions, then attention at some positions two ways: as
    // rows of a 1000-row prefill by the f32 kernel (one pass over the keys per block) and
    // as one-row decode steps on tensor cores (keys split into slices of at least
    // LAMINA_CUDA_SPLIT_KEYS, then merged; one slice for short contexts), which must agree
    // to f16 rounding of q and p (a wrong merge weight is off by far more). The prefill is
    // also run on tensor cores.
    let c = cuda();
    let mut rng = Rng(99);
    let (n, heads, kvh, d) = (1000usize, 8usize, 2usize, 128usize);
    let cache = c.alloc_cache(2, kvh, d, 8192).unwrap();
    assert!(
        cache.nsplit > 1,
        "the device gave a cache without split attention"
    );
    let ids: Vec<u32> = vec![0; n];
    let pos: Vec<u32> = (0..n as u32).collect();
    c.set_step(&ids, &pos).unwrap();
    let k = buf(&c, &rng.vec(n * kvh * d));
    let v = buf(&c, &rng.vec(n * kvh * d));
    c.kv_write(&cache, 1, &k, &v, n).unwrap();
    let qs = rng.vec(n * heads * d);
    let q = buf(&c, &qs);
    // The f32 kernel in one pass, and tensor cores (Auto for 1000 rows of head_dim 128).
    let full = poisoned(&c, n * heads * d);
    c.op_attention(&q, &cache, 1, &full, n, heads, 0.125, AttnPath::Simt)
        .unwrap();
    let full = c.read(&full, n * heads * d).unwrap();
    assert!(
        full.iter().all(|x| x.is_finite()),
        "prefill attention left NaN"
    );
    let mma = poisoned(&c, n * heads * d);
    c.attention(&q, &cache, 1, &mma, n, heads, 0.125).unwrap();
    let e = nmse(&c.read(&mma, n * heads * d).unwrap(), &full);
    assert!(
        e < 1e-5,
        "tensor-core prefill attention differs: nmse {e:.3e}"
    );

    // Decode rows at positions whose contexts take one slice (no merge) up to sixteen.
    for p in [0usize, 5, 63, 64, 127, 128, 300, n - 1] {
        c.set_step(&[0], &[p as u32]).unwrap();
        let q1 = buf(&c, &qs[p * heads * d..(p + 1) * heads * d]);
        let one = poisoned(&c, heads * d);
        c.attention(&q1, &cache, 1, &one, 1, heads, 0.125).unwrap();
        let one = c.read(&one, heads * d).unwrap();
        let e = nmse(&one, &full[p * heads * d..(p + 1) * heads * d]);
        eprintln!("decode at position {p}: nmse {e:.2e}");
        assert!(
            e < 1e-6,
            "decode attention at position {p} differs from single pass: nmse {e:.3e}"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn tensor_core_attention_matches_f32_attention() {
    // Prefill of 100 rows after 37 earlier positions, for each head size with an
    // attention_mma variant and GQA groups of 7, 1 and 4: tensor cores (f16 Q and P) against
    // the f32 kernel.
    let c = cuda();
    let mut rng = Rng(4242);
    for (d, heads, kvh) in [
        (64usize, 14usize, 2usize),
        (80, 4, 4),
        (96, 32, 32),
        (128, 32, 8),
    ] {
        let cache = c.alloc_cache(1, kvh, d, 512).unwrap();
        for (p0, n) in [(0u32, 37usize), (37, 100)] {
            let pos: Vec<u32> = (p0..p0 + n as u32).collect();
            c.set_step(&vec![0; n], &pos).unwrap();
            let k = buf(&c, &rng.vec(n * kvh * d));
            let v = buf(&c, &rng.vec(n * kvh * d));
            c.kv_write(&cache, 0, &k, &v, n).unwrap();
        }
        let n = 100;
        let q = buf(&c, &rng.vec(n * heads * d));
        let scale = 1.0 / (d as f32).sqrt();
        let (a, b) = (poisoned(&c, n * heads * d), poisoned(&c, n * heads * d));
        c.op_attention(&q, &cache, 0, &a, n, heads, scale, AttnPath::Auto)
            .unwrap();
        c.op_attention(&q, &cache, 0, &b, n, heads, scale, AttnPath::Simt)
            .unwrap();
        let (a, b) = (
            c.read(&a, n * heads * d).unwrap(),
            c.read(&b, n * heads * d).unwrap(),
        );
        let e = nmse(&a, &b);
        eprintln!("head_dim {d}, {heads}/{kvh} heads: nmse {e:.2e}");
        assert!(
            e < 1e-5,
            "head_dim {d}: tensor-core attention differs from f32: nmse {e:.3e}"
        );
    }
}

#[path = "ops_cuda/argmax.rs"]
mod argmax;
#[path = "ops_cuda/fused.rs"]
mod fused;
#[path = "ops_cuda/gemv.rs"]
mod gemv;
#[path = "ops_cuda/perf.rs"]
mod perf;
#[path = "ops_cuda/precision.rs"]
mod precision;

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn rope_qk_matches_its_parts() {
    // rope_qk (one launch) against rope on q then on k: the same f32 operations, so
    // bit-identical results, for one and several tokens.
    let c = cuda();
    let mut rng = Rng(0xf05e);
    let bits = |b: &CudaBuf, n: usize| -> Vec<u32> {
        c.read(b, n).unwrap().iter().map(|v| v.to_bits()).collect()
    };
    for layout in [RopeLayout::Normal, RopeLayout::Neox] {
        for (t, heads, kv, d) in [(1usize, 32usize, 8usize, 128usize), (5, 14, 2, 64)] {
            let positions: Vec<u32> = (0..t as u32).map(|i| 1000 + 7 * i).collect();
            c.set_step(&vec![0; t], &positions).unwrap();
            let inv: Vec<f32> = (0..d / 2)
                .map(|i| 10000f32.powf(-2.0 * i as f32 / d as f32))
                .collect();
            let inv = buf(&c, &inv);
            let (qv, kvv) = (rng.vec(t * heads * d), rng.vec(t * kv * d));
            let (q1, k1, q2, k2) = (buf(&c, &qv), buf(&c, &kvv), buf(&c, &qv), buf(&c, &kvv));
            c.rope_qk(&q1, &k1, &inv, t, (heads, kv), d, 0.9, layout)
                .unwrap();
            c.rope(&q2, &inv, t, heads, d, 0.9, layout).unwrap();
            c.rope(&k2, &inv, t, kv, d, 0.9, layout).unwrap();
            assert_eq!(
                bits(&q1, t * heads * d),
                bits(&q2, t * heads * d),
                "q {layout:?}"
            );
            assert_eq!(bits(&k1, t * kv * d), bits(&k2, t * kv * d), "k {layout:?}");
            assert_ne!(
                bits(&q1, t * heads * d),
                qv.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn matmul_swiglu_matches_its_parts() {
    // The fused gate/up GEMV (a warp computes gate row p and up row p and stores
    // silu(gate) * up) against matmul_group then swiglu, for every GEMV dtype, decode token
    // counts and one prefill count (which takes the parts path). Each row's dot product is
    // summed in the same order either way, so the results are the same bits.
    let c = cuda();
    let mut rng = Rng(0x5e1f);
    for &dtype in nvrtc::MATMUL_DTYPES {
        let (rows, cols) = (70usize, 512usize);
        let w = random_weight(&c, &mut rng, "gate_up", dtype, 2 * rows, cols);
        let views = [view(&w, 0, rows), view(&w, rows, rows)];
        for t in [1usize, 3, 8, 13] {
            let x = buf(&c, &rng.vec(t * cols));
            let (f0, f1) = (poisoned(&c, t * rows), poisoned(&c, t * rows));
            c.matmul_swiglu(&x, views, [&f0, &f1], t).unwrap();
            let (g, u) = (poisoned(&c, t * rows), poisoned(&c, t * rows));
            c.matmul_group(&x, &views, &[&g, &u], t).unwrap();
            c.swiglu(&g, &u, &g, t * rows).unwrap();
            let (fused, parts) = (
                c.read(&f0, t * rows).unwrap(),
                c.read(&g, t * rows).unwrap(),
            );
            assert!(
                fused.iter().all(|v| v.is_finite()),
                "{dtype} t={t}: unwritten outputs"
            );
            let same = fused
                .iter()
                .zip(&parts)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype} t={t}: nmse {}", nmse(&fused, &parts));
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn rope_kv_write_matches_its_parts() {
    // rope_kv_write (one launch) against rope_qk then kv_write, for both rope layouts, a
    // prefill of 37 rows and a decode row: the same rotated q and k bits, and attention over
    // the two caches (which reads every key and value written) gives the same bits.
    let c = cuda();
    let mut rng = Rng(0x40e);
    let (heads, kvh, d) = (8usize, 2usize, 128usize);
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 10000f32.powf(-2.0 * i as f32 / d as f32))
        .collect();
    let inv = buf(&c, &inv);
    for layout in [RopeLayout::Normal, RopeLayout::Neox] {
        let (fused, parts) = (
            c.alloc_cache(2, kvh, d, 256).unwrap(),
            c.alloc_cache(2, kvh, d, 256).unwrap(),
        );
        for (p0, t) in [(0usize, 37usize), (37, 1)] {
            let pos: Vec<u32> = (p0 as u32..(p0 + t) as u32).collect();
            c.set_step(&vec![0; t], &pos).unwrap();
            let (qv, kv, vv) = (
                rng.vec(t * heads * d),
                rng.vec(t * kvh * d),
                rng.vec(t * kvh * d),
            );
            let (q1, k1, v1) = (buf(&c, &qv), buf(&c, &kv), buf(&c, &vv));
            let (q2, k2, v2) = (buf(&c, &qv), buf(&c, &kv), buf(&c, &vv));
            c.rope_kv_write(
                (&q1, &k1, &v1),
                &inv,
                &fused,
                1,
                t,
                (heads, kvh),
                d,
                0.9,
                layout,
            )
            .unwrap();
            c.rope_qk(&q2, &k2, &inv, t, (heads, kvh), d, 0.9, layout)
                .unwrap();
            c.kv_write(&parts, 1, &k2, &v2, t).unwrap();
            let bits = |b: &CudaBuf, n: usize| -> Vec<u32> {
                c.read(b, n).unwrap().iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(
                bits(&q1, t * heads * d),
                bits(&q2, t * heads * d),
                "q {layout:?}"
            );
            assert_eq!(
                bits(&k1, t * kvh * d),
                bits(&k2, t * kvh * d),
                "k {layout:?}"
            );
            let (a1, a2) = (poisoned(&c, t * heads * d), poisoned(&c, t * heads * d));
            c.attention(&q1, &fused, 1, &a1, t, heads, 0.125).unwrap();
            c.attention(&q1, &parts, 1, &a2, t, heads, 0.125).unwrap();
            let (a1, a2) = (bits(&a1, t * heads * d), bits(&a2, t * heads * d));
            assert!(a1.iter().all(|&b| f32::from_bits(b).is_finite()));
            assert_eq!(a1, a2, "attention over the caches, {layout:?} t={t}");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn gemv_propagates_nan() {
    // A NaN in x makes every output of its token NaN, an infinity every output not finite,
    // and the other tokens stay finite: on the dp4a path (one token: x held as 8-bit digits,
    // which must not round either to a finite digit) and on the f32 path (several tokens),
    // for every GEMV dtype.
    let c = cuda();
    let mut rng = Rng(0x7a7);
    let (rows, cols) = (64usize, 512usize);
    for &dtype in nvrtc::MATMUL_DTYPES {
        let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
        for (t, bad) in [
            (1usize, f32::NAN),
            (3, f32::NAN),
            (1, f32::INFINITY),
            (3, f32::NEG_INFINITY),
        ] {
            let mut xs = rng.vec(t * cols);
            xs[t * cols - 7] = bad;
            let x = buf(&c, &xs);
            // A finite sentinel (not NaN), so NaN outputs come from the kernel.
            let o = buf(&c, &vec![7.0; t * rows]);
            c.op_matmul(&x, &view(&w, 0, rows), &o, t, Path::Gemv)
                .unwrap();
            let o = c.read(&o, t * rows).unwrap();
            let (before, last) = o.split_at((t - 1) * rows);
            assert!(
                before.iter().all(|v| v.is_finite() && *v != 7.0),
                "{dtype} t={t}: tokens without NaN"
            );
            // An infinite x gives inf or NaN (f32 products), NaN (dp4a): never a finite value.
            let ok = |v: &f32| {
                if bad.is_nan() {
                    v.is_nan()
                } else {
                    !v.is_finite()
                }
            };
            assert!(
                last.iter().all(ok),
                "{dtype} t={t}: the token with x = {bad} has {} finite outputs",
                last.iter().filter(|v| v.is_finite()).count()
            );
        }
    }
}
