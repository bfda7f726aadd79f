// F32 weights: how matmul.wgsl, embedding.wgsl, rms_norm.wgsl and add_bias.wgsl read them.
// Every format file defines the same three functions over a row that starts at byte `rb`:
//   dq32(rb, c): elements 32c..32c+31 (one block, or an eighth of a K-quant super-block)
//                as eight vec4, with the block's scales read once;
//   dq4(rb, e):  elements e..e+3 (e a multiple of 4, all four inside the row);
//   dq1(rb, e):  element e.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let i = (rb >> 2u) + e;
    return bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
}

fn dq1(rb: u32, e: u32) -> f32 {
    return bitcast<f32>(w[(rb >> 2u) + e]);
}

// Elements 32c..32c+31 of the row, four per vec4: what the matmul kernels read. (dq4 and
// dq1 serve the odd cases: float rows whose length is not a multiple of 32, embedding.)
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = dq4(rb, c * 32u + i * 4u);
    }
    return v;
}
