// Weight formats as the file stores them, read in place: F32, F16, BF16 and the GGUF blocks.
// Each format is a struct named like its DType with
//   BLOCK_ELEMS, BLOCK_BYTES  the GGUF block (1 and the element size for plain types),
//   UNIT                      how many elements `unit` dequantizes at once,
//   unit(row, u, w)           elements [u*UNIT, u*UNIT + UNIT) of a row into w[UNIT] (f32),
// and the plain types also `get(row, i)`, one element (rows of any length and alignment).
// Every loop over a register array is unrolled with constant indices so arrays stay in
// registers. Block layouts follow GGML's definitions (ggml-common.h): K-quants are
// super-blocks of 256 elements; `unit` takes one sub-block of 32 of them. Each element is
// one fma of an exact small-integer float (u2f) with the block's scale and offset: the
// exact value rounded once, as d * (q - offset) would be.
#pragma once
#include "common.cuh"

struct F32 {
    enum { BLOCK_ELEMS = 1, BLOCK_BYTES = 4, UNIT = 4 };
    static __device__ __forceinline__ void vec(uint4 v, float* w) {
        w[0] = __uint_as_float(v.x);
        w[1] = __uint_as_float(v.y);
        w[2] = __uint_as_float(v.z);
        w[3] = __uint_as_float(v.w);
    }
    // Needs a 16-byte aligned row.
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) { vec(((const uint4*)row)[u], w); }
    static __device__ __forceinline__ float get(const u8* row, i64 i) { return ((const float*)row)[i]; }
};

struct F16 {
    enum { BLOCK_ELEMS = 1, BLOCK_BYTES = 2, UNIT = 8 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) { vec(((const uint4*)row)[u], w); }
    static __device__ __forceinline__ void vec(uint4 v, float* w) {
        const u32 q[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = f16_to_f32((u16)(q[i] & 0xffff));
            w[2 * i + 1] = f16_to_f32((u16)(q[i] >> 16));
        }
    }
    static __device__ __forceinline__ float get(const u8* row, i64 i) { return f16_to_f32(((const u16*)row)[i]); }
};

struct BF16 {
    enum { BLOCK_ELEMS = 1, BLOCK_BYTES = 2, UNIT = 8 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) { vec(((const uint4*)row)[u], w); }
    static __device__ __forceinline__ void vec(uint4 v, float* w) {
        const u32 q[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = __uint_as_float(q[i] << 16);
            w[2 * i + 1] = __uint_as_float(q[i] & 0xffff0000u);
        }
    }
    static __device__ __forceinline__ float get(const u8* row, i64 i) { return bf16_to_f32(((const u16*)row)[i]); }
};

// d (f16), qs[16]: x = d * (q - 8); element j < 16 in the low nibble of qs[j], j + 16 high.
struct Q4_0 {
    enum { BLOCK_ELEMS = 32, BLOCK_BYTES = 18, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const u8* b = row + (i64)u * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        u32 q[4];
        ld_bytes<16>(b + 2, q);
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const u32 v = byte_at(q[l / 4], l % 4);
            w[l] = fmaf(d, u2f(v & 0xf), -8.0f * d);
            w[l + 16] = fmaf(d, u2f(v >> 4), -8.0f * d);
        }
    }
};

// d, m (f16), qs[16]: x = d * q + m. 20-byte blocks: qs is 4-byte aligned.
struct Q4_1 {
    enum { BLOCK_ELEMS = 32, BLOCK_BYTES = 20, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const u8* b = row + (i64)u * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        const float m = f16_to_f32(ld_u16(b + 2));
        u32 q[4];
        ld_bytes_a4<16>(b + 4, q);
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const u32 v = byte_at(q[l / 4], l % 4);
            w[l] = fmaf(d, u2f(v & 0xf), m);
            w[l + 16] = fmaf(d, u2f(v >> 4), m);
        }
    }
};

// d (f16), qh (32 fifth bits), qs[16]: x = d * (q - 16).
struct Q5_0 {
    enum { BLOCK_ELEMS = 32, BLOCK_BYTES = 22, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const u8* b = row + (i64)u * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        u32 hq[5];  // qh, then qs
        ld_bytes<20>(b + 2, hq);
        const u32 qh = hq[0];
        const u32 q[4] = {hq[1], hq[2], hq[3], hq[4]};
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const u32 v = byte_at(q[l / 4], l % 4);
            const u32 lo = (v & 0xf) | (((qh >> l) & 1) << 4);
            const u32 hi = (v >> 4) | (((qh >> (l + 16)) & 1) << 4);
            w[l] = fmaf(d, u2f(lo), -16.0f * d);
            w[l + 16] = fmaf(d, u2f(hi), -16.0f * d);
        }
    }
};

// d, m (f16), qh, qs[16]: x = d * q + m. 24-byte blocks: qh and qs are 4-byte aligned.
struct Q5_1 {
    enum { BLOCK_ELEMS = 32, BLOCK_BYTES = 24, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const u8* b = row + (i64)u * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        const float m = f16_to_f32(ld_u16(b + 2));
        const u32 qh = *(const u32*)(b + 4);
        u32 q[4];
        ld_bytes_a4<16>(b + 8, q);
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const u32 v = byte_at(q[l / 4], l % 4);
            const u32 lo = (v & 0xf) | (((qh >> l) & 1) << 4);
            const u32 hi = (v >> 4) | (((qh >> (l + 16)) & 1) << 4);
            w[l] = fmaf(d, u2f(lo), m);
            w[l + 16] = fmaf(d, u2f(hi), m);
        }
    }
};

// d (f16), qs[32] (int8): x = d * q.
struct Q8_0 {
    enum { BLOCK_ELEMS = 32, BLOCK_BYTES = 34, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const u8* b = row + (i64)u * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        u32 q[8];
        ld_bytes<32>(b + 2, q);
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = fmaf(d, u2f(byte_at(q[l / 4], l % 4) ^ 0x80), -128.0f * d);
    }
};

// Super-block of 256: scales[16] (low nibble scale, high nibble min, per 16 elements),
// qs[64] (2 bits), d, dmin (f16): x = d * sc * q - dmin * m.
// Sub-block s (32 elements): qs[32 * (s / 4) + l] >> (2 * (s % 4)), scales 2s and 2s + 1.
// 84-byte blocks: qs is 4-byte aligned.
struct Q2_K {
    enum { BLOCK_ELEMS = 256, BLOCK_BYTES = 84, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const int s = u & 7;
        const u8* b = row + (i64)(u >> 3) * BLOCK_BYTES;
        const u32 sc = ld_u16(b + 2 * s);
        const float d = f16_to_f32(ld_u16(b + 80));
        const float dmin = f16_to_f32(ld_u16(b + 82));
        const float d0 = d * (float)(sc & 0xf), m0 = dmin * (float)((sc >> 4) & 0xf);
        const float d1 = d * (float)((sc >> 8) & 0xf), m1 = dmin * (float)(sc >> 12);
        u32 q[8];
        ld_bytes_a4<32>(b + 16 + 32 * (s >> 2), q);
        const int shift = 2 * (s & 3);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const float v = u2f((byte_at(q[l / 4], l % 4) >> shift) & 3);
            w[l] = l < 16 ? fmaf(d0, v, -m0) : fmaf(d1, v, -m1);
        }
    }
};

// Byte k (run-time, 0..11) of 12 bytes held in three words, without indexing an array.
__device__ __forceinline__ u32 byte12(u32 a, u32 b, u32 c, int k) {
    const u32 w = k < 4 ? a : (k < 8 ? b : c);
    return (w >> (8 * (k & 3))) & 0xff;
}

// Super-block of 256: hmask[32] (third bit), qs[64] (low 2 bits), scales (16 x 6 bits in 12
// bytes), d (f16): x = d * (sc - 32) * (q - (hbit ? 0 : 4)).
// Sub-block s: qs[32 * (s / 4) + l] >> (2 * (s % 4)), hmask[l] bit s, scales 2s and 2s + 1.
struct Q3_K {
    enum { BLOCK_ELEMS = 256, BLOCK_BYTES = 110, UNIT = 32 };
    // 6-bit scale i: low 4 bits in byte i % 8 (high nibble when i >= 8), high 2 bits in
    // byte 8 + i % 4 at bit 2 * (i / 4).
    static __device__ __forceinline__ int scale(u32 a, u32 b, u32 c, int i) {
        const u32 lo = (byte12(a, b, c, i & 7) >> (4 * (i >> 3))) & 0xf;
        const u32 hi = (byte12(a, b, c, 8 + (i & 3)) >> (2 * (i >> 2))) & 3;
        return (int)(lo | (hi << 4)) - 32;
    }
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const int s = u & 7;
        const u8* b = row + (i64)(u >> 3) * BLOCK_BYTES;
        u32 sc[3];
        ld_bytes<12>(b + 96, sc);
        const float d = f16_to_f32(ld_u16(b + 108));
        const float d0 = d * (float)scale(sc[0], sc[1], sc[2], 2 * s);
        const float d1 = d * (float)scale(sc[0], sc[1], sc[2], 2 * s + 1);
        u32 hm[8], q[8];
        ld_bytes<32>(b, hm);
        ld_bytes<32>(b + 32 + 32 * (s >> 2), q);
        const int shift = 2 * (s & 3);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            // lo - (h ? 0 : 4) = (lo | h << 2) - 4
            const u32 lo = (byte_at(q[l / 4], l % 4) >> shift) & 3;
            const u32 h = (byte_at(hm[l / 4], l % 4) >> s) & 1;
            const float dd = l < 16 ? d0 : d1;
            w[l] = fmaf(dd, u2f(lo | (h << 2)), -4.0f * dd);
        }
    }
};

// The 6-bit scale and min of sub-block j (0..7) of Q4_K and Q5_K from their 12 bytes (words
// a, b, c): sub-blocks 0-3 keep them in byte j of a (scale) and b (min), 4-7 their low four
// bits in byte j - 4 of c and their top two in the top of byte j - 4 of a and b. Selected,
// not branched: the lanes of a warp hold different sub-blocks.
__device__ __forceinline__ void scale_min_k4(u32 a, u32 b, u32 c, int j, float* sc, float* m) {
    const int sh = 8 * (j & 3);
    const u32 A = (a >> sh) & 0xff, B = (b >> sh) & 0xff, C = (c >> sh) & 0xff;
    const bool first = j < 4;
    *sc = u2f(first ? A & 63 : (C & 0xf) | ((A >> 6) << 4));
    *m = u2f(first ? B & 63 : (C >> 4) | ((B >> 6) << 4));
}

// Super-block of 256: d, dmin (f16), scales[12], qs[128]: x = d * sc * q - dmin * m.
// Sub-block s: qs[32 * (s / 2) + l], low nibble for even s, high for odd. Rows are whole
// super-blocks of 144 = 9 * 16 bytes, so qs is 16-byte aligned: 16-byte loads.
struct Q4_K {
    enum { BLOCK_ELEMS = 256, BLOCK_BYTES = 144, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const int s = u & 7;
        const u8* b = row + (i64)(u >> 3) * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        const float dmin = f16_to_f32(ld_u16(b + 2));
        u32 sc[3];
        ld_bytes_a4<12>(b + 4, sc);
        float scale, min;
        scale_min_k4(sc[0], sc[1], sc[2], s, &scale, &min);
        const float ds = d * scale, dm = dmin * min;
        u32 q[8];
        ld_bytes_a16<32>(b + 16 + 32 * (s >> 1), q);
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = fmaf(ds, u2f((byte_at(q[l / 4], l % 4) >> shift) & 0xf), -dm);
    }
};

// Super-block of 256: d, dmin (f16), scales[12], qh[32] (fifth bit), qs[128].
// Sub-block s: qs[32 * (s / 2) + l] nibble as in Q4_K, qh[l] bit s. 176 = 11 * 16: 16-byte
// loads as in Q4_K.
struct Q5_K {
    enum { BLOCK_ELEMS = 256, BLOCK_BYTES = 176, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const int s = u & 7;
        const u8* b = row + (i64)(u >> 3) * BLOCK_BYTES;
        const float d = f16_to_f32(ld_u16(b));
        const float dmin = f16_to_f32(ld_u16(b + 2));
        u32 sc[3];
        ld_bytes_a4<12>(b + 4, sc);
        float scale, min;
        scale_min_k4(sc[0], sc[1], sc[2], s, &scale, &min);
        const float ds = d * scale, dm = dmin * min;
        u32 qh[8], q[8];
        ld_bytes_a16<32>(b + 16, qh);
        ld_bytes_a16<32>(b + 48 + 32 * (s >> 1), q);
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const u32 lo = (byte_at(q[l / 4], l % 4) >> shift) & 0xf;
            const u32 hi = (byte_at(qh[l / 4], l % 4) >> s) & 1;
            w[l] = fmaf(ds, u2f(lo | (hi << 4)), -dm);
        }
    }
};

// Super-block of 256: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8, per 16),
// d (f16): x = d * sc * (q - 32). Sub-block s = 4n + k: ql[64n + 32(k % 2) + l] nibble k / 2,
// qh[32n + l] bits 2k..2k+1, scales 8n + 2k and 8n + 2k + 1.
struct Q6_K {
    enum { BLOCK_ELEMS = 256, BLOCK_BYTES = 210, UNIT = 32 };
    static __device__ __forceinline__ void unit(const u8* row, int u, float* w) {
        const int s = u & 7, n = s >> 2, k = s & 3;
        const u8* b = row + (i64)(u >> 3) * BLOCK_BYTES;
        const u32 sc = ld_u16(b + 192 + 8 * n + 2 * k);
        const float d = f16_to_f32(ld_u16(b + 208));
        const float d0 = d * (float)(i8)(sc & 0xff);
        const float d1 = d * (float)(i8)(sc >> 8);
        u32 ql[8], qh[8];
        ld_bytes<32>(b + 64 * n + 32 * (k & 1), ql);
        ld_bytes<32>(b + 128 + 32 * n, qh);
        const int lshift = 4 * (k >> 1), hshift = 2 * k;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const u32 lo = (byte_at(ql[l / 4], l % 4) >> lshift) & 0xf;
            const u32 hi = (byte_at(qh[l / 4], l % 4) >> hshift) & 3;
            const float dd = l < 16 ? d0 : d1;
            w[l] = fmaf(dd, u2f(lo | (hi << 4)), -32.0f * dd);
        }
    }
};

// ---- Units as integer bytes (matmul_gemv): IDot<F>::unit_i(row, u, w, a, b) gives the
// unit's 32 integers as 8 words of 4 bytes (element 4i + k in byte k of w[i]: signed bytes
// when SIGNED, else 0..127) so that element k is a[k / (32 / HALVES)] * (q[k] - ZERO)
// (+ b[0] when OFFSET). The one-token GEMV multiplies them with dp4a by x held as two 8-bit
// digits per element (matmul.cu), about four times fewer instructions per weight than
// decoding to f32; Dot turns them into floats for the other GEMVs. The formats of Q8_0 and
// Q4_K_M files (Q8_0, Q4_K, Q6_K) and Q4_0, Q4_1, Q5_K have one.
template <class F>
struct IDot {
    enum { OK = 0, HALVES = 1, OFFSET = 0, ZERO = 0, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8*, int, u32*, float*, float*) {}
};

template <>
struct IDot<Q8_0> {
    enum { OK = 1, HALVES = 1, OFFSET = 0, ZERO = 0, SIGNED = 1 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const u8* blk = row + (i64)u * Q8_0::BLOCK_BYTES;
        a[0] = f16_to_f32(ld_u16(blk));
        b[0] = 0.0f;
        ld_bytes<32>(blk + 2, w);
    }
};

template <>
struct IDot<Q4_0> {
    enum { OK = 1, HALVES = 1, OFFSET = 0, ZERO = 8, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const u8* blk = row + (i64)u * Q4_0::BLOCK_BYTES;
        a[0] = f16_to_f32(ld_u16(blk));
        b[0] = 0.0f;
        u32 q[4];
        ld_bytes<16>(blk + 2, q);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = q[i] & 0x0F0F0F0Fu;
            w[i + 4] = (q[i] >> 4) & 0x0F0F0F0Fu;
        }
    }
};

template <>
struct IDot<Q4_1> {
    enum { OK = 1, HALVES = 1, OFFSET = 1, ZERO = 0, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const u8* blk = row + (i64)u * Q4_1::BLOCK_BYTES;
        a[0] = f16_to_f32(ld_u16(blk));
        b[0] = f16_to_f32(ld_u16(blk + 2));
        u32 q[4];
        ld_bytes_a4<16>(blk + 4, q);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = q[i] & 0x0F0F0F0Fu;
            w[i + 4] = (q[i] >> 4) & 0x0F0F0F0Fu;
        }
    }
};

// Sub-block s of a Q4_K or Q5_K super-block at blk: its scale a = d * sc and offset
// b = -dmin * m.
__device__ __forceinline__ void k4_affine(const u8* blk, int s, float* a, float* b) {
    const float d = f16_to_f32(ld_u16(blk));
    const float dmin = f16_to_f32(ld_u16(blk + 2));
    u32 sc[3];
    ld_bytes_a4<12>(blk + 4, sc);
    float scale, min;
    scale_min_k4(sc[0], sc[1], sc[2], s, &scale, &min);
    a[0] = d * scale;
    b[0] = -(dmin * min);
}

template <>
struct IDot<Q4_K> {
    enum { OK = 1, HALVES = 1, OFFSET = 1, ZERO = 0, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const int s = u & 7;
        const u8* blk = row + (i64)(u >> 3) * Q4_K::BLOCK_BYTES;
        k4_affine(blk, s, a, b);
        u32 q[8];
        ld_bytes_a16<32>(blk + 16 + 32 * (s >> 1), q);
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = (q[i] >> shift) & 0x0F0F0F0Fu;
    }
};

template <>
struct IDot<Q5_K> {
    enum { OK = 1, HALVES = 1, OFFSET = 1, ZERO = 0, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const int s = u & 7;
        const u8* blk = row + (i64)(u >> 3) * Q5_K::BLOCK_BYTES;
        k4_affine(blk, s, a, b);
        u32 qh[8], q[8];
        ld_bytes_a16<32>(blk + 16, qh);
        ld_bytes_a16<32>(blk + 48 + 32 * (s >> 1), q);
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = ((q[i] >> shift) & 0x0F0F0F0Fu) | (((qh[i] >> s) & 0x01010101u) << 4);
    }
};

template <>
struct IDot<Q6_K> {
    enum { OK = 1, HALVES = 2, OFFSET = 0, ZERO = 32, SIGNED = 0 };
    static __device__ __forceinline__ void unit_i(const u8* row, int u, u32* w, float* a, float* b) {
        const int s = u & 7, n = s >> 2, k = s & 3;
        const u8* blk = row + (i64)(u >> 3) * Q6_K::BLOCK_BYTES;
        const u32 sc = ld_u16(blk + 192 + 8 * n + 2 * k);
        const float d = f16_to_f32(ld_u16(blk + 208));
        a[0] = d * (float)(i8)(sc & 0xff);
        a[1] = d * (float)(i8)(sc >> 8);
        b[0] = 0.0f;
        u32 ql[8], qh[8];
        ld_bytes<32>(blk + 64 * n + 32 * (k & 1), ql);
        ld_bytes<32>(blk + 128 + 32 * n, qh);
        const int lshift = 4 * (k >> 1), hshift = 2 * k;
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = ((ql[i] >> lshift) & 0x0F0F0F0Fu) | (((qh[i] >> hshift) & 0x03030303u) << 4);
    }
};

// ---- Units for the f32 dot products of matmul_gemv (several tokens): exact small integers
// plus per-unit affine terms. Dot<F>::unit_q(row, u, q, a, b) gives element k of unit u as
// a[k / (UNIT / HALVES)] * q[k] (+ b[0] when OFFSET), so a GEMV sums q * x per half in f32
// and scales once per unit (and adds b * sum(x)) instead of scaling every element. The
// general case is `unit` itself (a = 1); a format with integer units (IDot) decodes each
// byte with one permute and one add.
template <class F, bool I = IDot<F>::OK>
struct Dot {
    enum { UNIT = F::UNIT, HALVES = 1, OFFSET = 0 };
    static __device__ __forceinline__ void unit_q(const u8* row, int u, float* q, float* a, float* b) {
        F::unit(row, u, q);
        a[0] = 1.0f;
        b[0] = 0.0f;
    }
};

// Byte k (0..3) of v as a float, minus `bias` - 2^23: the byte becomes the low mantissa bits
// of 2^23 (one permute), and the subtraction is exact.
__device__ __forceinline__ float byte_f(u32 v, int k, float bias) {
    return __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7440 + k)) - bias;
}

template <class F>
struct Dot<F, true> {
    typedef IDot<F> I;
    enum { UNIT = 32, HALVES = I::HALVES, OFFSET = I::OFFSET };
    static __device__ __forceinline__ void unit_q(const u8* row, int u, float* q, float* a, float* b) {
        u32 w[8];
        I::unit_i(row, u, w, a, b);
        // Signed bytes + 128 are unsigned; the bias takes the 128 and ZERO back out.
        const float bias = 8388608.0f + (I::SIGNED ? 128.0f : 0.0f) + (float)I::ZERO;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const u32 v = I::SIGNED ? w[i] ^ 0x80808080u : w[i];
#pragma unroll
            for (int k = 0; k < 4; k++) q[4 * i + k] = byte_f(v, k, bias);
        }
    }
};
