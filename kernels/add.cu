// add: x += y (the residual connection).
#include "common.cuh"

extern "C" __global__ void add(float* x, const float* y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) x[i] += y[i];
}
