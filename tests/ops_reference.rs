//! The reference backend against formulas written out by hand on small cases, and the case
//! harness (src/backend/cases.rs) run over it.

use lamina::backend::cases::{self, cases, nmse_limit, run_all, summarize, Rng};
use lamina::backend::reference::{quantize_activations, RefBuf, RefWeight, Reference};
use lamina::backend::{Backend, Op, RopeLayout, WeightView};
use lamina::dtype::DType;
use lamina::quant::{dequantize_row, quantize_row};
use lamina::weights::TensorInfo;

fn info(name: &str, dtype: DType, shape: &[usize], len: usize) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        file_name: name.into(),
        dtype,
        shape: shape.to_vec(),
        file: 0,
        offset: 0,
        len,
    }
}

fn weight(r: &Reference, dtype: DType, shape: &[usize], values: &[f32]) -> RefWeight {
    let cols = *shape.last().unwrap();
    let bytes: Vec<u8> = values
        .chunks(cols)
        .flat_map(|row| quantize_row(dtype, row).unwrap())
        .collect();
    r.upload_weight(&info("w", dtype, shape, bytes.len()), &bytes)
        .unwrap()
}

fn buf(r: &Reference, data: &[f32]) -> RefBuf {
    let b = r.alloc(data.len()).unwrap();
    r.write(&b, data).unwrap();
    b
}

fn view(w: &RefWeight, row0: usize, rows: usize) -> WeightView<'_, RefWeight> {
    WeightView {
        w,
        row0,
        rows,
        cols: *w.shape().last().unwrap(),
        scale: None,
        zero: None,
    }
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * w.abs().max(1.0),
            "element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn rms_norm_by_hand() {
    let r = Reference::new();
    let x = buf(&r, &[1.0, 2.0, 3.0, 4.0, -2.0, 0.5, 0.25, 8.0]);
    let out = r.alloc(8).unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let w = weight(&r, dtype, &[4], &[1.0, 0.5, 2.0, -1.0]);
        r.rms_norm(&x, &w, &out, 2, 4, 1e-5).unwrap();
        // Row 0: mean of squares (1 + 4 + 9 + 16) / 4 = 7.5.
        let a = 1.0 / (7.5f64 + 1e-5).sqrt();
        // Row 1: (4 + 0.25 + 0.0625 + 64) / 4.
        let b = 1.0 / (68.3125f64 / 4.0 + 1e-5).sqrt();
        let want = [
            a,
            2.0 * a * 0.5,
            3.0 * a * 2.0,
            -4.0 * a,
            -2.0 * b,
            0.5 * b * 0.5,
            0.25 * b * 2.0,
            -8.0 * b,
        ];
        assert_close(&r.read(&out, 8).unwrap(), &want, 1e-6);
    }
}

#[test]
fn matmul_f32_by_hand_and_through_a_view() {
    let r = Reference::new();
    let w = weight(&r, DType::F32, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let x = buf(&r, &[1.0, 1.0, 2.0, -1.0]);
    let out = r.alloc(6).unwrap();
    r.matmul(&x, view(&w, 0, 3), &out, 2).unwrap();
    assert_eq!(r.read(&out, 6).unwrap(), [3.0, 7.0, 11.0, 0.0, 2.0, 4.0]);
    r.matmul(&x, view(&w, 1, 2), &out, 2).unwrap();
    assert_eq!(r.read(&out, 4).unwrap(), [7.0, 11.0, 2.0, 4.0]);
    // A view past the weight's rows is an error, not a panic.
    assert!(r.matmul(&x, view(&w, 2, 2), &out, 2).is_err());
}

/// Every block type: the product equals dequantize + a naive f64 dot product.
#[test]
fn matmul_quantized_equals_dequantize_then_naive_product() {
    let r = Reference::new();
    let mut rng = Rng::new(3);
    for dtype in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q6_K,
        DType::Q2_K,
    ] {
        let (rows, cols, t) = (5, 512, 3);
        let values = rng.normals(rows * cols, 0.1);
        let w = weight(&r, dtype, &[rows, cols], &values);
        let xs = rng.normals(t * cols, 1.0);
        let x = buf(&r, &xs);
        let out = r.alloc(t * 3).unwrap();
        r.matmul(&x, view(&w, 1, 3), &out, t).unwrap();
        let rb = dtype.row_bytes(cols).unwrap();
        let mut want = Vec::new();
        for ti in 0..t {
            for row in 1..4 {
                let mut deq = vec![0f32; cols];
                dequantize_row(dtype, &w.bytes()[row * rb..][..rb], &mut deq).unwrap();
                let dot: f64 = deq
                    .iter()
                    .zip(&xs[ti * cols..][..cols])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                want.push(dot);
            }
        }
        assert_close(&r.read(&out, t * 3).unwrap(), &want, 1e-6);
    }
}

/// compressed-tensors W8A8: y = sum_k x_k * (w_k - zero) * scale_row, and the dynamic
/// variant with activations quantized per token.
#[test]
fn matmul_int8_with_scale_and_zero_point() {
    let r = Reference::new();
    let wq: [i8; 6] = [10, -20, 127, -128, 3, 0];
    let bytes: Vec<u8> = wq.iter().map(|&v| v as u8).collect();
    let w = r
        .upload_weight(&info("w", DType::I8, &[3, 2], 6), &bytes)
        .unwrap();
    let scale = weight(&r, DType::BF16, &[3, 1], &[0.5, 0.25, 2.0]);
    let zero_bytes = [1u8, (-2i8) as u8, 0];
    let zero = r
        .upload_weight(&info("z", DType::I8, &[3, 1], 3), &zero_bytes)
        .unwrap();
    let xs = [1.5f32, -0.25];
    let x = buf(&r, &xs);
    let out = r.alloc(3).unwrap();
    let v = WeightView {
        w: &w,
        row0: 0,
        rows: 3,
        cols: 2,
        scale: Some(&scale),
        zero: Some(&zero),
    };
    r.matmul(&x, v, &out, 1).unwrap();
    let want = [
        (1.5 * 9.0 + -0.25 * -21.0) * 0.5,
        (1.5 * 129.0 + -0.25 * -126.0) * 0.25,
        (1.5 * 3.0 + -0.25 * 0.0) * 2.0,
    ];
    assert_close(&r.read(&out, 3).unwrap(), &want, 1e-7);

    // Dynamic: x is quantized with scale 1.5 / 127 to [127, round(-0.25 * 127 / 1.5) = -21].
    let (q, s) = quantize_activations(&xs);
    assert_eq!(q, [127, -21]);
    assert_eq!(s, 1.5 / 127.0);
    let v = WeightView {
        w: &w,
        row0: 1,
        rows: 2,
        cols: 2,
        scale: Some(&scale),
        zero: Some(&zero),
    };
    r.matmul_w8a8_dynamic(&x, v, &out, 1).unwrap();
    let s = s as f64;
    let want = [
        (127.0 * 129.0 + -21.0 * -126.0) * s * 0.25,
        (127.0 * 3.0 + -21.0 * 0.0) * s * 2.0,
    ];
    assert_close(&r.read(&out, 2).unwrap(), &want, 1e-6);
    // Halves go to even, as torch.round does.
    assert_eq!(
        quantize_activations(&[127.0, 0.5, 1.5, -2.5]).0,
        [127, 0, 2, -2]
    );
}

/// On realistic sizes the dynamic W8A8 product stays within the I8 conformance limit of the
/// exact product: the limit lets a W8A8 backend pass.
#[test]
fn w8a8_dynamic_is_within_the_i8_limit_of_the_exact_product() {
    let r = Reference::new();
    let mut rng = Rng::new(5);
    let (rows, cols, t) = (64, 768, 4);
    let bytes: Vec<u8> = (0..rows * cols)
        .map(|_| (rng.below(255) as i32 - 127) as i8 as u8)
        .collect();
    let w = r
        .upload_weight(&info("w", DType::I8, &[rows, cols], bytes.len()), &bytes)
        .unwrap();
    let scales: Vec<f32> = (0..rows)
        .map(|_| 0.01 * (0.5 + rng.uniform() as f32))
        .collect();
    let scale = weight(&r, DType::F32, &[rows, 1], &scales);
    let x = buf(&r, &rng.normals(t * cols, 1.0));
    let (exact, dynamic) = (r.alloc(t * rows).unwrap(), r.alloc(t * rows).unwrap());
    let v = || WeightView {
        w: &w,
        row0: 0,
        rows,
        cols,
        scale: Some(&scale),
        zero: None,
    };
    r.matmul(&x, v(), &exact, t).unwrap();
    r.matmul_w8a8_dynamic(&x, v(), &dynamic, t).unwrap();
    let (a, b) = (
        r.read(&dynamic, t * rows).unwrap(),
        r.read(&exact, t * rows).unwrap(),
    );
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&b| (b as f64).powi(2)).sum();
    let nmse = num / den;
    println!("w8a8 dynamic vs exact: nmse {nmse:.2e}");
    assert!(nmse > 0.0 && nmse < nmse_limit(DType::I8) / 2.0, "{nmse}");
}

/// Neox rope is Hugging Face's `x * cos + rotate_half(x) * sin`; the normal (adjacent pairs)
/// layout is the same rotation after GGUF's permutation of each head (evens, then odds).
#[test]
fn rope_matches_rotate_half() {
    let r = Reference::new();
    let (t, heads, d) = (3, 2, 8);
    let mut rng = Rng::new(9);
    let xs = rng.normals(t * heads * d, 1.0);
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / 500f32.powf(2.0 * i as f32 / d as f32))
        .collect();
    let freq = buf(&r, &inv_freq);
    let positions = [5u32, 6, 1000];
    r.set_step(&[0, 0, 0], &positions).unwrap();
    let scale = 1.25f32;

    let want_neox = |x: &[f32], p: u32| -> Vec<f64> {
        let h = d / 2;
        (0..d)
            .map(|j| {
                let angle = (p as f32 * inv_freq[j % h]) as f64;
                let rot = if j < h {
                    -(x[j + h] as f64)
                } else {
                    x[j - h] as f64
                };
                (x[j] as f64 * angle.cos() + rot * angle.sin()) * scale as f64
            })
            .collect()
    };
    let x = buf(&r, &xs);
    r.rope(&x, &freq, t, heads, d, scale, RopeLayout::Neox)
        .unwrap();
    let got = r.read(&x, xs.len()).unwrap();
    for (i, head) in xs.chunks(d).enumerate() {
        assert_close(
            &got[i * d..][..d],
            &want_neox(head, positions[i / heads]),
            1e-6,
        );
    }

    // Normal layout: permute each head to halves, rotate as Neox, permute back.
    let x = buf(&r, &xs);
    r.rope(&x, &freq, t, heads, d, scale, RopeLayout::Normal)
        .unwrap();
    let got = r.read(&x, xs.len()).unwrap();
    for (i, head) in xs.chunks(d).enumerate() {
        let halves: Vec<f32> = (0..d)
            .map(|j| {
                if j < d / 2 {
                    head[2 * j]
                } else {
                    head[2 * (j - d / 2) + 1]
                }
            })
            .collect();
        let rotated = want_neox(&halves, positions[i / heads]);
        let want: Vec<f64> = (0..d)
            .map(|j| {
                if j % 2 == 0 {
                    rotated[j / 2]
                } else {
                    rotated[d / 2 + j / 2]
                }
            })
            .collect();
        assert_close(&got[i * d..][..d], &want, 1e-6);
    }
}

/// Attention against softmax(Q K^T * scale + causal mask) V built as explicit matrices, with
/// grouped-query heads and a step that starts after earlier positions.
#[test]
fn attention_matches_naive_softmax() {
    let r = Reference::new();
    let (heads, kv, d, past, t) = (4, 2, 8, 3, 3);
    let all = past + t;
    let mut rng = Rng::new(13);
    let cache = r.alloc_cache(2, kv, d, 16).unwrap();
    // K[pos][kv head][i] and V likewise, written in two steps into layer 1.
    let kx = rng.normals(all * kv * d, 1.0);
    let vx = rng.normals(all * kv * d, 1.0);
    for (from, to) in [(0, past), (past, all)] {
        let (k, v) = (
            buf(&r, &kx[from * kv * d..to * kv * d]),
            buf(&r, &vx[from * kv * d..to * kv * d]),
        );
        let pos: Vec<u32> = (from as u32..to as u32).collect();
        r.set_step(&vec![0; pos.len()], &pos).unwrap();
        r.kv_write(&cache, 1, &k, &v, to - from).unwrap();
    }
    let qx = rng.normals(t * heads * d, 1.0);
    let q = buf(&r, &qx);
    let out = r.alloc(t * heads * d).unwrap();
    let scale = 0.3f32;
    r.attention(&q, &cache, 1, &out, t, heads, scale).unwrap();
    let got = r.read(&out, t * heads * d).unwrap();

    for h in 0..heads {
        let g = h / (heads / kv);
        // S[i][j] = q_i . k_j * scale, -inf where j > position of row i.
        let s: Vec<Vec<f64>> = (0..t)
            .map(|i| {
                (0..all)
                    .map(|j| {
                        if j > past + i {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|c| {
                                qx[(i * heads + h) * d + c] as f64 * kx[(j * kv + g) * d + c] as f64
                            })
                            .sum();
                        dot * scale as f64
                    })
                    .collect()
            })
            .collect();
        for (i, row) in s.iter().enumerate() {
            let e: Vec<f64> = row.iter().map(|v| v.exp()).collect();
            let z: f64 = e.iter().sum();
            let want: Vec<f64> = (0..d)
                .map(|c| {
                    (0..all)
                        .map(|j| e[j] / z * vx[(j * kv + g) * d + c] as f64)
                        .sum()
                })
                .collect();
            assert_close(&got[(i * heads + h) * d..][..d], &want, 1e-6);
        }
    }
    // Layer 0 was never written: attention over it reads NaN, which shows.
    r.attention(&q, &cache, 0, &out, t, heads, scale).unwrap();
    assert!(r.read(&out, 1).unwrap()[0].is_nan());
    // A position past the cache is an error.
    r.set_step(&[0], &[16]).unwrap();
    assert!(r.attention(&q, &cache, 1, &out, 1, heads, scale).is_err());
}

#[test]
fn embedding_swiglu_add_copy_add_bias_by_hand() {
    let r = Reference::new();
    let table_values: Vec<f32> = (0..4 * 32).map(|i| (i as f32 - 50.0) / 8.0).collect();
    let table = weight(&r, DType::Q8_0, &[4, 32], &table_values);
    r.set_step(&[3, 0], &[0, 1]).unwrap();
    let out = r.alloc(64).unwrap();
    r.embedding(&table, &out, 2).unwrap();
    let mut want = vec![0f32; 64];
    dequantize_row(DType::Q8_0, &table.bytes()[3 * 34..4 * 34], &mut want[..32]).unwrap();
    dequantize_row(DType::Q8_0, &table.bytes()[..34], &mut want[32..]).unwrap();
    assert_eq!(r.read(&out, 64).unwrap(), want);
    r.set_step(&[4], &[0]).unwrap();
    assert!(
        r.embedding(&table, &out, 1).is_err(),
        "id past the vocabulary"
    );

    let (g, u) = (buf(&r, &[0.0, 1.0, -2.0]), buf(&r, &[2.0, 3.0, 0.5]));
    let out = r.alloc(3).unwrap();
    r.swiglu(&g, &u, &out, 3).unwrap();
    let silu = |x: f64| x / (1.0 + (-x).exp());
    assert_close(
        &r.read(&out, 3).unwrap(),
        &[0.0, silu(1.0) * 3.0, silu(-2.0) * 0.5],
        1e-7,
    );

    let x = buf(&r, &[1.0, 2.0, 3.0, 4.0]);
    r.add(&x, &buf(&r, &[0.5, 0.5, -1.0, 10.0]), 3).unwrap();
    assert_eq!(r.read(&x, 4).unwrap(), [1.5, 2.5, 2.0, 4.0]);
    // x += x: the same buffer on both sides.
    r.add(&x, &x, 4).unwrap();
    assert_eq!(r.read(&x, 4).unwrap(), [3.0, 5.0, 4.0, 8.0]);

    let bias = weight(&r, DType::F16, &[2], &[1.0, -1.0]);
    r.add_bias(&x, &bias, 2, 2).unwrap();
    assert_eq!(r.read(&x, 4).unwrap(), [4.0, 4.0, 5.0, 7.0]);

    let dst = buf(&r, &[9.0; 5]);
    r.copy(&x, 1, &dst, 2, 3).unwrap();
    assert_eq!(r.read(&dst, 5).unwrap(), [9.0, 9.0, 4.0, 5.0, 7.0]);
    assert!(
        r.copy(&x, 2, &dst, 0, 3).is_err(),
        "source range past the end"
    );
    assert!(
        r.copy(&x, 0, &dst, 3, 3).is_err(),
        "destination range past the end"
    );
}

#[test]
fn unsupported_weights_are_errors_that_name_them() {
    let r = Reference::new();
    let bytes = vec![0u8; DType::IQ2_XXS.row_bytes(256).unwrap()];
    let w = r
        .upload_weight(
            &info(
                "blk.0.ffn_up.weight",
                DType::IQ2_XXS,
                &[1, 256],
                bytes.len(),
            ),
            &bytes,
        )
        .unwrap();
    let x = buf(&r, &[1.0; 256]);
    let out = r.alloc(1).unwrap();
    let e = r
        .matmul(&x, view(&w, 0, 1), &out, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("IQ2_XXS") && e.contains("blk.0.ffn_up.weight"),
        "{e}"
    );
    assert!(!r.support().supports(Op::Matmul, DType::IQ2_XXS));
    // Bytes that do not match the shape are refused at upload.
    assert!(r
        .upload_weight(&info("w", DType::Q4_0, &[2, 32], 18), &bytes[..18])
        .is_err());
}

/// The table covers every op and every dtype each op of the reference takes, with odd sizes.
#[test]
fn case_table_covers_every_op_and_dtype() {
    let all = cases();
    let support = Reference::new().support();
    for &(op, dtype) in &support.entries {
        assert!(
            all.iter().any(|c| c.op == op && c.dtype == dtype),
            "no case for ({op}, {dtype})"
        );
    }
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "case names are unique");
    let matmuls = all.iter().filter(|c| c.op == Op::Matmul);
    assert!(matmuls.clone().any(|c| c.t == 17 && c.n == 33));
    assert!(matmuls.clone().any(|c| c.n == 257 && c.t == 64));
    assert!(all
        .iter()
        .any(|c| c.op == Op::Attention && c.t == 1 && c.offset >= 300));
    for ratio in [1, 3, 4, 8] {
        assert!(all
            .iter()
            .any(|c| c.op == Op::Attention && c.heads / c.kv_heads == ratio));
    }
}

/// A smoke test of the harness only: the reference against itself gives NMSE 0 and leaves no
/// poison. It cannot find an error in an op (both sides run the same code); the tests above
/// do that, and `harness_catches_a_wrong_op` shows the harness can fail.
#[test]
fn run_all_reference_against_itself() {
    let r = Reference::new();
    let start = std::time::Instant::now();
    let results = run_all(&r);
    let took = start.elapsed();
    let s = summarize(&results);
    println!("{}", s.report);
    println!("run_all(&Reference): {} cases in {took:.2?}", results.len());
    assert_eq!(s.skipped, 0);
    assert_eq!(s.passed, cases().len(), "{}", s.report);
    for (c, res) in &results {
        let res = res.as_ref().unwrap();
        assert_eq!(res.nmse, 0.0, "{}", c.name);
        assert_eq!(res.non_finite, 0, "{}", c.name);
    }
}

/// The harness's checks fire: an output nudged as a buggy kernel would nudge it fails its
/// limit, a NaN is counted, and a case whose op never ran still holds its poison.
#[test]
fn harness_catches_a_wrong_output() {
    let r = Reference::new();
    let all = cases();
    let case = all
        .iter()
        .find(|c| c.op == Op::Matmul && c.dtype == DType::Q4_K && c.t * c.n > 100)
        .unwrap();
    let inputs = cases::inputs(case, cases::seed_of(case)).unwrap();
    let p = cases::prepare(&r, case, &inputs).unwrap();
    p.step().unwrap();
    p.op().unwrap();
    let good = p.output().unwrap();
    let limit = nmse_limit(case.dtype);
    assert!(cases::compare(&good, &good, limit).passed());

    // Every 7th element 10% off: NMSE about 0.01 / 7, above the limit of block types.
    let mut bad = good.clone();
    bad.iter_mut().step_by(7).for_each(|v| *v *= 1.1);
    let res = cases::compare(&bad, &good, limit);
    assert!(!res.passed() && res.nmse > limit, "{res:?}");

    let mut nan = good.clone();
    nan[1] = f32::NAN;
    let res = cases::compare(&nan, &good, limit);
    assert!(!res.passed() && res.non_finite == 1, "{res:?}");

    // Prepared but not run: the output is still all poison.
    let p = cases::prepare(&r, case, &inputs).unwrap();
    assert!(p.output().unwrap().iter().all(|v| v.is_nan()));
}

#[test]
fn allocated_bytes_follow_live_buffers() {
    let r = Reference::new();
    assert_eq!(r.allocated_bytes(), 0);
    let b = r.alloc(10).unwrap();
    let w = weight(&r, DType::Q8_0, &[2, 32], &[0.5; 64]);
    let c = r.alloc_cache(2, 1, 4, 3).unwrap();
    assert_eq!(r.allocated_bytes(), 40 + 68 + 2 * 2 * 4 * 3 * 4);
    drop((b, w));
    assert_eq!(r.allocated_bytes(), 2 * 2 * 4 * 3 * 4);
    drop(c);
    assert_eq!(r.allocated_bytes(), 0);
}
