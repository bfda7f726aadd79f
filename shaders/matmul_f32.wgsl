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

// Dot product of elements 32c..32c+31 of the row with xv (those 32 elements of x, four at
// a time); xsum holds the sums of xv's two halves (used by formats with offsets or mins).
fn dot32(rb: u32, c: u32, xv: ptr<function, array<vec4<f32>, 8>>, xsum: vec2<f32>) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += dot(dq4(rb, c * 32u + i * 4u), (*xv)[i]);
    }
    return s;
}
