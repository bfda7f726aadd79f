// add: x += y (the residual connection). Four floats per step (buffers start 256-byte
// aligned), then the last n % 4 one by one.
#include "common.cuh"

extern "C" __global__ void add(float* x, const float* y, i64 n) {
    pdl_begin();
    const i64 stride = (i64)gridDim.x * blockDim.x, first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 n4 = n / 4;
    for (i64 i = first; i < n4; i += stride) {
        float4 a = ((const float4*)x)[i];
        const float4 b = ((const float4*)y)[i];
        a.x += b.x;
        a.y += b.y;
        a.z += b.z;
        a.w += b.w;
        ((float4*)x)[i] = a;
    }
    for (i64 i = 4 * n4 + first; i < n; i += stride) x[i] += y[i];
}
