// Q5_1: blocks of 32 elements in 24 bytes: d (f16), m (f16), qh (32 bits: bit i is the fifth
// bit of element i), then 16 bytes of low nibbles laid out as in Q4_0; x = d * q + m.
// Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 5u) * 24u;
    let i = e & 31u;
    let lo = field4(ld32(o + 8u + (i & 15u)), (i >> 4u) * 4u, 0xfu);
    let hi = vec4<f32>((vec4<u32>(ld32(o + 4u) >> i) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
    return ldf16(o) * (lo + 16.0 * hi) + ldf16(o + 2u);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}
