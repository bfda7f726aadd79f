// Q4_1: blocks of 32 elements in 20 bytes: d (f16), m (f16), then 16 bytes of nibbles laid
// out as in Q4_0; x = d * q + m. Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 5u) * 20u;
    let i = e & 31u;
    let q = field4(ld32(o + 4u + (i & 15u)), (i >> 4u) * 4u, 0xfu);
    return ldf16(o) * q + ldf16(o + 2u);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Block c; see matmul_f32.wgsl. Blocks are 20 bytes, so always 4-aligned.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = words8(rb + c * 20u);
    let dm = unpack2x16float(b[0]);
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = b[i + 1u];
        v[i] = dm.x * field4(q, 0u, 0xfu) + dm.y;
        v[i + 4u] = dm.x * field4(q, 4u, 0xfu) + dm.y;
    }
    return v;
}
