// BF16 weights. WGSL has no bf16: a bf16 is the high half of an f32, so widening is a
// shift. Interface: see matmul_f32.wgsl.

fn bf16_pair(q: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(q << 16u, q & 0xffff0000u));
}

fn dq4(rb: u32, e: u32) -> vec4<f32> {
    let b = rb + e * 2u;
    return vec4<f32>(bf16_pair(ld32(b)), bf16_pair(ld32(b + 4u)));
}

fn dq1(rb: u32, e: u32) -> f32 {
    return bitcast<f32>(ld16(rb + e * 2u) << 16u);
}

// See matmul_f32.wgsl. 64 bytes: two spans.
fn dq32(rb: u32, c: u32) -> array<vec4<f32>, 8> {
    let o = rb + c * 64u;
    let a = span8(o);
    let b = span8(o + 32u);
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        v[i] = vec4<f32>(bf16_pair(a[2u * i]), bf16_pair(a[2u * i + 1u]));
        v[i + 4u] = vec4<f32>(bf16_pair(b[2u * i]), bf16_pair(b[2u * i + 1u]));
    }
    return v;
}
