// Q5_K: super-blocks of 256 elements in 176 bytes: d (f16), dmin (f16), scales[12] (packed
// as in Q4_K), qh[32] (bit b of qh[i % 32] is the fifth bit of element i of sub-block b),
// qs[128] (low nibbles laid out as in Q4_K); x = d * sc * q - dmin * m.
// Interface: see matmul_f32.wgsl.

// The 6-bit scale and min of sub-block b from the 12 packed bytes at `o` (as in Q4_K).
fn scale_min_k4(o: u32, b: u32) -> vec2<f32> {
    if (b < 4u) {
        return vec2<f32>(f32(ld8(o + b) & 63u), f32(ld8(o + b + 4u) & 63u));
    }
    let hi = ld8(o + b + 4u);
    let sc = (hi & 0xfu) | ((ld8(o + b - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((ld8(o + b) >> 6u) << 4u);
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

// Dot product of sub-block c % 8 of super-block c / 8 with xv; see matmul_f32.wgsl.
fn dot32(rb: u32, c: u32, xv: ptr<function, array<vec4<f32>, 8>>, xsum: vec2<f32>) -> f32 {
    let o = rb + (c >> 3u) * 176u;
    let b = c & 7u;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let lo = field4(ld32(o + 48u + (b >> 1u) * 32u + i * 4u), (b & 1u) * 4u, 0xfu);
        let hi = field4(ld32(o + 16u + i * 4u), b, 1u);
        s += dot(lo + 16.0 * hi, (*xv)[i]);
    }
    let sm = scale_min_k4(o + 4u, b);
    let dm = unpack2x16float(ld32(o));
    return dm.x * sm.x * s - dm.y * sm.y * (xsum.x + xsum.y);
}
