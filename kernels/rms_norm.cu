// rms_norm: out = x / sqrt(mean(x^2) + eps) * w per row of `dim`, in f32 as Hugging Face
// computes it; w in F32/F16/BF16 (-DFMT). One block per row; out may alias x (each thread
// rereads only what it writes, after the reduction's barriers).
#include "quant.cuh"

typedef FMT Fmt;

extern "C" __global__ void rms_norm(const float* x, const u8* __restrict__ w, float* out, int dim, float eps) {
    __shared__ float scratch[32];
    const float* xr = x + (i64)blockIdx.x * dim;
    float* o = out + (i64)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i];
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * Fmt::get(w, i);
}
