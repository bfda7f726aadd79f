// Q2_K: super-blocks of 256 elements in 84 bytes: scales[16] (low nibble: scale, high
// nibble: min, one pair per 16 elements), qs[64] (2-bit quants), d (f16), dmin (f16).
// Element i of a super-block: half n = i / 128, quarter j = (i % 128) / 32, l = i % 32;
// its quant is bits 2j..2j+1 of qs[32n + l], its scale byte scales[8n + 2j + l / 16];
// x = d * scale * q - dmin * min. Interface: see matmul_f32.wgsl.

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 8u) * 84u;
    let i = e & 255u;
    let n = i >> 7u;
    let j = (i >> 5u) & 3u;
    let l = i & 31u;
    let q = field4(ld32(o + 16u + n * 32u + l), j * 2u, 3u);
    let sc = ld8(o + n * 8u + j * 2u + (l >> 4u));
    return ldf16(o + 80u) * f32(sc & 0xfu) * q - ldf16(o + 82u) * f32(sc >> 4u);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Elements 32c..32c+31: a quarter of one half of a super-block, with two scale/min pairs;
// see matmul_f32.wgsl. Super-blocks are 84 bytes, so always 4-aligned.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + (c >> 3u) * 84u;
    let n = (c >> 2u) & 1u;
    let j = c & 3u;
    let q = words8(o + 16u + n * 32u);
    let sc = ld16(o + n * 8u + j * 2u);
    let dm = unpack2x16float(w[(o + 80u) >> 2u]);
    let scale = dm.x * vec2<f32>(f32(sc & 0xfu), f32((sc >> 8u) & 0xfu));
    let offset = dm.y * vec2<f32>(f32((sc >> 4u) & 0xfu), f32(sc >> 12u));
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = scale[i >> 2u] * field4(q[i], j * 2u, 3u) - offset[i >> 2u];
    }
    return v;
}
