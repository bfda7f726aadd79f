// Byte readers over the weight binding `w: array<u32>`, prepended (after common.wgsl) to
// every shader that reads a weight; src/backend/wgpu/pipelines.rs does the concatenation.
//
// Weights are bound as `array<u32>` whatever their dtype: GGUF blocks are not 4-byte aligned
// (a Q4_0 block is 18 bytes), so the format files (matmul_<dtype>.wgsl) read bytes, halves
// and words at byte offsets. Every block size of every format is even and every row starts
// at an even byte (a whole number of blocks, or of 2-byte elements), so 16-bit reads never
// straddle two words and 32-bit reads are at least 2-aligned.

// The byte at byte offset `b` of `w`.
fn ld8(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// The 16 bits at an even byte offset `b` of `w`.
fn ld16(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu;
}

// The 32 bits (little endian) at an even byte offset `b` of `w`.
fn ld32(b: u32) -> u32 {
    let i = b >> 2u;
    if ((b & 2u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

// The eight words at byte offsets o, o + 4, ..., o + 28 for an even o, from nine aligned
// loads and no branch: a branch on o's alignment would run both ways when SIMD lanes
// disagree (and on a CPU adapter every load of a lane costs a loop iteration). Words a
// caller does not use cost nothing: their loads are dropped. The ninth word may lie past
// the end of the buffer when o is 4-aligned; it is then unused, and wgpu bounds-checks
// every read.
fn span8(o: u32) -> array<u32, 8> {
    let i = o >> 2u;
    let mid = (o & 2u) != 0u;
    var a: array<u32, 9>;
    for (var k = 0u; k < 9u; k++) {
        a[k] = w[i + k];
    }
    var s: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        s[k] = select(a[k], (a[k] >> 16u) | (a[k + 1u] << 16u), mid);
    }
    return s;
}

// The eight words at o, o + 4, ..., o + 28 for o a multiple of 4.
fn words8(o: u32) -> array<u32, 8> {
    let i = o >> 2u;
    var s: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        s[k] = w[i + k];
    }
    return s;
}

// The 32 bits that start 2 bytes into word k of a span (k < 7).
fn mid32(s: array<u32, 8>, k: u32) -> u32 {
    return (s[k] >> 16u) | (s[k + 1u] << 16u);
}

// The f16 at an even byte offset, widened. `unpack2x16float` needs no SHADER_F16.
fn ldf16(b: u32) -> f32 {
    return unpack2x16float(ld16(b)).x;
}

// Bits [shift, shift + width) of each of the four bytes of `q`, lowest byte first, where
// `mask` = 2^width - 1 and shift + width <= 8 (so no bit of the next byte leaks in).
fn field4(q: u32, shift: u32, mask: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(mask));
}

// Bits shift .. shift + 3 of `v` as four 0/1 values, lowest bit first.
fn bits4(v: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(v >> shift) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
}

// The four bytes of `q` as signed int8, lowest byte first.
fn sbytes4(q: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

// One signed byte, sign-extended.
fn sbyte(v: u32) -> f32 {
    return f32(bitcast<i32>(v << 24u) >> 24u);
}
