// Shared by every kernel in kernels/: integer types, f16/bf16 conversions and warp
// reductions. The kernels include no CUDA header (NVRTC needs no include path): f16 and bf16
// are carried as raw 16-bit patterns and converted with PTX instructions.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

#define WARP 32
#define FULL_MASK 0xffffffffu
#define INFINITY __int_as_float(0x7f800000)
#define NAN_F32 __int_as_float(0x7fc00000)

__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }

__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Programmatic dependent launch (sm_90 and later): the host lets each kernel launch before
// the one ahead of it on the stream has finished, which hides the launch gap between the
// many small kernels of a decode step. Every kernel calls pdl_begin before it writes
// anything another kernel touches or reads what the kernel ahead may write: it waits until
// the kernel ahead has completed (and so, transitively, every earlier one: each of them
// waited too, which is why a kernel that reads nothing of its predecessor's must still call
// it), then lets the next one launch. So when a kernel starts, all but the one ahead have
// finished: what they wrote may be read before the wait (the GGUF GEMV's weights,
// rope_attention's positions and cached keys and values). A no-op below sm_90 and in
// launches without the attribute.
__device__ __forceinline__ void pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// rope's factors for angle p * f, scaled by `scale`, and (x0, x1) rotated by them: rope.cu
// and the fused rope_attention (attention.cu) share them, so both give the same bits (each
// product rounded on its own, not left to the compiler's contraction).
__device__ __forceinline__ void rope_cs(float p, float f, float scale, float& c, float& s) {
    sincosf(__fmul_rn(p, f), &s, &c);
    c = __fmul_rn(c, scale);
    s = __fmul_rn(s, scale);
}

__device__ __forceinline__ void rope_apply(float x0, float x1, float c, float s, float& y0, float& y1) {
    y0 = fmaf(x0, c, -__fmul_rn(x1, s));
    y1 = fmaf(x0, s, __fmul_rn(x1, c));
}

// silu(g) * up, silu(g) = g / (1 + exp(-g)) with the accurate expf: swiglu.cu and the
// fused gate/up matmul (matmul.cu) share it, so both give the same bits.
__device__ __forceinline__ float swiglu1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// c + the dot product of the four signed bytes of a and of b.
__device__ __forceinline__ int dp4a(u32 a, u32 b, int c) {
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int nwarps = blockDim.x / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// 2-byte aligned little-endian loads of GGUF block fields: GGUF blocks (Q4_0 is 18 bytes,
// Q6_K 210) are only 2-byte aligned, so wider loads are assembled from aligned words.
__device__ __forceinline__ u16 ld_u16(const u8* p) { return *(const u16*)p; }

__device__ __forceinline__ u32 ld_u32_a2(const u8* p) {
    const u16* q = (const u16*)p;
    return (u32)q[0] | ((u32)q[1] << 16);
}

// Loads N (a multiple of 4) bytes from any address into N/4 words: N/4 + 1 aligned 4-byte
// loads and funnel shifts (a shift of 0 when p is aligned), with no branch, so lanes whose
// blocks start at different alignments (18-byte Q4_0, 34-byte Q8_0 ...) do not diverge. Reads
// up to 3 bytes before p and after p + N, inside the same aligned words: device allocations of
// weights carry 16 bytes of padding so the last block's words exist.
template <int N>
__device__ __forceinline__ void ld_bytes(const u8* p, u32* out) {
    const u64 a = (u64)p;
    const u32* w = (const u32*)(a & ~(u64)3);
    const u32 sh = 8 * (u32)(a & 3);
    u32 prev = w[0];
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
        const u32 next = w[i + 1];
        out[i] = __funnelshift_r(prev, next, sh);
        prev = next;
    }
}

// Loads N (a multiple of 4) bytes from a 4-byte aligned address.
template <int N>
__device__ __forceinline__ void ld_bytes_a4(const u8* p, u32* out) {
#pragma unroll
    for (int i = 0; i < N / 4; i++) out[i] = ((const u32*)p)[i];
}

// Loads N bytes (a multiple of 16) from a 16-byte aligned address with 16-byte loads.
template <int N>
__device__ __forceinline__ void ld_bytes_a16(const u8* p, u32* out) {
    const uint4* v = (const uint4*)p;
#pragma unroll
    for (int i = 0; i < N / 16; i++) {
        const uint4 t = v[i];
        out[4 * i] = t.x;
        out[4 * i + 1] = t.y;
        out[4 * i + 2] = t.z;
        out[4 * i + 3] = t.w;
    }
}

// The float of a small unsigned integer (< 2^23), exactly, without an int-to-float
// conversion (a quarter-rate instruction): the integer becomes the mantissa of 2^23.
__device__ __forceinline__ float u2f(u32 v) { return __uint_as_float(0x4B000000u | v) - 8388608.0f; }

// Byte i (0..3) of word w.
__device__ __forceinline__ u32 byte_at(u32 w, int i) { return (w >> (8 * i)) & 0xff; }
