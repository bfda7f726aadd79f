// Q4_0: blocks of 32 elements in 18 bytes: d (f16), then 16 bytes whose low nibbles are
// elements 0..15 and high nibbles elements 16..31; x = d * (q - 8).
// Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 5u) * 18u;
    let i = e & 31u;
    let q = field4(ld32(o + 2u + (i & 15u)), (i >> 4u) * 4u, 0xfu);
    return ldf16(o) * (q - 8.0);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Block c; see matmul_f32.wgsl.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = span8(rb + c * 18u);
    let d = unpack2x16float(b[0]).x;
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = mid32(b, i);
        v[i] = d * (field4(q, 0u, 0xfu) - 8.0);
        v[i + 4u] = d * (field4(q, 4u, 0xfu) - 8.0);
    }
    return v;
}
