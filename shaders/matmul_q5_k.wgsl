// Q5_K: super-blocks of 256 elements in 176 bytes: d (f16), dmin (f16), scales[12] (packed
// as in Q4_K), qh[32] (bit b of qh[i % 32] is the fifth bit of element i of sub-block b),
// qs[128] (low nibbles laid out as in Q4_K); x = d * sc * q - dmin * m.
// Interface: see matmul_f32.wgsl.

// The 6-bit scale and min of sub-block b from the 12 packed bytes at `o` (as in Q4_K).
fn scale_min_k4(o: u32, b: u32) -> vec2<f32> {
    // No branch on b < 4: lanes of one SIMD group may hold different sub-blocks.
    let a = ld8(o + b);
    let e = ld8(o + b + 4u);
    let lo = ld8(o + (b & 3u));
    let first = b < 4u;
    let sc = select((e & 0xfu) | ((lo >> 6u) << 4u), a & 63u, first);
    let m = select((e >> 4u) | ((a >> 6u) << 4u), e & 63u, first);
    return vec2<f32>(f32(sc), f32(m));
}

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 8u) * 176u;
    let i = e & 255u;
    let b = i >> 5u;
    let l = i & 31u;
    let lo = field4(ld32(o + 48u + (b >> 1u) * 32u + l), (b & 1u) * 4u, 0xfu);
    let hi = field4(ld32(o + 16u + l), b, 1u);
    let sm = scale_min_k4(o + 4u, b);
    return ldf16(o) * sm.x * (lo + 16.0 * hi) - ldf16(o + 2u) * sm.y;
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Sub-block c % 8 of super-block c / 8; see matmul_f32.wgsl. Super-blocks are 176 bytes,
// so always 4-aligned.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + (c >> 3u) * 176u;
    let b = c & 7u;
    let ql = words8(o + 48u + (b >> 1u) * 32u);
    let qh = words8(o + 16u);
    let sm = scale_min_k4(o + 4u, b);
    let dm = unpack2x16float(w[o >> 2u]);
    let scale = dm.x * sm.x;
    let offset = dm.y * sm.y;
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = field4(ql[i], (b & 1u) * 4u, 0xfu) + 16.0 * field4(qh[i], b, 1u);
        v[i] = scale * q - offset;
    }
    return v;
}
