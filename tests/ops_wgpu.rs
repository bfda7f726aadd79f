use lamina::backend::wgpu::{Wgpu, WgpuOptions};
use lamina::backend::{Backend, WeightView};
use lamina::dtype::DType;
use lamina::weights::TensorInfo;

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

#[test]
fn smoke() {
    let b = Wgpu::new(WgpuOptions::default()).unwrap();
    println!("{}", b.describe());
    let (n, k, t) = (5usize, 7usize, 3usize);
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let x: Vec<f32> = (0..t * k).map(|i| (i as f32 * 0.11).cos()).collect();
    let wt = b
        .upload_weight(&info("w", DType::F32, &[n, k]), bytemuck::cast_slice(&w))
        .unwrap();
    let xb = b.alloc(t * k).unwrap();
    let ob = b.alloc(t * n).unwrap();
    b.write(&xb, &x).unwrap();
    for tt in [1, 3] {
        b.matmul(&xb, WeightView { w: &wt, row0: 0, rows: n, cols: k, scale: None, zero: None }, &ob, tt).unwrap();
        let got = b.read(&ob, tt * n).unwrap();
        for i in 0..tt {
            for j in 0..n {
                let want: f32 = (0..k).map(|c| x[i * k + c] * w[j * k + c]).sum();
                assert!((got[i * n + j] - want).abs() < 1e-4, "{i} {j} {} {}", got[i * n + j], want);
            }
        }
    }
}
