//! argmax (kernels/argmax.cu, greedy decoding's pick on the device) against sample::argmax,
//! its reference: ties go to the first index, NaN never wins, all-NaN gives 0. Split from
//! ops_cuda.rs, whose helpers it uses.

use super::*;
use lamina::sample::argmax;

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu_check.sh (cargo test --release --test ops_cuda -- --ignored)"]
fn argmax_matches_the_reference() {
    let c = cuda();
    let mut rng = Rng(0xa5a5);
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let mut cases: Vec<Vec<f32>> = vec![
        vec![0.5],
        vec![1.0, 3.0, 3.0, 2.0, 3.0],
        vec![nan, 1.0, 0.5],
        vec![nan; 7],
        vec![-inf; 6],
        vec![nan, -inf, nan, -inf, nan],
        vec![2.0, inf, 1.0, inf],
    ];
    // Llama 3's vocabulary (n % 4 == 0: vector loads) and an odd length, the largest value
    // placed at the ends and repeated.
    for n in [128_256usize, 32_001] {
        let v = rng.vec(n);
        cases.push(v.clone());
        let mut last = v.clone();
        last[n - 1] = 100.0;
        cases.push(last.clone());
        last[7] = 100.0;
        last[n / 2] = nan;
        cases.push(last);
    }
    for v in &cases {
        let b = buf(&c, v);
        let got = c.argmax(&b, v.len()).unwrap();
        assert_eq!(
            got,
            argmax(v),
            "argmax of {} values (first {:?})",
            v.len(),
            &v[..v.len().min(8)]
        );
    }
}
