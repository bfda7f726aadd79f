// kv_write: stores the step's keys and values ([t, kv_heads * d] f32) into one layer of the
// cache at their positions, as f16. Cache layout per layer: [kv_heads][max_ctx][d], so
// attention reads each head's keys contiguously. Grid: x = row, y = kv head. A position past
// the cache is skipped (the host refuses it before a direct launch).
#include "common.cuh"

extern "C" __global__ void kv_write(const float* __restrict__ k, const float* __restrict__ v, u16* __restrict__ kc,
                                    u16* __restrict__ vc, const u32* __restrict__ pos, int kv_heads, int d,
                                    int max_ctx) {
    pdl_begin();
    const u32 p = pos[blockIdx.x];
    if (p >= (u32)max_ctx) return;
    const i64 src = ((i64)blockIdx.x * kv_heads + blockIdx.y) * d;
    const i64 dst = ((i64)blockIdx.y * max_ctx + p) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        kc[dst + c] = f32_to_f16(k[src + c]);
        vc[dst + c] = f32_to_f16(v[src + c]);
    }
}
