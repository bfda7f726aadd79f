// argmax: the index of the largest of x[0, n) into out[0] (u32), the first one on ties; a
// NaN never wins, and all-NaN gives 0, as sample::argmax (the reference) does. Greedy
// decoding then reads back 4 bytes instead of a vocabulary of logits. One block (the
// logits were just written, so they come from L2), float4 loads when n % 4 == 0.
#include "common.cuh"

#define NONE 0x7fffffff
#define R 8

// The better of two candidates: the larger value, the lower index between equals.
__device__ __forceinline__ void better(float& v, int& i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

extern "C" __global__ void argmax(const float* __restrict__ x, int n, u32* __restrict__ out) {
    __shared__ float sv[32];
    __shared__ int si[32];
    pdl_begin();
    float v = -INFINITY;
    int at = NONE;
    // R loads in flight per thread before the first comparison: one at a time left 31 round
    // trips to L2 in a row for Llama 3's vocabulary. The pick is the same in any order.
    const int n4 = n % 4 == 0 ? n / 4 : 0, step = R * blockDim.x;
    for (int base = 0; base < n4; base += step) {
        float4 q[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int j = base + r * blockDim.x + threadIdx.x;
            if (j < n4) q[r] = __ldg((const float4*)x + j);
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int j = base + r * blockDim.x + threadIdx.x;
            if (j < n4) {
                better(v, at, q[r].x, 4 * j);
                better(v, at, q[r].y, 4 * j + 1);
                better(v, at, q[r].z, 4 * j + 2);
                better(v, at, q[r].w, 4 * j + 3);
            }
        }
    }
    for (int base = 0; n4 == 0 && base < n; base += step) {
        float q[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int j = base + r * blockDim.x + threadIdx.x;
            if (j < n) q[r] = __ldg(x + j);
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int j = base + r * blockDim.x + threadIdx.x;
            if (j < n) better(v, at, q[r], j);
        }
    }
    // A NaN compares false both ways, so it was never taken; -inf can be (at < NONE).
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(FULL_MASK, v, o);
        const int i2 = __shfl_xor_sync(FULL_MASK, at, o);
        better(v, at, v2, i2);
    }
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = at;
    }
    __syncthreads();
    if (warp != 0) return;
    v = lane < blockDim.x / WARP ? sv[lane] : -INFINITY;
    at = lane < blockDim.x / WARP ? si[lane] : NONE;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(FULL_MASK, v, o);
        const int i2 = __shfl_xor_sync(FULL_MASK, at, o);
        better(v, at, v2, i2);
    }
    if (lane == 0) out[0] = at == NONE ? 0u : (u32)at;
}
