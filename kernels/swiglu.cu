// swiglu: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) with the accurate expf.
#include "common.cuh"

extern "C" __global__ void swiglu(const float* gate, const float* up, float* out, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
