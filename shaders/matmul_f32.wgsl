// F32 weights: how matmul.wgsl, embedding.wgsl, rms_norm.wgsl and add_bias.wgsl read them.
// Every format file defines the same two functions over a row that starts at byte `rb`:
//   dq4(rb, e): elements e..e+3 (e a multiple of 4, all four inside the row), as f32;
//   dq1(rb, e): element e.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let i = (rb >> 2u) + e;
    return bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
}

fn dq1(rb: u32, e: u32) -> f32 {
    return bitcast<f32>(w[(rb >> 2u) + e]);
}
