//! The one-token-to-MAX_T GEMV against cuBLASLt on the same weights, on small views and on
//! wide GGUF rows that take several chunks of its stream, and in chunks of MAX_T tokens for
//! shapes cuBLASLt is not given. Split from ops_cuda.rs, whose helpers they use.

use super::*;

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn gemv_and_cublaslt_agree() {
    // Every dtype on a small view; the GGUF types also on wide ones whose rows take several
    // chunks of the GEMV's stream (9216 columns), twice each to see the same bits.
    let c = cuda();
    let mut rng = Rng(0x5eed);
    let (rows, cols, row0, vrows) = (520, 512, 8, 500);
    let mut report = Vec::new();
    let shapes = [(520, 512, 8, 500), (75, 9216, 6, 64), (8200, 9216, 6, 8192)];
    for &dtype in nvrtc::MATMUL_DTYPES {
        for &(rows, cols, row0, vrows) in &shapes {
            if cols > 512 && !dtype.is_quantized() {
                continue;
            }
            let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
            for t in [1, 3, 8] {
                let x = buf(&c, &rng.vec(t * cols));
                let a = poisoned(&c, t * vrows);
                let b = poisoned(&c, t * vrows);
                let again = poisoned(&c, t * vrows);
                for out in [&a, &again] {
                    c.op_matmul(&x, &view(&w, row0, vrows), out, t, Path::Gemv)
                        .unwrap();
                }
                c.op_matmul(&x, &view(&w, row0, vrows), &b, t, Path::Blas)
                    .unwrap();
                let (a, b, again) = (
                    c.read(&a, t * vrows).unwrap(),
                    c.read(&b, t * vrows).unwrap(),
                    c.read(&again, t * vrows).unwrap(),
                );
                let e = nmse(&b, &a);
                // cuBLASLt multiplies f16/bf16 operands (x rounded, GGUF blocks dequantized
                // to f16): a few units of the 16-bit rounding; F32 stays f32 on both paths.
                let limit = match dtype {
                    DType::F32 => 1e-10,
                    DType::BF16 => 1e-4,
                    _ => 1e-5,
                };
                let what = format!("{dtype} {vrows}x{cols} t={t}");
                report.push(format!("{what}: nmse {e:.2e} (limit {limit:.0e})"));
                assert!(
                    e < limit,
                    "{what}: gemv and cuBLASLt differ, nmse {e:.3e}\n{}",
                    report.join("\n")
                );
                let same = a
                    .iter()
                    .zip(&again)
                    .all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{what}: two GEMV runs differ");
            }
        }
    }
    // I8 (W8A8): dp4a GEMV and cuBLASLt int8 add the same integers; only the final f32
    // scaling may round differently.
    let w = random_weight(&c, &mut rng, "w", DType::I8, rows, cols);
    let scales: Vec<u8> = (0..rows)
        .flat_map(|_| half::bf16::from_f32(0.01 * (1.0 + rng.f().abs())).to_le_bytes())
        .collect();
    let scale = upload(&c, "w.scale", DType::BF16, &[rows, 1], &scales);
    let zeros: Vec<u8> = (0..rows).map(|_| (rng.next() % 9) as u8).collect();
    let zero = upload(&c, "w.zero", DType::I8, &[rows, 1], &zeros);
    for t in [1, 8, 40] {
        let x = buf(&c, &rng.vec(t * cols));
        let v = |w| WeightView {
            w,
            row0,
            rows: vrows,
            cols,
            scale: Some(&scale),
            zero: Some(&zero),
        };
        let (a, b) = (poisoned(&c, t * vrows), poisoned(&c, t * vrows));
        c.op_matmul(&x, &v(&w), &a, t, Path::Gemv).unwrap();
        c.op_matmul(&x, &v(&w), &b, t, Path::Blas).unwrap();
        let e = nmse(
            &c.read(&b, t * vrows).unwrap(),
            &c.read(&a, t * vrows).unwrap(),
        );
        eprintln!("I8 t={t}: nmse {e:.2e}");
        assert!(
            e < 1e-12,
            "I8 t={t}: dp4a and cuBLASLt int8 differ: nmse {e:.3e}"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn gemv_chunks_match_for_odd_shapes() {
    // Shapes cuBLASLt is not given (odd columns, rows not a multiple of 4): more than MAX_T
    // tokens run matmul_gemv in chunks; each chunk must equal a single-token product.
    let c = cuda();
    let mut rng = Rng(77);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let (rows, cols, t) = (37, 203, 19);
        let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
        let xs = rng.vec(t * cols);
        let x = buf(&c, &xs);
        let all = poisoned(&c, t * rows);
        c.op_matmul(&x, &view(&w, 0, rows), &all, t, Path::Auto)
            .unwrap();
        let all = c.read(&all, t * rows).unwrap();
        for r in [0, 8, 18] {
            let x1 = buf(&c, &xs[r * cols..(r + 1) * cols]);
            let o1 = poisoned(&c, rows);
            c.op_matmul(&x1, &view(&w, 0, rows), &o1, 1, Path::Gemv)
                .unwrap();
            let o1 = c.read(&o1, rows).unwrap();
            assert_eq!(&all[r * rows..(r + 1) * rows], &o1[..], "{dtype} token {r}");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn mixed_format_group_matches_separate_matmuls() {
    // A Q4_K_M-like q/k/v group (Q4_K or Q5_K q and k, a Q6_K v) takes one launch of both
    // formats for one token (matmul_mixed), and per-format launches otherwise (several tokens;
    // q and k rows odd, so that a row pair would span both formats). Every case must give
    // the bits of one matmul per weight: a unit's digits meet the same lane, in the same order.
    let c = cuda();
    let mut rng = Rng(0x51ed);
    for first in [DType::Q4_K, DType::Q5_K] {
        for cols in [512usize, 9216] {
            for (qr, kr, vr) in [(64usize, 30usize, 33usize), (63, 30, 32)] {
                let q = random_weight(&c, &mut rng, "q", first, qr, cols);
                let k = random_weight(&c, &mut rng, "k", first, kr, cols);
                let v = random_weight(&c, &mut rng, "v", DType::Q6_K, vr, cols);
                let views = [view(&q, 0, qr), view(&k, 0, kr), view(&v, 0, vr)];
                for t in [1usize, 3] {
                    let x = buf(&c, &rng.vec(t * cols));
                    let outs: Vec<CudaBuf> =
                        views.iter().map(|v| poisoned(&c, t * v.rows)).collect();
                    let refs: Vec<&CudaBuf> = outs.iter().collect();
                    c.matmul_group(&x, &views, &refs, t).unwrap();
                    for (i, w) in views.iter().enumerate() {
                        let one = poisoned(&c, t * w.rows);
                        c.op_matmul(&x, w, &one, t, Path::Gemv).unwrap();
                        let (a, b) = (
                            c.read(&outs[i], t * w.rows).unwrap(),
                            c.read(&one, t * w.rows).unwrap(),
                        );
                        let what = format!("{first}+Q6_K {qr}/{kr}/{vr} x {cols} t={t} weight {i}");
                        assert!(a.iter().all(|v| v.is_finite()), "{what}: not finite");
                        assert!(
                            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{what}: the group differs from its own matmul (nmse {:.3e})",
                            nmse(&a, &b)
                        );
                    }
                }
            }
        }
    }
}
