// add_bias: x[r, i] += bias[i] for n columns, bias in F32/F16/BF16 (-DFMT).
#include "quant.cuh"

typedef FMT Fmt;

extern "C" __global__ void add_bias(float* __restrict__ x, const u8* __restrict__ bias, i64 total, int n) {
    pdl_begin();
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
        x[i] += Fmt::get(bias, i % n);
}
