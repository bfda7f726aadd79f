// rope: rotates each head of x [t, heads * d] in place by angle pos[r] * inv_freq[i], with
// cos and sin scaled by `scale`. Pairs (2i, 2i + 1) when neox == 0 (GGUF llama), halves
// (i, i + d/2) when neox == 1 (Hugging Face rotate_half). The angle is an f32 product and
// sincosf is the accurate one, as transformers computes cos/sin in float32.
// Grid: x = row, y = head: heads of x, then kv_heads of k (the queries and keys of a step in
// one launch, rope_qk; kv_heads = 0 for one tensor); the positions come from device memory
// (set_step).
#include "common.cuh"

extern "C" __global__ void rope(float* __restrict__ x, float* __restrict__ k, const float* __restrict__ inv_freq,
                                const u32* __restrict__ pos, int heads, int kv_heads, int d, float scale, int neox) {
    pdl_begin();
    const int hy = blockIdx.y;
    float* xh = hy < heads ? x + ((i64)blockIdx.x * heads + hy) * d : k + ((i64)blockIdx.x * kv_heads + hy - heads) * d;
    const float p = (float)pos[blockIdx.x];
    const int half = d / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        c *= scale;
        s *= scale;
        const int i0 = neox ? i : 2 * i;
        const int i1 = neox ? i + half : 2 * i + 1;
        const float x0 = xh[i0], x1 = xh[i1];
        xh[i0] = x0 * c - x1 * s;
        xh[i1] = x0 * s + x1 * c;
    }
}
