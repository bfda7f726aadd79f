// Q8_0: blocks of 32 elements in 34 bytes: d (f16), then 32 int8 quants; x = d * q.
// Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 5u) * 34u;
    return ldf16(o) * sbytes4(ld32(o + 2u + (e & 31u)));
}

fn dq1(rb: u32, e: u32) -> f32 {
    let o = rb + (e >> 5u) * 34u;
    return ldf16(o) * sbyte(ld8(o + 2u + (e & 31u)));
}

// Block c; see matmul_f32.wgsl.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + c * 34u;
    let q = span8(o + 2u);
    let d = ldf16(o);
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = d * sbytes4(q[i]);
    }
    return v;
}
