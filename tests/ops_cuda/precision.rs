//! `exact_products`: LAMINA_CUDA_MATMUL=exact (x as two f16/bf16 halves for cuBLASLt) against
//! the f32 GEMV and against the default single cast (split from ops_cuda.rs, whose helpers
//! it uses).

use super::*;

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn exact_products() {
    // The GEMV multiplies f32 x by the weights as stored: the exact answer up to f32
    // summation. cuBLASLt by default takes x rounded to the weight's 16-bit type (nmse a
    // few 1e-6 for bf16); with exact products it must agree with the GEMV to f32 level, and
    // by far more than the single cast does. GGUF weights keep their f16 dequantization, so
    // there only the x side improves.
    let mut c = cuda();
    let mut rng = Rng(0xe4ac7);
    let (rows, cols, t) = (384, 1024, 40);
    let mut report = Vec::new();
    for dtype in [DType::BF16, DType::F16, DType::Q8_0, DType::Q4_K] {
        let w = random_weight(&c, &mut rng, "w", dtype, rows, cols);
        let x = buf(&c, &rng.vec(t * cols));
        let run = |c: &mut Cuda, path: Path, exact: bool| {
            c.set_exact_products(exact);
            let o = poisoned(c, t * rows);
            c.op_matmul(&x, &view(&w, 0, rows), &o, t, path).unwrap();
            c.read(&o, t * rows).unwrap()
        };
        let gemv = run(&mut c, Path::Gemv, false);
        let single = nmse(&run(&mut c, Path::Blas, false), &gemv);
        let split = nmse(&run(&mut c, Path::Blas, true), &gemv);
        report.push(format!(
            "{dtype}: nmse single cast {single:.2e}, exact {split:.2e}"
        ));
        let ok = if dtype.is_quantized() {
            split < single
        } else {
            split < 1e-10 && split * 20.0 < single
        };
        assert!(
            ok,
            "{dtype}: exact products not exact\n{}",
            report.join("\n")
        );
    }
    eprintln!("{}", report.join("\n"));
}
