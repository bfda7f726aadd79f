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
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + c * 64u;
    let a = span8(o);
    let b = span8(o + 32u);
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        v[i] = vec4<f32>(unpack2x16float(a[2u * i]), unpack2x16float(a[2u * i + 1u]));
        v[i + 4u] = vec4<f32>(unpack2x16float(b[2u * i]), unpack2x16float(b[2u * i + 1u]));
    }
    return v;
}
