//! The decode fusions of the forward pass against their parts: `norm_matmul_group` and
//! `norm_matmul_swiglu` (the norm in the GEMV's staging of x), `matmul_add` (the residual
//! add in the GEMV's store, or cuBLASLt's beta for prefill) and `rope_attention` (rope, the
//! cache store and decode attention in one launch). Split from ops_cuda.rs, whose
//! helpers they use.

use super::*;

/// rms_norm weights in every dtype the fusion reads.
fn norm_weights(c: &Cuda, rng: &mut Rng, cols: usize) -> Vec<CudaWeight> {
    [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .map(|d| random_weight(c, rng, "norm", d, 1, cols))
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn norm_matmul_matches_its_parts() {
    // rms_norm then matmul_group (or matmul_swiglu) against the fused launches: a Q4_K_M-like
    // q/k/v group (Q4_K q and k beside a Q6_K v: two launches, each normalizing x itself), one
    // weight of each GEMV dtype (plain ones take the parts inside the backend), gate/up, one
    // token (fused) and three (parts). x is staged as the same digits up to the rounding of
    // the norm's factor, so the fused results agree to f32 rounding, not bit for bit.
    // At 9216 columns a row takes several chunks of the GGUF GEMV's stream.
    let c = cuda();
    let mut rng = Rng(0x7a0f);
    let mut report = Vec::new();
    for cols in [1024, 9216] {
        norm_matmul_at(&c, &mut rng, cols, &mut report);
    }
    eprintln!("{}", report.join("\n"));
}

fn norm_matmul_at(c: &Cuda, rng: &mut Rng, cols: usize, report: &mut Vec<String>) {
    let norms = norm_weights(c, rng, cols);
    let q = random_weight(c, rng, "q", DType::Q4_K, 256, cols);
    let k = random_weight(c, rng, "k", DType::Q4_K, 64, cols);
    let v = random_weight(c, rng, "v", DType::Q6_K, 64, cols);
    let mut groups = vec![vec![view(&q, 0, 256), view(&k, 0, 64), view(&v, 0, 64)]];
    let singles: Vec<CudaWeight> = nvrtc::MATMUL_DTYPES
        .iter()
        .map(|&d| random_weight(c, rng, "w", d, 96, cols))
        .collect();
    groups.extend(singles.iter().map(|w| vec![view(w, 0, 96)]));
    for nw in &norms {
        for t in [1usize, 3] {
            let x = buf(c, &rng.vec(t * cols));
            for views in &groups {
                let outs: Vec<CudaBuf> = views.iter().map(|v| poisoned(c, t * v.rows)).collect();
                let parts: Vec<CudaBuf> = views.iter().map(|v| poisoned(c, t * v.rows)).collect();
                let xn = poisoned(c, t * cols);
                let o: Vec<&CudaBuf> = outs.iter().collect();
                c.norm_matmul_group(&x, (nw, 1e-5), &xn, views, &o, t)
                    .unwrap();
                c.rms_norm(&x, nw, &xn, t, cols, 1e-5).unwrap();
                let p: Vec<&CudaBuf> = parts.iter().collect();
                c.matmul_group(&xn, views, &p, t).unwrap();
                for (i, (a, b)) in outs.iter().zip(&parts).enumerate() {
                    let n = t * views[i].rows;
                    let (a, b) = (c.read(a, n).unwrap(), c.read(b, n).unwrap());
                    let e = nmse(&a, &b);
                    let what = format!("{} norm {} t={t} weight {i}", views[i].w.dtype, nw.dtype);
                    report.push(format!("{what}: nmse {e:.2e}"));
                    assert!(
                        a.iter().all(|v| v.is_finite()) && e < 1e-9,
                        "{what}: fused norm differs\n{}",
                        report.join("\n")
                    );
                }
            }
            // gate and up, fused with swiglu.
            let views = [view(&q, 0, 128), view(&q, 128, 128)];
            let (f0, f1) = (poisoned(c, t * 128), poisoned(c, t * 128));
            let (g, u, xn) = (
                poisoned(c, t * 128),
                poisoned(c, t * 128),
                poisoned(c, t * cols),
            );
            c.norm_matmul_swiglu(&x, (nw, 1e-5), &xn, views, [&f0, &f1], t)
                .unwrap();
            c.rms_norm(&x, nw, &xn, t, cols, 1e-5).unwrap();
            c.matmul_swiglu(&xn, views, [&g, &u], t).unwrap();
            let (a, b) = (c.read(&f0, t * 128).unwrap(), c.read(&g, t * 128).unwrap());
            let e = nmse(&a, &b);
            assert!(e < 1e-9, "swiglu norm {} t={t}: nmse {e:.3e}", nw.dtype);
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn matmul_add_matches_its_parts() {
    // matmul_add (resid += x . W^T in the GEMV's store, or cuBLASLt with beta 1 for prefill)
    // against matmul then add, for every GEMV dtype and I8, decode and prefill token counts.
    // The GEMV adds the same f32 values the add kernel would (same bits); cuBLASLt adds in its
    // epilogue (f32 rounding).
    // At 9216 columns (GGUF types) a row takes several chunks of the GEMV's stream.
    let c = cuda();
    let mut rng = Rng(0xadd);
    for cols in [512usize, 9216] {
        matmul_add_at(&c, &mut rng, 128, cols);
    }
}

fn matmul_add_at(c: &Cuda, rng: &mut Rng, rows: usize, cols: usize) {
    let wide = cols > 512;
    let mut weights: Vec<CudaWeight> = nvrtc::MATMUL_DTYPES
        .iter()
        .filter(|d| !wide || d.is_quantized())
        .map(|&d| random_weight(c, rng, "w", d, rows, cols))
        .collect();
    if !wide {
        weights.push(random_weight(c, rng, "w", DType::I8, rows, cols));
    }
    let scales: Vec<u8> = (0..rows)
        .flat_map(|_| half::bf16::from_f32(0.01 * (1.0 + rng.f().abs())).to_le_bytes())
        .collect();
    let scale = upload(c, "w.scale", DType::BF16, &[rows, 1], &scales);
    for w in &weights {
        let v = WeightView {
            scale: (w.dtype == DType::I8).then_some(&scale),
            ..view(w, 0, rows)
        };
        for t in [1usize, 5, 40] {
            let x = buf(c, &rng.vec(t * cols));
            let r0 = rng.vec(t * rows);
            let (fused, parts) = (buf(c, &r0), buf(c, &r0));
            let y = poisoned(c, t * rows);
            c.matmul_add(&x, v, &y, &fused, t).unwrap();
            c.matmul(&x, v, &y, t).unwrap();
            c.add(&parts, &y, t * rows).unwrap();
            let (a, b) = (
                c.read(&fused, t * rows).unwrap(),
                c.read(&parts, t * rows).unwrap(),
            );
            let e = nmse(&a, &b);
            let limit = if t > 8 { 1e-12 } else { 0.0 };
            assert!(
                a.iter().all(|v| v.is_finite()) && e <= limit,
                "{} t={t}: matmul_add differs from matmul + add, nmse {e:.3e}",
                w.dtype
            );
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn rope_attention_matches_its_parts() {
    // rope_attention (one launch for a decode row) against rope_kv_write then attention, on
    // two caches filled alike: the same output bits, and a prefill over each cache (which
    // reads every key and value, the step's included) the same bits; for both rope layouts,
    // every head size with a decode kernel, GQA groups of 1, 4, 7 and 8, contexts of one
    // slice and of many. Three rows take the parts inside rope_attention too.
    let c = cuda();
    let mut rng = Rng(0x5a7e);
    let (max_ctx, scale) = (1024usize, 0.09);
    for (d, heads, kvh) in [
        (64usize, 14usize, 2usize),
        (80, 8, 8),
        (96, 32, 4),
        (128, 32, 8),
    ] {
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 500000f32.powf(-2.0 * i as f32 / d as f32))
            .collect();
        let inv = buf(&c, &inv);
        for layout in [RopeLayout::Normal, RopeLayout::Neox] {
            let caches = [
                c.alloc_cache(2, kvh, d, max_ctx).unwrap(),
                c.alloc_cache(2, kvh, d, max_ctx).unwrap(),
            ];
            let (mut p0, mut checked) = (0usize, 0);
            // Prefill chunks, then decode rows: a short context, then a long one.
            for (t, fill) in [
                (30usize, true),
                (1, false),
                (3, false),
                (700, true),
                (1, false),
            ] {
                let pos: Vec<u32> = (p0 as u32..(p0 + t) as u32).collect();
                c.set_step(&vec![0; t], &pos).unwrap();
                p0 += t;
                let (k, v) = (rng.vec(t * kvh * d), rng.vec(t * kvh * d));
                if fill {
                    for cache in &caches {
                        c.kv_write(cache, 1, &buf(&c, &k), &buf(&c, &v), t).unwrap();
                    }
                    continue;
                }
                let qv = rng.vec(t * heads * d);
                let outs = [poisoned(&c, t * heads * d), poisoned(&c, t * heads * d)];
                let what =
                    format!("head_dim {d}, {heads}/{kvh} heads, {layout:?}, rows {t} at {p0}");
                let (q1, k1, v1) = (buf(&c, &qv), buf(&c, &k), buf(&c, &v));
                let hs = (heads, kvh);
                c.rope_attention(
                    (&q1, &k1, &v1),
                    &inv,
                    &caches[0],
                    1,
                    &outs[0],
                    t,
                    hs,
                    d,
                    (0.9, layout),
                    scale,
                )
                .unwrap();
                let (q2, k2, v2) = (buf(&c, &qv), buf(&c, &k), buf(&c, &v));
                c.rope_kv_write((&q2, &k2, &v2), &inv, &caches[1], 1, t, hs, d, 0.9, layout)
                    .unwrap();
                c.attention(&q2, &caches[1], 1, &outs[1], t, heads, scale)
                    .unwrap();
                let bits = |b: &CudaBuf, n: usize| -> Vec<u32> {
                    c.read(b, n).unwrap().iter().map(|v| v.to_bits()).collect()
                };
                let (a, b) = (bits(&outs[0], t * heads * d), bits(&outs[1], t * heads * d));
                assert!(
                    a.iter().all(|&x| f32::from_bits(x).is_finite()),
                    "{what}: not finite"
                );
                assert_eq!(a, b, "{what}: output");
                // Every position so far, prefilled over each cache.
                let pos: Vec<u32> = (0..p0 as u32).collect();
                c.set_step(&vec![0; p0], &pos).unwrap();
                let q = buf(&c, &rng.vec(p0 * heads * d));
                let pre = [poisoned(&c, p0 * heads * d), poisoned(&c, p0 * heads * d)];
                for (cache, o) in caches.iter().zip(&pre) {
                    c.attention(&q, cache, 1, o, p0, heads, scale).unwrap();
                }
                let (a, b) = (bits(&pre[0], p0 * heads * d), bits(&pre[1], p0 * heads * d));
                assert_eq!(a, b, "{what}: the caches differ");
                checked += 1;
            }
            assert_eq!(checked, 3);
        }
    }
}
