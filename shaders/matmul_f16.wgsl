// F16 weights, read as packed halves and widened with unpack2x16float (no SHADER_F16
// needed). A row of an odd number of elements may start in the middle of a word, so reads
// go through the 2-aligned readers of bytes.wgsl. Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let b = rb + e * 2u;
    return vec4<f32>(unpack2x16float(ld32(b)), unpack2x16float(ld32(b + 4u)));
}

fn dq1(rb: u32, e: u32) -> f32 {
    return ldf16(rb + e * 2u);
}

// See matmul_f32.wgsl. 64 bytes: two spans.
fn dot32(rb: u32, c: u32, xv: ptr<function, array<vec4<f32>, 8>>, xsum: vec2<f32>) -> f32 {
    let o = rb + c * 64u;
    let a = span8(o);
    let b = span8(o + 32u);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let lo = vec4<f32>(unpack2x16float(a[2u * i]), unpack2x16float(a[2u * i + 1u]));
        let hi = vec4<f32>(unpack2x16float(b[2u * i]), unpack2x16float(b[2u * i + 1u]));
        s += dot(lo, (*xv)[i]) + dot(hi, (*xv)[i + 4u]);
    }
    return s;
}
