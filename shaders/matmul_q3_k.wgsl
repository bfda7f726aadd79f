// Q3_K: super-blocks of 256 elements in 110 bytes: hmask[32] (third bit of each quant),
// qs[64] (low 2 bits), scales[12] (sixteen 6-bit scales, offset by 32), d (f16).
// Element i: half n = i / 128, quarter j = (i % 128) / 32, l = i % 32; low bits are bits
// 2j..2j+1 of qs[32n + l], the third bit is bit 4n + j of hmask[l] (q = low - 4 when it is
// clear); scale s = 8n + 2j + l / 16 has its low nibble in scales[s % 8] (low nibble for
// s < 8, high nibble otherwise) and its top two bits at bit 2(s / 4) of scales[8 + s % 4].
// x = d * (scale - 32) * q. Interface: see matmul_f32.wgsl.

// The signed scale s (0..16) of the super-block at `o`; see the layout above.
fn q3k_scale(o: u32, s: u32) -> f32 {
    let low = (ld8(o + 96u + (s & 7u)) >> ((s >> 3u) * 4u)) & 0xfu;
    let high = (ld8(o + 104u + (s & 3u)) >> ((s >> 2u) * 2u)) & 3u;
    return f32(i32(low | (high << 4u)) - 32);
}

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let o = rb + (e >> 8u) * 110u;
    let i = e & 255u;
    let n = i >> 7u;
    let j = (i >> 5u) & 3u;
    let l = i & 31u;
    let lo = field4(ld32(o + 32u + n * 32u + l), j * 2u, 3u);
    let hb = field4(ld32(o + l), n * 4u + j, 1u);
    let scale = q3k_scale(o, n * 8u + j * 2u + (l >> 4u));
    return ldf16(o + 108u) * scale * (lo - 4.0 + 4.0 * hb);
}

fn dq1(rb: u32, e: u32) -> f32 {
    return dq4(rb, e & ~3u)[e & 3u];
}

// Elements 32c..32c+31 (two scales); see matmul_f32.wgsl.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + (c >> 3u) * 110u;
    let n = (c >> 2u) & 1u;
    let j = c & 3u;
    let hm = span8(o);
    let qs = span8(o + 32u + n * 32u);
    let sc = n * 8u + j * 2u;
    let d = ldf16(o + 108u);
    let scale = d * vec2<f32>(q3k_scale(o, sc), q3k_scale(o, sc + 1u));
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = field4(qs[i], j * 2u, 3u) + 4.0 * field4(hm[i], n * 4u + j, 1u) - 4.0;
        v[i] = scale[i >> 2u] * q;
    }
    return v;
}
