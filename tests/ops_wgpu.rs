//! The wgpu backend's conformance: every case of `lamina::backend::cases` (each op x dtype
//! x shape, random inputs, outputs poisoned with NaN) against the reference, in each shader
//! configuration this adapter can run (both one-token matmul kernels; reductions with and
//! without subgroups). Then what the case table does not reach: quantized weights made of
//! random bytes (every bit pattern of scales and quants, not only what a quantizer
//! writes), weights split in pieces at row boundaries, and errors for bad arguments.
//! Fails, not passes, when no wgpu adapter exists.

use lamina::backend::cases::{run_all, summarize};
use lamina::backend::reference::Reference;
use lamina::backend::wgpu::{MatmulKernels, Wgpu, WgpuBuf, WgpuOptions, WgpuWeight, FORMAT_DTYPES};
use lamina::backend::{Backend, WeightView};
use lamina::dtype::DType;
use lamina::quant;
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

fn open(subgroups: bool, matmul: MatmulKernels) -> Wgpu {
    Wgpu::new(WgpuOptions {
        subgroups,
        matmul,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("no wgpu adapter to test on (install lavapipe): {e}"))
}

fn gpu() -> Wgpu {
    open(true, MatmulKernels::Auto)
}

/// The device in each configuration whose shaders differ: both sets of matmul kernels,
/// and the reductions with and without subgroups (where the adapter has them).
fn gpus() -> Vec<Wgpu> {
    let mut v = vec![
        open(true, MatmulKernels::Cpu),
        open(true, MatmulKernels::Gpu),
    ];
    if v[0].uses_subgroups() {
        v.push(open(false, MatmulKernels::Gpu));
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
        if b.uses_cpu_kernels() {
            "matmul rows"
        } else {
            "matmul gemv+tiled"
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

fn dequant(d: DType, bytes: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let rb = d.row_bytes(cols).unwrap();
    let mut out = vec![0f32; rows * cols];
    for (r, row) in out.chunks_mut(cols).enumerate() {
        quant::dequantize_row(d, &bytes[r * rb..(r + 1) * rb], row).unwrap();
    }
    out
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
fn conformance() {
    let mut ok = true;
    for b in gpus() {
        let results = run_all(&b);
        let s = summarize(&results);
        println!("wgpu on {} ({}):\n{}", b.device(), label(&b), s.report);
        // The support table claims exactly what runs, and it runs every case (int8 W8A8
        // included: against the exact float product, under the I8 limit).
        for (c, r) in &results {
            assert!(!matches!(r, Ok(r) if r.skipped), "case {} skipped", c.name);
        }
        ok &= s.ok() && s.passed > 0;
    }
    assert!(ok, "conformance failures above");
}

/// Every dequantized matmul dtype with weights of random bytes, each kernel (gemv, rows, tiled),
/// whole weights and row views.
#[test]
fn matmul_random_blocks() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for b in gpus() {
        for &d in FORMAT_DTYPES {
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
                        let what =
                            format!("matmul {d} k={k} t={t} rows {row0}+{rows} ({})", label(&b));
                        assert_close(&what, &got, &want, 1e-9);
                    }
                }
            }
        }
    }
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
                assert_close(
                    &format!("split matmul {d} t={t} rows {row0}+{rows}"),
                    &got,
                    &want,
                    1e-9,
                );
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
            .flat_map(|&id| {
                wf[id as usize * k..(id as usize + 1) * k]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        assert_close(&format!("split embedding {d}"), &got, &want, 1e-12);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let b = gpu();
    let table = b
        .upload_weight(&info("emb", DType::F32, &[4, 8]), &[0u8; 128])
        .unwrap();
    b.set_step(&[4], &[0]).unwrap();
    let out = b.alloc(8).unwrap();
    let e = b.embedding(&table, &out, 1).unwrap_err().to_string();
    assert!(e.contains("token id 4"), "{e}");

    let buf = b.alloc(100).unwrap();
    let e = b.copy(&buf, 0, &buf, 10, 20).unwrap_err().to_string();
    assert!(e.contains("overlap"), "{e}");

    let cache = b.alloc_cache(1, 2, 64, 16).unwrap();
    let kv = b.alloc(128).unwrap();
    b.set_step(&[0], &[16]).unwrap();
    let e = b.kv_write(&cache, 0, &kv, &kv, 1).unwrap_err().to_string();
    assert!(e.contains("position 16"), "{e}");

    let e = b.read(&buf, 101).unwrap_err().to_string();
    assert!(e.contains("smaller"), "{e}");
    let short = vec![0u8; 10];
    assert!(b
        .upload_weight(&info("w", DType::Q4_0, &[2, 32]), &short)
        .is_err());
}

// ---- int8 weights (compressed-tensors W8A8) ----

/// An int8 weight of random bytes (all 256 values) with per-row scales of `scale_dt` and,
/// when `zero_dt` is given, zero points: I8 (-8..=8), integral BF16 (the integer path
/// again) or fractional F32 (the float path).
fn int8_weight(
    rng: &mut Rng,
    rows: usize,
    k: usize,
    scale_dt: DType,
    zero_dt: Option<DType>,
) -> Vec<(TensorInfo, Vec<u8>)> {
    let w: Vec<u8> = (0..rows * k).map(|_| rng.next() as u8).collect();
    let s = 1.0 / (127.0 * (k as f32).sqrt());
    let scales: Vec<f32> = (0..rows).map(|_| s * (1.0 + 0.5 * rng.f())).collect();
    let mut out = vec![
        (info("w", DType::I8, &[rows, k]), w),
        (
            info("w.scale", scale_dt, &[rows, 1]),
            quant::quantize_row(scale_dt, &scales).unwrap(),
        ),
    ];
    if let Some(zd) = zero_dt {
        let z: Vec<f32> = (0..rows)
            .map(|_| match zd {
                DType::F32 => 4.0 * rng.f(),
                _ => (rng.next() % 17) as f32 - 8.0,
            })
            .collect();
        let bytes = match zd {
            DType::I8 => z.iter().map(|&v| v as i8 as u8).collect(),
            _ => quant::quantize_row(zd, &z).unwrap(),
        };
        out.push((info("w.zero", zd, &[rows]), bytes));
    }
    out
}

/// Activations for an int8 test: uniform, with an outlier in token 0 (a coarse scale for
/// that token) and token 1 all zeros (scale 0) when there are more than two tokens.
fn int8_input(rng: &mut Rng, t: usize, k: usize) -> Vec<f32> {
    let mut x = rng.vec(t * k);
    x[k / 2] = 40.0;
    if t > 2 {
        x[k..2 * k].fill(0.0);
    }
    x
}

/// Rows of w[0], with w[1] and w[2] as its scale and zero point where present.
fn view_rows(w: &[WgpuWeight], row0: usize, rows: usize) -> WeightView<'_, WgpuWeight> {
    WeightView {
        w: &w[0],
        row0,
        rows,
        cols: w[0].cols(),
        scale: w.get(1),
        zero: w.get(2),
    }
}

/// What `Reference::matmul_w8a8_dynamic` computes for these tensors and this view.
fn w8a8_reference(
    tensors: &[(TensorInfo, Vec<u8>)],
    x: &[f32],
    t: usize,
    row0: usize,
    rows: usize,
) -> Vec<f64> {
    let r = Reference::new();
    let w: Vec<_> = tensors
        .iter()
        .map(|(i, b)| r.upload_weight(i, b).unwrap())
        .collect();
    let view = WeightView {
        w: &w[0],
        row0,
        rows,
        cols: x.len() / t,
        scale: w.get(1),
        zero: w.get(2),
    };
    let (xb, out) = (r.alloc(x.len()).unwrap(), r.alloc(t * rows).unwrap());
    r.write(&xb, x).unwrap();
    r.matmul_w8a8_dynamic(&xb, view, &out, t).unwrap();
    r.read(&out, t * rows)
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect()
}

/// Integer sums are exact, so only the final f32 scaling rounds: a few ulps per element
/// (and exact zeros where the token is all zeros). With a fractional zero point the
/// subtraction is in f32 and may cancel: NMSE then.
fn assert_w8a8(what: &str, got: &[f32], want: &[f64], exact_ints: bool) {
    if !exact_ints {
        return assert_close(what, got, want, 1e-10);
    }
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.is_finite(),
            "{what}: non-finite output {g} (expected {w})"
        );
        let rel = if *w == 0.0 {
            (*g as f64).abs()
        } else {
            ((*g as f64) - w).abs() / w.abs()
        };
        worst = worst.max(rel);
    }
    println!("{what}: max relative error {worst:.1e}");
    assert!(worst < 1e-6, "{what}: max relative error {worst:.2e}");
}

/// The int8 kernels (gemv, tiled, rows, rows4, with and without subgroups) against the
/// reference's model of a W8A8 engine (`matmul_w8a8_dynamic`: the same per-token
/// quantization, products summed exactly): every scale dtype, zero points of each kind,
/// row views, k with and without whole 16-byte steps, token counts across the kernels'
/// tiles. Also checks that the quantization is the reference's to the last level (one
/// level off in one element would be a relative error of ~1e-3 there).
#[test]
fn matmul_int8_matches_w8a8_reference() {
    let mut rng = Rng(0x8a8a_1234_5678_0001);
    let shapes = [
        // (t, weight rows, k, view row0, view rows)
        (1, 37, 4, 0, 37),
        (1, 70, 260, 3, 60),
        (2, 33, 2048, 0, 33),
        (3, 130, 96, 1, 129),
        (5, 64, 772, 0, 64),
        (37, 67, 36, 5, 40),
        (70, 65, 128, 0, 65),
    ];
    let scales = [DType::F32, DType::F16, DType::BF16];
    let zeros = [None, Some(DType::I8), Some(DType::F32), Some(DType::BF16)];
    for b in gpus() {
        for (i, &(t, n, k, row0, rows)) in shapes.iter().enumerate() {
            let (sd, zd) = (scales[i % 3], zeros[i % 4]);
            let tensors = int8_weight(&mut rng, n, k, sd, zd);
            let w: Vec<WgpuWeight> = tensors
                .iter()
                .map(|(i, bytes)| b.upload_weight(i, bytes).unwrap())
                .collect();
            let x = int8_input(&mut rng, t, k);
            let out = poisoned(&b, t * rows);
            b.matmul(&input(&b, &x), view_rows(&w, row0, rows), &out, t)
                .unwrap();
            let got = b.read(&out, t * rows).unwrap();
            let want = w8a8_reference(&tensors, &x, t, row0, rows);
            let what = format!(
                "int8 t={t} k={k} rows {row0}+{rows} scale {sd} zero {zd:?} ({})",
                label(&b)
            );
            assert_w8a8(&what, &got, &want, zd != Some(DType::F32));
        }
    }
}

/// An int8 weight in pieces (forced small) with views across the boundaries; and a
/// matmul_group mixing int8 and float weights, which quantizes x once and gives what
/// separate matmuls give.
#[test]
fn matmul_int8_pieces_and_groups() {
    let mut rng = Rng(0x8a8a_0f0f_2222_0002);
    let (n, k) = (30, 96);
    let b = Wgpu::new(WgpuOptions {
        max_piece_bytes: Some(k as u64 * 7),
        ..Default::default()
    })
    .unwrap();
    let tensors = int8_weight(&mut rng, n, k, DType::BF16, Some(DType::I8));
    let w: Vec<WgpuWeight> = tensors
        .iter()
        .map(|(i, bytes)| b.upload_weight(i, bytes).unwrap())
        .collect();
    assert_eq!(w[0].pieces(), 5, "30 rows of 7 per piece");
    for t in [1, 40] {
        let x = int8_input(&mut rng, t, k);
        let xb = input(&b, &x);
        for (row0, rows) in [(0, n), (6, 9), (13, 1)] {
            let out = poisoned(&b, t * rows);
            b.matmul(&xb, view_rows(&w, row0, rows), &out, t).unwrap();
            let got = b.read(&out, t * rows).unwrap();
            let want = w8a8_reference(&tensors, &x, t, row0, rows);
            assert_w8a8(
                &format!("split int8 t={t} rows {row0}+{rows}"),
                &got,
                &want,
                true,
            );
        }
    }

    let b = gpu();
    let t = 3;
    let a_t = int8_weight(&mut rng, 20, k, DType::F32, None);
    let c_t = int8_weight(&mut rng, 12, k, DType::F16, Some(DType::I8));
    let up = |ts: &[(TensorInfo, Vec<u8>)]| -> Vec<WgpuWeight> {
        ts.iter()
            .map(|(i, bytes)| b.upload_weight(i, bytes).unwrap())
            .collect()
    };
    let (a, c) = (up(&a_t), up(&c_t));
    let fw = rng.vec(8 * k);
    let f = b
        .upload_weight(&info("f", DType::F32, &[8, k]), bytemuck::cast_slice(&fw))
        .unwrap();
    let f_view = WeightView {
        w: &f,
        row0: 0,
        rows: 8,
        cols: k,
        scale: None,
        zero: None,
    };
    let x = int8_input(&mut rng, t, k);
    let xb = input(&b, &x);
    let views = [view_rows(&a, 0, 20), f_view, view_rows(&c, 2, 10)];
    let sizes = [20, 8, 10];
    let grouped: Vec<WgpuBuf> = sizes.iter().map(|&r| poisoned(&b, t * r)).collect();
    let refs: Vec<&WgpuBuf> = grouped.iter().collect();
    b.matmul_group(&xb, &views, &refs, t).unwrap();
    for (i, v) in views.iter().enumerate() {
        let single = poisoned(&b, t * sizes[i]);
        b.matmul(&xb, *v, &single, t).unwrap();
        let g = b.read(&grouped[i], t * sizes[i]).unwrap();
        let s1 = b.read(&single, t * sizes[i]).unwrap();
        assert!(
            g.iter().all(|v| v.is_finite()),
            "group output {i} not written"
        );
        assert_eq!(g, s1, "group output {i} differs from its own matmul");
    }
    let want = w8a8_reference(&c_t, &x, t, 2, 10);
    let got = b.read(&grouped[2], t * 10).unwrap();
    assert_w8a8("grouped int8", &got, &want, true);
}

/// Int8 weights without what the kernels need are errors, not wrong numbers.
#[test]
fn matmul_int8_bad_arguments_are_errors() {
    let b = gpu();
    let mut rng = Rng(0x8a8a_dead_0003);
    let t = int8_weight(&mut rng, 4, 8, DType::F32, None);
    let w: Vec<WgpuWeight> = t
        .iter()
        .map(|(i, bytes)| b.upload_weight(i, bytes).unwrap())
        .collect();
    let x = input(&b, &rng.vec(8));
    let out = b.alloc(4).unwrap();
    let mut view = view_rows(&w, 0, 4);
    view.scale = None;
    let e = b.matmul(&x, view, &out, 1).unwrap_err().to_string();
    assert!(e.contains("no per-row scale"), "{e}");

    let short = b
        .upload_weight(&info("s3", DType::F32, &[3, 1]), &[0u8; 12])
        .unwrap();
    let mut view = view_rows(&w, 0, 4);
    view.scale = Some(&short);
    let e = b.matmul(&x, view, &out, 1).unwrap_err().to_string();
    assert!(e.contains("one F32/F16/BF16 value per row"), "{e}");

    let odd = b
        .upload_weight(&info("odd", DType::I8, &[4, 6]), &[1u8; 24])
        .unwrap();
    let view = WeightView {
        w: &odd,
        row0: 0,
        rows: 4,
        cols: 6,
        scale: w.get(1),
        zero: None,
    };
    let x6 = input(&b, &rng.vec(6));
    let e = b.matmul(&x6, view, &out, 1).unwrap_err().to_string();
    assert!(e.contains("multiple of 4"), "{e}");

    let f = b
        .upload_weight(&info("f", DType::F32, &[4, 8]), &[0u8; 128])
        .unwrap();
    let view = WeightView {
        w: &f,
        row0: 0,
        rows: 4,
        cols: 8,
        scale: w.get(1),
        zero: None,
    };
    let e = b.matmul(&x, view, &out, 1).unwrap_err().to_string();
    assert!(e.contains("only int8"), "{e}");
}

/// CPU seconds this process has used (all threads): on a CPU adapter (lavapipe) the work
/// done, whatever else the machine is busy with.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// Throughput of matmul on realistic shapes (SmolLM2-135M and Qwen2.5-0.5B layers; on a GPU
/// also Llama-3.1-8B's), for one token, a 64-token and (GPU) a 512-token prefill. Not a
/// check: run with `--ignored --nocapture` to see the numbers.
#[test]
#[ignore]
fn matmul_throughput() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let b = gpu();
    println!("{}", b.describe().adapter);
    let mut shapes = vec![
        (DType::Q4_1, 1536, 576),
        (DType::Q4_1, 576, 1536),
        (DType::Q8_0, 49152, 576),
        (DType::Q4_K, 896, 4864),
        (DType::Q6_K, 896, 4864),
        (DType::Q5_0, 896, 896),
        (DType::F32, 576, 576),
        (DType::BF16, 1536, 576),
        (DType::I8, 1536, 576),
        (DType::I8, 576, 1536),
    ];
    if !b.uses_cpu_kernels() {
        // Llama-3.1-8B's shapes, for GPUs.
        shapes.extend([
            (DType::Q4_K, 4096, 4096),
            (DType::Q4_K, 14336, 4096),
            (DType::Q6_K, 4096, 14336),
            (DType::Q8_0, 4096, 4096),
            (DType::Q8_0, 14336, 4096),
            (DType::Q4_0, 14336, 4096),
            (DType::BF16, 4096, 4096),
            (DType::F16, 14336, 4096),
            (DType::Q6_K, 128256, 4096),
            (DType::I8, 4096, 4096),
            (DType::I8, 14336, 4096),
            (DType::I8, 4096, 14336),
        ]);
    }
    for (d, n, k) in shapes {
        if k % d.block_elems() != 0 {
            continue;
        }
        let tensors = if d == DType::I8 {
            int8_weight(&mut rng, n, k, DType::BF16, None)
        } else {
            vec![(info("w", d, &[n, k]), random_weight(&mut rng, d, n, k))]
        };
        let bytes = tensors[0].1.len();
        let ws: Vec<WgpuWeight> = tensors
            .iter()
            .map(|(i, bytes)| b.upload_weight(i, bytes).unwrap())
            .collect();
        for t in [1usize, 64, 512] {
            if t == 512 && b.uses_cpu_kernels() {
                continue;
            }
            let xb = input(&b, &rng.vec(t * k));
            let out = b.alloc(t * n).unwrap();
            let view = || view_rows(&ws, 0, n);
            b.matmul(&xb, view(), &out, t).unwrap();
            b.sync().unwrap();
            let reps = if b.uses_cpu_kernels() && t > 1 { 3 } else { 20 };
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
                bytes as f64 / s / 1e9
            );
        }
    }
}

/// The backend can move to, and be shared with, another thread (an engine behind a server).
#[test]
fn backend_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wgpu>();
    check::<WgpuBuf>();
    check::<lamina::backend::wgpu::WgpuWeight>();
    check::<lamina::backend::wgpu::WgpuCache>();
}
