// rope: rotates each head of x [t, heads * d] in place by angle pos[r] * inv_freq[i], with
// cos and sin scaled by `scale`. Pairs (2i, 2i + 1) when neox == 0 (GGUF llama), halves
// (i, i + d/2) when neox == 1 (Hugging Face rotate_half). The angle is an f32 product and
// sincosf is the accurate one, as transformers computes cos/sin in float32.
// Grid: x = row, y = head: heads of x, then kv_heads of k (the queries and keys of a step in
// one launch, rope_qk; kv_heads = 0 for one tensor); the positions come from device memory
// (set_step).
// rope_kv_write: rope_qk, and the rotated keys and the values stored into one layer of the
// cache as kv_write stores them (kv_write.cu): one launch where decode had two.
#include "common.cuh"

// Rotates head xh (d floats) at position p; with kc, also stores the result there as f16.
__device__ __forceinline__ void rope_head(float* xh, const float* __restrict__ inv_freq, float p, int d, float scale,
                                          int neox, u16* kc) {
    const int half = d / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const int i0 = neox ? i : 2 * i;
        const int i1 = neox ? i + half : 2 * i + 1;
        float c, s, y0, y1;
        rope_cs(p, inv_freq[i], scale, c, s);
        rope_apply(xh[i0], xh[i1], c, s, y0, y1);
        xh[i0] = y0;
        xh[i1] = y1;
        if (kc) {
            kc[i0] = f32_to_f16(y0);
            kc[i1] = f32_to_f16(y1);
        }
    }
}

extern "C" __global__ void rope(float* __restrict__ x, float* __restrict__ k, const float* __restrict__ inv_freq,
                                const u32* __restrict__ pos, int heads, int kv_heads, int d, float scale, int neox) {
    pdl_begin();
    const int hy = blockIdx.y;
    float* xh = hy < heads ? x + ((i64)blockIdx.x * heads + hy) * d : k + ((i64)blockIdx.x * kv_heads + hy - heads) * d;
    rope_head(xh, inv_freq, (float)pos[blockIdx.x], d, scale, neox, nullptr);
}

// Cache layout per layer as in kv_write.cu: [kv_heads][max_ctx][d] f16; a position past the
// cache is not stored (the host refuses it first).
extern "C" __global__ void rope_kv_write(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v,
                                         const float* __restrict__ inv_freq, const u32* __restrict__ pos, int heads,
                                         int kv_heads, int d, float scale, int neox, u16* __restrict__ kc,
                                         u16* __restrict__ vc, int max_ctx) {
    pdl_begin();
    const int hy = blockIdx.y;
    const u32 p = pos[blockIdx.x];
    if (hy < heads) {
        rope_head(q + ((i64)blockIdx.x * heads + hy) * d, inv_freq, (float)p, d, scale, neox, nullptr);
        return;
    }
    const int h = hy - heads;
    const i64 src = ((i64)blockIdx.x * kv_heads + h) * d;
    const bool store = p < (u32)max_ctx;
    const i64 dst = ((i64)h * max_ctx + p) * d;
    rope_head(k + src, inv_freq, (float)p, d, scale, neox, store ? kc + dst : nullptr);
    if (store)
        for (int c = threadIdx.x; c < d; c += blockDim.x) vc[dst + c] = f32_to_f16(v[src + c]);
}
