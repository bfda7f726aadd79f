//! `performance_report`: the speeds of the kernels that decide decode and prefill throughput
//! on Llama-3.1-8B shapes, `gemv_speed`: one-token GEMVs back to back at those shapes, and
//! `decode_attention_speed`: a decode step's rope and attention over 32 layers (split from
//! ops_cuda.rs, whose helpers they use).

use super::*;

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median device time of `reps` calls after 3 warm-up calls; `i` says which call it is.
fn time(c: &Cuda, reps: usize, f: &mut dyn FnMut(usize) -> lamina::Result<()>) -> f32 {
    for i in 0..3 {
        f(i).unwrap();
    }
    let t = (0..reps)
        .map(|i| c.time_ms(&mut || f(i)).unwrap())
        .collect();
    let m = median(t);
    assert!(m > 0.0, "a timing of zero");
    m
}

/// Weights of one shape and dtype in enough copies to rotate through more than L2 holds.
fn weight_copies(
    c: &Cuda,
    rng: &mut Rng,
    dtype: DType,
    rows: usize,
    cols: usize,
) -> Vec<CudaWeight> {
    let bytes = dtype.tensor_bytes(&[rows, cols]).unwrap();
    let copies = (400usize << 20).div_ceil(bytes).clamp(1, 8);
    (0..copies)
        .map(|_| random_weight(c, rng, "w", dtype, rows, cols))
        .collect()
}

fn gbs(bytes: usize, ms: f32) -> f64 {
    bytes as f64 / ms as f64 / 1e6
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn performance_report() {
    // Not a pass/fail benchmark: the speeds of the kernels that decide decode and prefill
    // throughput on Llama-3.1-8B shapes, printed for the notes (device events, warm-up,
    // median of repeats, weights rotated through more copies than L2 holds). It checks
    // only that every output is finite. GB/s counts the weight bytes read once.
    let c = cuda();
    let mut rng = Rng(31337);
    println!("device: {}", c.describe());
    println!("| matmul decode | rows x cols | t | us | GB/s |");
    println!("|---|---|---|---|---|");
    let shapes = [
        (4096, 4096),
        (1024, 4096),
        (14336, 4096),
        (4096, 14336),
        (128256, 4096),
    ];
    for dtype in [
        DType::BF16,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q6_K,
        DType::Q4_0,
    ] {
        for (si, &(rows, cols)) in shapes.iter().enumerate() {
            let bytes = dtype.tensor_bytes(&[rows, cols]).unwrap();
            let ws = weight_copies(&c, &mut rng, dtype, rows, cols);
            let ts: &[usize] = if si == 0 { &[1, 2, 8] } else { &[1] };
            for &t in ts {
                let x = buf(&c, &rng.vec(t * cols));
                let out = poisoned(&c, t * rows);
                let ms = time(&c, 20, &mut |i| {
                    c.op_matmul(&x, &view(&ws[i % ws.len()], 0, rows), &out, t, Path::Gemv)
                });
                assert!(c
                    .read(&out, t * rows)
                    .unwrap()
                    .iter()
                    .all(|v| v.is_finite()));
                println!(
                    "| {dtype} | {rows} x {cols} | {t} | {:.1} | {:.0} |",
                    ms * 1e3,
                    gbs(bytes, ms)
                );
            }
        }
    }
    for &(rows, cols) in &shapes {
        // W8A8: int8 weights, bf16 per-row scales, activations quantized per token.
        let ws = weight_copies(&c, &mut rng, DType::I8, rows, cols);
        let scales: Vec<u8> = (0..rows)
            .flat_map(|_| half::bf16::from_f32(0.01).to_le_bytes())
            .collect();
        let scale = upload(&c, "w.scale", DType::BF16, &[rows, 1], &scales);
        let x = buf(&c, &rng.vec(cols));
        let out = poisoned(&c, rows);
        let ms = time(&c, 20, &mut |i| {
            let v = WeightView {
                w: &ws[i % ws.len()],
                row0: 0,
                rows,
                cols,
                scale: Some(&scale),
                zero: None,
            };
            c.op_matmul(&x, &v, &out, 1, Path::Gemv)
        });
        assert!(c.read(&out, rows).unwrap().iter().all(|v| v.is_finite()));
        println!(
            "| I8 (W8A8) | {rows} x {cols} | 1 | {:.1} | {:.0} |",
            ms * 1e3,
            gbs(rows * cols, ms)
        );
    }

    // matmul_group at t = 1: q/k/v (4096 + 1024 + 1024 rows) and gate/up (2 x 14336), one
    // launch, against the same weights as separate matmuls.
    println!(
        "| matmul_group decode (t=1) | rows x cols | grouped us | separate us | GB/s grouped |"
    );
    println!("|---|---|---|---|---|");
    for dtype in [DType::BF16, DType::Q8_0, DType::Q4_K] {
        for (name, sizes) in [
            ("q/k/v", &[4096usize, 1024, 1024][..]),
            ("gate/up", &[14336, 14336][..]),
        ] {
            let (rows, cols): (usize, usize) = (sizes.iter().sum(), 4096);
            let bytes = dtype.tensor_bytes(&[rows, cols]).unwrap();
            let ws = weight_copies(&c, &mut rng, dtype, rows, cols);
            let x = buf(&c, &rng.vec(cols));
            let outs: Vec<CudaBuf> = sizes.iter().map(|&n| poisoned(&c, n)).collect();
            let refs: Vec<&CudaBuf> = outs.iter().collect();
            fn views<'a>(w: &'a CudaWeight, sizes: &[usize]) -> Vec<WeightView<'a, CudaWeight>> {
                let mut r0 = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        r0 += n;
                        view(w, r0 - n, n)
                    })
                    .collect()
            }
            let grouped = time(&c, 20, &mut |i| {
                c.matmul_group(&x, &views(&ws[i % ws.len()], sizes), &refs, 1)
            });
            let separate = time(&c, 20, &mut |i| {
                for (v, o) in views(&ws[i % ws.len()], sizes).iter().zip(&refs) {
                    c.matmul(&x, *v, o, 1)?;
                }
                Ok(())
            });
            for (o, &n) in outs.iter().zip(sizes) {
                assert!(c.read(o, n).unwrap().iter().all(|v| v.is_finite()));
            }
            println!(
                "| {dtype} {name} | {rows} x {cols} | {:.1} | {:.1} | {:.0} |",
                grouped * 1e3,
                separate * 1e3,
                gbs(bytes, grouped)
            );
        }
    }

    println!("| matmul prefill (cuBLASLt, cast included) | t x rows x cols | ms | TFLOP/s |");
    println!("|---|---|---|---|");
    for dtype in [DType::BF16, DType::Q8_0, DType::Q4_K] {
        for &(rows, cols) in &shapes[..4] {
            let t = 512;
            let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
            let x = buf(&c, &rng.vec(t * cols));
            let out = poisoned(&c, t * rows);
            let ms = time(&c, 10, &mut |_| {
                c.op_matmul(&x, &view(&w, 0, rows), &out, t, Path::Blas)
            });
            assert!(c
                .read(&out, t * rows)
                .unwrap()
                .iter()
                .all(|v| v.is_finite()));
            let flop = 2.0 * (t * rows * cols) as f64;
            println!(
                "| {dtype} | {t} x {rows} x {cols} | {ms:.3} | {:.0} |",
                flop / ms as f64 / 1e9
            );
        }
    }

    prefill_ops_report(&c, &mut rng);
    attention_report(&c, &mut rng);
}

/// The element-wise ops of one 512-token prefill layer of the 8B shape.
fn prefill_ops_report(c: &Cuda, rng: &mut Rng) {
    let (t, hid, ffn, heads, kvh, d) = (512usize, 4096usize, 14336usize, 32usize, 8usize, 128usize);
    println!("| prefill op (512 tokens, 8B shapes) | elements | us | GB/s |");
    println!("|---|---|---|---|");
    let pos: Vec<u32> = (0..t as u32).collect();
    c.set_step(&vec![0; t], &pos).unwrap();
    let x = buf(c, &rng.vec(t * ffn));
    let y = buf(c, &rng.vec(t * ffn));
    let o = poisoned(c, t * ffn);
    let normw: Vec<u8> = (0..hid)
        .flat_map(|_| half::bf16::from_f32(1.0).to_le_bytes())
        .collect();
    let nw = upload(c, "norm", DType::BF16, &[hid], &normw);
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 500000f32.powf(-2.0 * i as f32 / d as f32))
        .collect();
    let inv = buf(c, &inv);
    let cache = c.alloc_cache(1, kvh, d, t).unwrap();
    let row = |name: &str, n: usize, bytes: usize, f: &mut dyn FnMut() -> lamina::Result<()>| {
        let ms = time(c, 20, &mut |_| f());
        println!("| {name} | {n} | {:.1} | {:.0} |", ms * 1e3, gbs(bytes, ms));
        ms
    };
    let mut total = 0.0;
    total += 2.0
        * row("rms_norm (x2 per layer)", t * hid, 8 * t * hid, &mut || {
            c.rms_norm(&x, &nw, &o, t, hid, 1e-5)
        });
    total += row(
        "rope q + k",
        t * (heads + kvh) * d,
        8 * t * (heads + kvh) * d,
        &mut || {
            c.rope(&x, &inv, t, heads, d, 1.0, RopeLayout::Neox)?;
            c.rope(&y, &inv, t, kvh, d, 1.0, RopeLayout::Neox)
        },
    );
    total += row("kv_write", 2 * t * kvh * d, 12 * t * kvh * d, &mut || {
        c.kv_write(&cache, 0, &x, &y, t)
    });
    total += row("swiglu", t * ffn, 12 * t * ffn, &mut || {
        c.swiglu(&x, &y, &o, t * ffn)
    });
    total += 2.0
        * row("add (x2 per layer)", t * hid, 12 * t * hid, &mut || {
            c.add(&o, &y, t * hid)
        });
    println!("| sum per layer | | {:.1} | |", total * 1e3);
    assert!(c.read(&o, 16).unwrap().iter().all(|v| v.is_finite()));
}

/// Prefill attention at 512 and 4096, and decode (one row) at depths 128, 4096 and 32768 of
/// one 32768-position cache.
fn attention_report(c: &Cuda, rng: &mut Rng) {
    println!("| attention (32 q / 8 kv heads, d 128) | rows, depth | cache | ms | |");
    println!("|---|---|---|---|---|");
    let (heads, kvh, d) = (32usize, 8usize, 128usize);
    let fill = |cache: &CudaCache, rng: &mut Rng, upto: usize| {
        let chunk = upto.min(4096);
        for p0 in (0..upto).step_by(chunk) {
            let pos: Vec<u32> = (p0 as u32..(p0 + chunk) as u32).collect();
            c.set_step(&vec![0; chunk], &pos).unwrap();
            let k = buf(c, &rng.vec(chunk * kvh * d));
            let v = buf(c, &rng.vec(chunk * kvh * d));
            c.kv_write(cache, 0, &k, &v, chunk).unwrap();
        }
    };
    let measure = |cache: &CudaCache, rng: &mut Rng, t: usize, depth: usize| {
        let pos: Vec<u32> = ((depth - t) as u32..depth as u32).collect();
        c.set_step(&vec![0; t], &pos).unwrap();
        let q = buf(c, &rng.vec(t * heads * d));
        let out = poisoned(c, t * heads * d);
        let ms = time(c, 20, &mut |_| {
            c.attention(&q, cache, 0, &out, t, heads, 0.088)
        });
        assert!(c
            .read(&out, t * heads * d)
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
        let note = if t == 1 {
            let kv_bytes = 2 * kvh * depth * d * 2;
            format!("{:.0} GB/s of KV", gbs(kv_bytes, ms))
        } else {
            // causal: about half of t x depth scores, 4 flop per score and dimension
            let flop = 4.0 * heads as f64 * d as f64 * (t * depth) as f64 / 2.0;
            format!("{:.0} TFLOP/s", flop / ms as f64 / 1e9)
        };
        println!("| {t}, {depth} | {} | {ms:.4} | {note} |", cache.max_ctx);
    };
    for n in [512usize, 4096] {
        let cache = c.alloc_cache(1, kvh, d, n).unwrap();
        fill(&cache, rng, n);
        measure(&cache, rng, n, n);
    }
    let cache = c.alloc_cache(1, kvh, d, 32768).unwrap();
    fill(&cache, rng, 32768);
    for depth in [128usize, 4096, 32768] {
        measure(&cache, rng, 1, depth);
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn gemv_speed() {
    // One-token GEMV time at the Llama-3.1-8B projection shapes, back to back on the stream
    // (as decode runs them) and from DRAM, for the weight formats of bf16, Q8_0 and Q4_K_M models: the
    // share of the device's bandwidth each reaches. Prints a table; fails only when a
    // large product moves less than 1 TB/s, far below what an H100-class GPU gives.
    let c = cuda();
    let mut rng = Rng(0xbe4c);
    let shapes = [
        ("qkv", 6144usize, 4096usize),
        ("o", 4096, 4096),
        ("gate_up", 28672, 4096),
        ("down", 4096, 14336),
        ("lm_head", 128256, 4096),
    ];
    let mut lines = vec![format!(
        "{:<8} {:<8} {:>10} {:>10} {:>8}",
        "dtype", "shape", "MB", "us", "TB/s"
    )];
    let mut slow = Vec::new();
    for dtype in [DType::BF16, DType::Q8_0, DType::Q4_K, DType::Q6_K] {
        for &(name, rows, cols) in &shapes {
            let bytes = (dtype.row_bytes(cols).unwrap() * rows) as f64;
            // Copies of the weight taken in turn, 256 MB or more in all, so that each launch
            // reads its weight from DRAM as decode does (one weight alone may fit in L2).
            let copies = ((256e6 / bytes).ceil() as usize).clamp(1, 32);
            let ws: Vec<_> = (0..copies)
                .map(|_| random_weight(&c, &mut rng, "w", dtype, rows, cols))
                .collect();
            let x = buf(&c, &rng.vec(cols));
            let o = poisoned(&c, rows);
            let run = |n: usize| {
                for i in 0..n {
                    let w = &ws[i % copies];
                    c.op_matmul(&x, &view(w, 0, rows), &o, 1, Path::Gemv)
                        .unwrap();
                }
                c.synchronize().unwrap();
            };
            run(5);
            let n = ((20e9 / bytes) as usize).clamp(20, 2000);
            let t0 = std::time::Instant::now();
            run(n);
            let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
            let tbs = bytes / us / 1e6;
            lines.push(format!(
                "{:<8} {:<8} {:>10.1} {:>10.2} {:>8.3}",
                dtype.to_string(),
                name,
                bytes / 1e6,
                us,
                tbs
            ));
            if bytes > 50e6 && tbs < 1.0 {
                slow.push(format!("{dtype} {name}: {tbs:.3} TB/s"));
            }
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(slow.is_empty(), "GEMVs below 1 TB/s: {slow:?}");
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn decode_attention_speed() {
    // A decode step's rope, cache store and attention for the 32 layers of a Llama-3.1-8B
    // shape (32 query / 8 kv heads of 128), recorded as a graph and replayed as decode runs
    // it, at KV depths from 128 to 32768: rope_attention (one launch a layer) against
    // rope_kv_write then attention. Prints microseconds per layer and the share of the
    // device's bandwidth the keys and values read reach; fails if the fused launch is slower
    // than its parts up to depth 2048, or by more than 5% beyond.
    let c = cuda();
    let mut rng = Rng(0xa77e);
    let (layers, heads, kvh, d) = (32usize, 32usize, 8usize, 128usize);
    let chunk = 4096;
    let (k, v) = (
        buf(&c, &rng.vec(chunk * kvh * d)),
        buf(&c, &rng.vec(chunk * kvh * d)),
    );
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 500000f32.powf(-2.0 * i as f32 / d as f32))
        .collect();
    let inv = buf(&c, &inv);
    let (q, k1, v1) = (
        buf(&c, &rng.vec(heads * d)),
        buf(&c, &rng.vec(kvh * d)),
        buf(&c, &rng.vec(kvh * d)),
    );
    let out = poisoned(&c, heads * d);
    let (rope, scale) = ((1.0, RopeLayout::Normal), 0.088);
    let hs = (heads, kvh);
    println!("| depth | parts us/layer | rope_attention us/layer | KV GB/s (fused) |");
    println!("|---|---|---|---|");
    let mut slower = Vec::new();
    for (i, depth) in [128usize, 640, 2048, 8192, 32768].into_iter().enumerate() {
        // A cache of depth + 8 positions, as `lamina bench` sizes it, filled.
        let cache = c.alloc_cache(layers, kvh, d, depth + 8).unwrap();
        for p0 in (0..depth).step_by(chunk) {
            let n = chunk.min(depth - p0);
            let pos: Vec<u32> = (p0 as u32..(p0 + n) as u32).collect();
            c.set_step(&vec![0; n], &pos).unwrap();
            for l in 0..layers {
                c.kv_write(&cache, l, &k, &v, n).unwrap();
            }
        }
        c.set_step(&[0], &[depth as u32 - 1]).unwrap();
        let mut per_layer = [0f32; 2];
        for (fused, us) in per_layer.iter_mut().enumerate() {
            let key = Some(1000 + 2 * i as u64 + fused as u64);
            let mut step = || {
                for l in 0..layers {
                    if fused == 1 {
                        c.rope_attention(
                            (&q, &k1, &v1),
                            &inv,
                            &cache,
                            l,
                            &out,
                            1,
                            hs,
                            d,
                            rope,
                            scale,
                        )?;
                    } else {
                        c.rope_kv_write((&q, &k1, &v1), &inv, &cache, l, 1, hs, d, 1.0, rope.1)?;
                        c.attention(&q, &cache, l, &out, 1, heads, scale)?;
                    }
                }
                Ok(())
            };
            let ms = time(&c, 20, &mut |_| c.record(key, &mut step));
            *us = ms * 1e3 / layers as f32;
        }
        let kv_bytes = 2 * kvh * depth * d * 2;
        let gbs = gbs(kv_bytes, per_layer[1] / 1e3);
        println!(
            "| {depth} | {:.2} | {:.2} | {gbs:.0} |",
            per_layer[0], per_layer[1]
        );
        // One launch saves a kernel boundary where attention is short; at long depths, where
        // the keys' bytes decide, the fused launch may lose a little to its prologue.
        if per_layer[1] > per_layer[0] * if depth <= 2048 { 1.0 } else { 1.05 } {
            slower.push(depth);
        }
        assert!(c
            .read(&out, heads * d)
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }
    assert!(
        slower.is_empty(),
        "rope_attention slower than its parts at depths {slower:?}"
    );
}
