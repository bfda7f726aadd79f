// swiglu: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) with the accurate expf. Four
// floats per step (buffers start 256-byte aligned; out may be gate), then the last n % 4.
#include "common.cuh"

extern "C" __global__ void swiglu(const float* gate, const float* up, float* out, i64 n) {
    pdl_begin();
    const i64 stride = (i64)gridDim.x * blockDim.x, first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 n4 = n / 4;
    for (i64 i = first; i < n4; i += stride) {
        const float4 g = ((const float4*)gate)[i];
        const float4 u = ((const float4*)up)[i];
        ((float4*)out)[i] = make_float4(swiglu1(g.x, u.x), swiglu1(g.y, u.y), swiglu1(g.z, u.z), swiglu1(g.w, u.w));
    }
    for (i64 i = 4 * n4 + first; i < n; i += stride) out[i] = swiglu1(gate[i], up[i]);
}
