// Q5_0: blocks of 32 elements in 22 bytes: d (f16), qh (32 bits: bit i is the fifth bit of
// element i), then 16 bytes of low nibbles laid out as in Q4_0; x = d * (q - 16).
// Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 5u) * 22u;
    let i = e & 31u;
    let lo = field4(ld32(o + 6u + (i & 15u)), (i >> 4u) * 4u, 0xfu);
    let hi = bits4(ld32(o + 2u), i);
    return ldf16(o) * (lo + 16.0 * hi - 16.0);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Block c; see matmul_f32.wgsl.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = span8(rb + c * 22u);
    let d = unpack2x16float(b[0]).x;
    let qh = mid32(b, 0u);
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = mid32(b, i + 1u);
        v[i] = d * (field4(q, 0u, 0xfu) + 16.0 * bits4(qh, i * 4u) - 16.0);
        v[i + 4u] = d * (field4(q, 4u, 0xfu) + 16.0 * bits4(qh, 16u + i * 4u) - 16.0);
    }
    return v;
}
