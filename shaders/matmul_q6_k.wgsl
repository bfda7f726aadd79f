// Q6_K: super-blocks of 256 elements in 210 bytes: ql[128] (low nibbles), qh[64] (top two
// bits), scales[16] (int8, one per 16 elements), d (f16). Element i: half n = i / 128,
// quarter j = (i % 128) / 32, l = i % 32; low nibble of ql[64n + 32 (j % 2) + l] (high
// nibble for j >= 2), top bits 2j..2j+1 of qh[32n + l], scale scales[8n + 2j + l / 16];
// x = d * scale * (q - 32). Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 8u) * 210u;
    let i = e & 255u;
    let n = i >> 7u;
    let j = (i >> 5u) & 3u;
    let l = i & 31u;
    let lo = field4(ld32(o + n * 64u + (j & 1u) * 32u + l), (j >> 1u) * 4u, 0xfu);
    let hi = field4(ld32(o + 128u + n * 32u + l), j * 2u, 3u);
    let scale = sbyte(ld8(o + 192u + n * 8u + j * 2u + (l >> 4u)));
    return ldf16(o + 208u) * scale * (lo + 16.0 * hi - 32.0);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Elements 32c..32c+31 (two scales); see matmul_f32.wgsl.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + (c >> 3u) * 210u;
    let n = (c >> 2u) & 1u;
    let j = c & 3u;
    let ql = span8(o + n * 64u + (j & 1u) * 32u);
    let qh = span8(o + 128u + n * 32u);
    let sc = ld16(o + 192u + n * 8u + j * 2u);
    let scale = ldf16(o + 208u) * vec2<f32>(sbyte(sc & 0xffu), sbyte(sc >> 8u));
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = field4(ql[i], (j >> 1u) * 4u, 0xfu) + 16.0 * field4(qh[i], j * 2u, 3u) - 32.0;
        v[i] = scale[i >> 2u] * q;
    }
    return v;
}
