//! Direct checks of every wgpu op against naive CPU computations written here (f64
//! accumulation), for every weight dtype, with and without subgroups, with outputs poisoned
//! (NaN) before each op. Quantized weights are random blocks (random quants, sane scales)
//! dequantized on the CPU by the functions below, written from the GGML block definitions.
//! Fails, not passes, when no wgpu adapter exists.

use lamina::backend::wgpu::{Gemv, Wgpu, WgpuBuf, WgpuOptions, MATMUL_DTYPES, VECTOR_DTYPES};
use lamina::backend::{Backend, RopeLayout, WeightView};
use lamina::dtype::DType;
use lamina::weights::TensorInfo;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

fn open(subgroups: bool, gemv: Gemv) -> Wgpu {
    Wgpu::new(WgpuOptions {
        subgroups,
        gemv,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("no wgpu adapter to test on (install lavapipe): {e}"))
}

fn gpu() -> Wgpu {
    open(true, Gemv::Auto)
}

/// The device in each configuration whose shaders differ: both one-token matmul kernels,
/// and the reductions with and without subgroups (where the adapter has them).
fn gpus() -> Vec<Wgpu> {
    let mut v = vec![open(true, Gemv::Rows), open(true, Gemv::Split)];
    if v[0].uses_subgroups() {
        v.push(open(false, Gemv::Split));
    }
    v
}

fn label(b: &Wgpu) -> String {
    format!(
        "{}, {}",
        if b.uses_subgroups() {
            "subgroups"
        } else {
            "workgroup memory"
        },
        if b.uses_gemv_rows() {
            "gemv_rows"
        } else {
            "gemv"
        }
    )
}

fn info(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        file_name: name.into(),
        dtype,
        shape: shape.to_vec(),
        file: 0,
        offset: 0,
        len: dtype.tensor_bytes(shape).unwrap(),
    }
}

fn nmse(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut num = 0.0;
    let mut den = 0.0;
    for (g, w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g} (expected {w})");
        num += (*g as f64 - w) * (*g as f64 - w);
        den += w * w;
    }
    num / den.max(1e-30)
}

fn assert_close(what: &str, got: &[f32], want: &[f64], limit: f64) {
    let e = nmse(got, want);
    println!("{what}: nmse {e:.2e}");
    assert!(e < limit, "{what}: nmse {e:.3e} over {limit:.0e}");
}

/// A buffer of `n` NaNs, so that an element the op forgets to write fails the check.
fn poisoned(b: &Wgpu, n: usize) -> WgpuBuf {
    let buf = b.alloc(n).unwrap();
    b.write(&buf, &vec![f32::NAN; n]).unwrap();
    buf
}

fn input(b: &Wgpu, data: &[f32]) -> WgpuBuf {
    let buf = b.alloc(data.len()).unwrap();
    b.write(&buf, data).unwrap();
    buf
}

// ---- weights: random bytes in each dtype, and their CPU dequantization ----

fn f16_bits(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

fn f16_at(b: &[u8], o: usize) -> f32 {
    half::f16::from_le_bytes([b[o], b[o + 1]]).to_f32()
}

/// Offsets of the f16 fields (scales, mins) in a block of each format.
fn f16_fields(d: DType) -> &'static [usize] {
    match d {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// A random tensor of `rows` x `cols` in dtype `d`: plain floats in [-1, 1), or blocks of
/// random quants whose f16 scales are set to small finite values.
fn random_weight(rng: &mut Rng, d: DType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    match d {
        DType::F32 => bytemuck::cast_slice(&rng.vec(n)).to_vec(),
        DType::F16 => rng.vec(n).iter().flat_map(|v| f16_bits(*v)).collect(),
        DType::BF16 => rng
            .vec(n)
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => {
            let bytes = d.tensor_bytes(&[rows, cols]).unwrap();
            let mut out: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
            for blk in out.chunks_mut(d.block_bytes()) {
                for &o in f16_fields(d) {
                    let v = 0.002 + 0.03 * rng.f().abs();
                    blk[o..o + 2].copy_from_slice(&f16_bits(v));
                }
            }
            out
        }
    }
}

/// Dequantizes one row, following the loops of the GGML block definitions.
fn dequant_row(d: DType, row: &[u8], cols: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(cols);
    match d {
        DType::F32 => y.extend(row.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DType::F16 => y.extend((0..cols).map(|i| f16_at(row, 2 * i))),
        DType::BF16 => y.extend(
            (0..cols).map(|i| half::bf16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32()),
        ),
        _ => {
            for b in row.chunks(d.block_bytes()) {
                dequant_block(d, b, &mut y);
            }
        }
    }
    assert_eq!(y.len(), cols);
    y
}

fn dequant_block(dt: DType, b: &[u8], y: &mut Vec<f32>) {
    match dt {
        DType::Q8_0 => {
            let d = f16_at(b, 0);
            y.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
            let d = f16_at(b, 0);
            let (m, qh, qs) = match dt {
                DType::Q4_0 => (0.0, 0, &b[2..18]),
                DType::Q4_1 => (f16_at(b, 2), 0, &b[4..20]),
                DType::Q5_0 => (0.0, u32::from_le_bytes(b[2..6].try_into().unwrap()), &b[6..22]),
                _ => (f16_at(b, 2), u32::from_le_bytes(b[4..8].try_into().unwrap()), &b[8..24]),
            };
            let five = matches!(dt, DType::Q5_0 | DType::Q5_1);
            let offset = match dt {
                DType::Q4_0 => -8.0,
                DType::Q5_0 => -16.0,
                _ => 0.0,
            };
            let mut lo = [0f32; 16];
            let mut hi = [0f32; 16];
            for j in 0..16 {
                let h0 = if five { ((qh >> j) & 1) << 4 } else { 0 };
                let h1 = if five { ((qh >> (j + 16)) & 1) << 4 } else { 0 };
                lo[j] = d * (((qs[j] & 0xf) as u32 | h0) as f32 + offset) + m;
                hi[j] = d * (((qs[j] >> 4) as u32 | h1) as f32 + offset) + m;
            }
            y.extend(lo);
            y.extend(hi);
        }
        DType::Q2_K => {
            let (sc, qs) = (&b[0..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            let mut is = 0;
            for n in 0..2 {
                let q = &qs[32 * n..];
                for j in 0..4 {
                    for half in 0..2 {
                        let s = sc[is];
                        is += 1;
                        let (dl, ml) = (d * (s & 0xf) as f32, dmin * (s >> 4) as f32);
                        for l in 0..16 {
                            y.push(dl * ((q[l + 16 * half] >> (2 * j)) & 3) as f32 - ml);
                        }
                    }
                }
            }
        }
        DType::Q3_K => {
            let (hm, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
            let d = f16_at(b, 108);
            let mut scales = [0i32; 16];
            for (i, s) in scales.iter_mut().enumerate() {
                let low = if i < 8 { sc[i] & 0xf } else { sc[i - 8] >> 4 };
                let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
                *s = (low | (high << 4)) as i32 - 32;
            }
            let mut is = 0;
            let mut m = 1u8;
            for n in 0..2 {
                let q = &qs[32 * n..];
                for j in 0..4 {
                    for half in 0..2 {
                        let dl = d * scales[is] as f32;
                        is += 1;
                        for l in 0..16 {
                            let l = l + 16 * half;
                            let low = ((q[l] >> (2 * j)) & 3) as i32;
                            let sub = if hm[l] & m != 0 { 0 } else { 4 };
                            y.push(dl * (low - sub) as f32);
                        }
                    }
                    m <<= 1;
                }
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let sc = &b[4..16];
            let scale_min = |j: usize| -> (f32, f32) {
                if j < 4 {
                    ((sc[j] & 63) as f32, (sc[j + 4] & 63) as f32)
                } else {
                    (
                        ((sc[j + 4] & 0xf) | ((sc[j - 4] >> 6) << 4)) as f32,
                        ((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)) as f32,
                    )
                }
            };
            let (qh, qs): (&[u8], &[u8]) = if dt == DType::Q5_K {
                (&b[16..48], &b[48..176])
            } else {
                (&[], &b[16..144])
            };
            for c in 0..4 {
                let ql = &qs[32 * c..];
                for half in 0..2 {
                    let (s, m) = scale_min(2 * c + half);
                    for l in 0..32 {
                        let mut q = ((ql[l] >> (4 * half)) & 0xf) as f32;
                        if dt == DType::Q5_K && qh[l] & (1 << (2 * c + half)) != 0 {
                            q += 16.0;
                        }
                        y.push(d * s * q - dmin * m);
                    }
                }
            }
        }
        DType::Q6_K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            let mut out = [0f32; 256];
            for n in 0..2 {
                let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    let base = 128 * n;
                    out[base + l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    out[base + l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    out[base + l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    out[base + l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
            y.extend(out);
        }
        other => panic!("no test dequantizer for {other}"),
    }
}

fn dequant(d: DType, bytes: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let rb = d.row_bytes(cols).unwrap();
    (0..rows)
        .flat_map(|r| dequant_row(d, &bytes[r * rb..(r + 1) * rb], cols))
        .collect()
}

/// Column counts that exercise each dtype: odd ones for floats, whole blocks for quants.
fn cols_for(d: DType) -> Vec<usize> {
    match d.block_elems() {
        1 => vec![7, 64, 133],
        32 => vec![32, 96, 160],
        _ => vec![256, 512],
    }
}

fn matmul_ref(x: &[f32], w: &[f32], t: usize, rows: std::ops::Range<usize>, k: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..t {
        for r in rows.clone() {
            out.push(
                (0..k)
                    .map(|c| x[i * k + c] as f64 * w[r * k + c] as f64)
                    .sum(),
            );
        }
    }
    out
}

#[test]
fn matmul_every_dtype() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for b in gpus() {
        for &d in MATMUL_DTYPES {
            for k in cols_for(d) {
                let n = 67;
                let bytes = random_weight(&mut rng, d, n, k);
                let wf = dequant(d, &bytes, n, k);
                let w = b.upload_weight(&info("w", d, &[n, k]), &bytes).unwrap();
                for t in [1, 2, 3, 37] {
                    let x = rng.vec(t * k);
                    let xb = input(&b, &x);
                    // The whole weight, then a view of some rows (Phi-3's fused weights).
                    for (row0, rows) in [(0, n), (5, 40)] {
                        let out = poisoned(&b, t * rows);
                        let view = WeightView {
                            w: &w,
                            row0,
                            rows,
                            cols: k,
                            scale: None,
                            zero: None,
                        };
                        b.matmul(&xb, view, &out, t).unwrap();
                        let got = b.read(&out, t * rows).unwrap();
                        let want = matmul_ref(&x, &wf, t, row0..row0 + rows, k);
                        let what = format!(
                            "matmul {d} k={k} t={t} rows {row0}+{rows} ({})",
                            label(&b)
                        );
                        assert_close(&what, &got, &want, 1e-9);
                    }
                }
            }
        }
    }
}

#[test]
fn embedding_every_dtype() {
    let mut rng = Rng(0x2468_ace0_1357_9bdf);
    let b = gpu();
    for &d in MATMUL_DTYPES {
        for k in cols_for(d) {
            let rows = 50;
            let bytes = random_weight(&mut rng, d, rows, k);
            let wf = dequant(d, &bytes, rows, k);
            let table = b.upload_weight(&info("emb", d, &[rows, k]), &bytes).unwrap();
            let ids = [3u32, 49, 0, 3, 17];
            b.set_step(&ids, &[0, 1, 2, 3, 4]).unwrap();
            let out = poisoned(&b, ids.len() * k);
            b.embedding(&table, &out, ids.len()).unwrap();
            let got = b.read(&out, ids.len() * k).unwrap();
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&id| wf[id as usize * k..(id as usize + 1) * k].iter().map(|&v| v as f64))
                .collect();
            assert_close(&format!("embedding {d} k={k}"), &got, &want, 1e-12);
        }
    }
}

#[test]
fn embedding_id_out_of_range_is_an_error() {
    let b = gpu();
    let table = b
        .upload_weight(&info("emb", DType::F32, &[4, 8]), &[0u8; 128])
        .unwrap();
    b.set_step(&[4], &[0]).unwrap();
    let out = b.alloc(8).unwrap();
    let e = b.embedding(&table, &out, 1).unwrap_err().to_string();
    assert!(e.contains("token id 4"), "{e}");
}

/// A tensor larger than one buffer may be (forced small here) is uploaded in pieces split at
/// rows; matmul views across piece boundaries and embedding rows from every piece work.
#[test]
fn weights_split_in_pieces() {
    let mut rng = Rng(0x0f0f_1234_abcd_7777);
    for d in [DType::Q4_0, DType::Q6_K, DType::BF16] {
        let k = if d == DType::Q6_K { 256 } else { 96 };
        let row_bytes = d.row_bytes(k).unwrap() as u64;
        let b = Wgpu::new(WgpuOptions {
            max_piece_bytes: Some(row_bytes * 7),
            ..Default::default()
        })
        .unwrap();
        let n = 30;
        let bytes = random_weight(&mut rng, d, n, k);
        let wf = dequant(d, &bytes, n, k);
        let w = b.upload_weight(&info("big", d, &[n, k]), &bytes).unwrap();
        assert_eq!(w.pieces(), 5, "30 rows of 7 per piece");
        for t in [1, 40] {
            let x = rng.vec(t * k);
            let xb = input(&b, &x);
            for (row0, rows) in [(0, n), (6, 9), (13, 1)] {
                let out = poisoned(&b, t * rows);
                let view = WeightView {
                    w: &w,
                    row0,
                    rows,
                    cols: k,
                    scale: None,
                    zero: None,
                };
                b.matmul(&xb, view, &out, t).unwrap();
                let got = b.read(&out, t * rows).unwrap();
                let want = matmul_ref(&x, &wf, t, row0..row0 + rows, k);
                assert_close(&format!("split matmul {d} t={t} rows {row0}+{rows}"), &got, &want, 1e-9);
            }
        }
        let ids = [29u32, 0, 7, 6, 14, 21, 28];
        let pos: Vec<u32> = (0..ids.len() as u32).collect();
        b.set_step(&ids, &pos).unwrap();
        let out = poisoned(&b, ids.len() * k);
        b.embedding(&w, &out, ids.len()).unwrap();
        let got = b.read(&out, ids.len() * k).unwrap();
        let want: Vec<f64> = ids
            .iter()
            .flat_map(|&id| wf[id as usize * k..(id as usize + 1) * k].iter().map(|&v| v as f64))
            .collect();
        assert_close(&format!("split embedding {d}"), &got, &want, 1e-12);
    }
}

#[test]
fn rms_norm_and_add_bias() {
    let mut rng = Rng(0x5555_aaaa_1111_eeee);
    for b in gpus() {
        for &d in VECTOR_DTYPES {
            for (t, dim) in [(1, 576), (3, 37), (5, 1000)] {
                let wbytes = random_weight(&mut rng, d, 1, dim);
                let wf = dequant(d, &wbytes, 1, dim);
                let w = b.upload_weight(&info("norm", d, &[dim]), &wbytes).unwrap();
                let x = rng.vec(t * dim);
                let xb = input(&b, &x);
                let out = poisoned(&b, t * dim);
                b.rms_norm(&xb, &w, &out, t, dim, 1e-5).unwrap();
                let got = b.read(&out, t * dim).unwrap();
                let mut want = Vec::new();
                for i in 0..t {
                    let row = &x[i * dim..(i + 1) * dim];
                    let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
                    let inv = 1.0 / (ms + 1e-5).sqrt();
                    want.extend(row.iter().zip(&wf).map(|(&v, &g)| v as f64 * inv * g as f64));
                }
                assert_close(&format!("rms_norm {d} t={t} dim={dim} ({})", label(&b)), &got, &want, 1e-10);
                // In place.
                b.rms_norm(&xb, &w, &xb, t, dim, 1e-5).unwrap();
                let got = b.read(&xb, t * dim).unwrap();
                assert_close(&format!("rms_norm in place {d}"), &got, &want, 1e-10);

                b.write(&xb, &x).unwrap();
                b.add_bias(&xb, &w, t, dim).unwrap();
                let got = b.read(&xb, t * dim).unwrap();
                let want: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v as f64 + wf[i % dim] as f64)
                    .collect();
                assert_close(&format!("add_bias {d} t={t} dim={dim}"), &got, &want, 1e-12);
            }
        }
    }
}

fn rope_ref(x: &[f32], pos: &[u32], inv: &[f32], heads: usize, hd: usize, scale: f32, layout: RopeLayout) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (t, &p) in pos.iter().enumerate() {
        for h in 0..heads {
            let base = (t * heads + h) * hd;
            for i in 0..hd / 2 {
                let a = p as f64 * inv[i] as f64;
                let (s, c) = (a.sin() * scale as f64, a.cos() * scale as f64);
                let (i0, i1) = match layout {
                    RopeLayout::Normal => (base + 2 * i, base + 2 * i + 1),
                    RopeLayout::Neox => (base + i, base + i + hd / 2),
                };
                let (x0, x1) = (x[i0] as f64, x[i1] as f64);
                out[i0] = x0 * c - x1 * s;
                out[i1] = x0 * s + x1 * c;
            }
        }
    }
    out
}

#[test]
fn rope_both_layouts() {
    let mut rng = Rng(0x7777_1234_5678_0001);
    let b = gpu();
    let (heads, hd) = (3, 64);
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32))
        .collect();
    let ib = input(&b, &inv);
    let pos = [0u32, 1, 7, 300, 4095];
    b.set_step(&[0; 5], &pos).unwrap();
    for layout in [RopeLayout::Normal, RopeLayout::Neox] {
        for scale in [1.0f32, 1.19] {
            let x = rng.vec(pos.len() * heads * hd);
            let xb = input(&b, &x);
            b.rope(&xb, &ib, pos.len(), heads, hd, scale, layout).unwrap();
            let got = b.read(&xb, x.len()).unwrap();
            let want = rope_ref(&x, &pos, &inv, heads, hd, scale, layout);
            // The angle is position * inv_freq in f32, as Hugging Face computes it: at position
            // 4095 its rounding alone is ~1e-9 of NMSE against this f64 reference.
            assert_close(&format!("rope {layout:?} scale {scale}"), &got, &want, 1e-8);
        }
    }
}

/// Attention over a cache filled in two steps (a prefill of 5 rows, then one decode row),
/// grouped-query (6 query heads over 2 kv heads), against a direct softmax.
#[test]
fn kv_write_and_attention() {
    let mut rng = Rng(0x9999_8888_7777_6666);
    for b in gpus() {
        for hd in [64, 80, 128] {
            let (heads, kvh, max_ctx, layers) = (6, 2, 100, 2);
            let cache = b.alloc_cache(layers, kvh, hd, max_ctx).unwrap();
            let scale = 1.0 / (hd as f32).sqrt();
            let mut ks: Vec<Vec<f32>> = Vec::new();
            let mut vs: Vec<Vec<f32>> = Vec::new();
            // Step 1: five rows at positions 0..5; step 2: one at 5; step 3: 70 at 6..76.
            for (start, t) in [(0u32, 5usize), (5, 1), (6, 70)] {
                let pos: Vec<u32> = (start..start + t as u32).collect();
                b.set_step(&vec![0; t], &pos).unwrap();
                let k = rng.vec(t * kvh * hd);
                let v = rng.vec(t * kvh * hd);
                let q = rng.vec(t * heads * hd);
                let (kb, vb, qb) = (input(&b, &k), input(&b, &v), input(&b, &q));
                b.kv_write(&cache, 1, &kb, &vb, t).unwrap();
                for i in 0..t {
                    ks.push(k[i * kvh * hd..(i + 1) * kvh * hd].to_vec());
                    vs.push(v[i * kvh * hd..(i + 1) * kvh * hd].to_vec());
                }
                let out = poisoned(&b, t * heads * hd);
                b.attention(&qb, &cache, 1, &out, t, heads, scale).unwrap();
                let got = b.read(&out, t * heads * hd).unwrap();
                let mut want = vec![0f64; t * heads * hd];
                for i in 0..t {
                    let n_ctx = pos[i] as usize + 1;
                    for h in 0..heads {
                        let kh = h / (heads / kvh);
                        let qv = &q[(i * heads + h) * hd..][..hd];
                        let s: Vec<f64> = (0..n_ctx)
                            .map(|j| {
                                let kr = &ks[j][kh * hd..][..hd];
                                qv.iter().zip(kr).map(|(&a, &c)| a as f64 * c as f64).sum::<f64>()
                                    * scale as f64
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for d in 0..hd {
                            want[(i * heads + h) * hd + d] = (0..n_ctx)
                                .map(|j| e[j] / z * vs[j][kh * hd + d] as f64)
                                .sum();
                        }
                    }
                }
                let what = format!("attention hd={hd} step at {start} t={t} ({})", label(&b));
                assert_close(&what, &got, &want, 1e-9);
            }
            // Positions past the cache are refused before anything runs.
            b.set_step(&[0], &[max_ctx as u32]).unwrap();
            let one = b.alloc(kvh * hd).unwrap();
            assert!(b.kv_write(&cache, 0, &one, &one, 1).is_err());
        }
    }
}

#[test]
fn swiglu_add_copy() {
    let mut rng = Rng(0x1111_2222_3333_4444);
    let b = gpu();
    let n = 70_001;
    let g: Vec<f32> = rng.vec(n).iter().map(|v| v * 12.0).collect();
    let u = rng.vec(n);
    let (gb, ub) = (input(&b, &g), input(&b, &u));
    let out = poisoned(&b, n);
    b.swiglu(&gb, &ub, &out, n).unwrap();
    let got = b.read(&out, n).unwrap();
    let want: Vec<f64> = g
        .iter()
        .zip(&u)
        .map(|(&g, &u)| g as f64 / (1.0 + (-g as f64).exp()) * u as f64)
        .collect();
    assert_close("swiglu", &got, &want, 1e-12);

    b.add(&gb, &ub, n).unwrap();
    let got = b.read(&gb, n).unwrap();
    let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| g as f64 + u as f64).collect();
    assert_close("add", &got, &want, 1e-14);

    let dst = poisoned(&b, 300);
    b.copy(&ub, 1000, &dst, 0, 150).unwrap();
    b.copy(&ub, 7, &dst, 150, 150).unwrap();
    let got = b.read(&dst, 300).unwrap();
    let want: Vec<f64> = u[1000..1150]
        .iter()
        .chain(&u[7..157])
        .map(|&v| v as f64)
        .collect();
    assert_close("copy", &got, &want, 0.0 + 1e-30);
    assert!(b.copy(&ub, 0, &ub, 10, 20).is_err(), "overlapping copy must be refused");
}

/// CPU seconds this process has used (all threads): on a CPU adapter (lavapipe) the work
/// done, whatever else the machine is busy with.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// Throughput of matmul on realistic shapes (SmolLM2-135M and Qwen2.5-0.5B layers), one
/// token (gemv) and a 64-token prefill (tiled). Not a check: run with `--ignored
/// --nocapture` to see the numbers.
#[test]
#[ignore]
fn matmul_throughput() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let b = gpu();
    println!("{}", b.describe().adapter);
    let shapes = [
        (DType::Q4_1, 1536, 576),
        (DType::Q4_1, 576, 1536),
        (DType::Q8_0, 49152, 576),
        (DType::Q4_K, 4864, 896),
        (DType::Q6_K, 896, 4864),
        (DType::Q5_0, 896, 896),
        (DType::F32, 576, 576),
        (DType::BF16, 1536, 576),
    ];
    for (d, n, k) in shapes {
        if k % d.block_elems() != 0 {
            continue;
        }
        let bytes = random_weight(&mut rng, d, n, k);
        let w = b.upload_weight(&info("w", d, &[n, k]), &bytes).unwrap();
        for t in [1usize, 64] {
            let xb = input(&b, &rng.vec(t * k));
            let out = b.alloc(t * n).unwrap();
            let view = || WeightView {
                w: &w,
                row0: 0,
                rows: n,
                cols: k,
                scale: None,
                zero: None,
            };
            b.matmul(&xb, view(), &out, t).unwrap();
            b.sync().unwrap();
            let reps = if t == 1 { 20 } else { 3 };
            let cpu0 = cpu_seconds();
            let start = std::time::Instant::now();
            for _ in 0..reps {
                b.matmul(&xb, view(), &out, t).unwrap();
            }
            b.sync().unwrap();
            let s = start.elapsed().as_secs_f64() / reps as f64;
            let cpu = (cpu_seconds() - cpu0) / reps as f64;
            println!(
                "matmul {d} {n}x{k} t={t}: {:.3} ms ({:.3} ms of CPU), {:.2} GFLOP/s, {:.2} GB/s \
                 of weights",
                s * 1e3,
                cpu * 1e3,
                2.0 * (n * k * t) as f64 / s / 1e9,
                bytes.len() as f64 / s / 1e9
            );
        }
    }
}
