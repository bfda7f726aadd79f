// rms_norm: out = x / sqrt(mean(x^2) + eps) * w per row of `dim`, in f32 as Hugging Face
// computes it; w in F32/F16/BF16 (-DFMT). One block per row, four floats per load when dim
// allows (rows then start 16-byte aligned); out may alias x (each thread rereads only what it
// writes, after the reduction's barriers). In decode the norms of GGUF models ride in the
// following GEMV instead (FUSE_NORM in matmul.cu), and the residual adds in the GEMVs ahead.
#include "quant.cuh"

typedef FMT Fmt;

extern "C" __global__ void rms_norm(const float* x, const u8* __restrict__ w, float* out, int dim, float eps) {
    pdl_begin();
    __shared__ float scratch[32];
    const float* xr = x + (i64)blockIdx.x * dim;
    float* o = out + (i64)blockIdx.x * dim;
    const bool vec = dim % 4 == 0;
    float ss = 0.0f;
    if (vec) {
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            const float4 v = ((const float4*)xr)[i];
            ss = fmaf(v.x, v.x, ss);
            ss = fmaf(v.y, v.y, ss);
            ss = fmaf(v.z, v.z, ss);
            ss = fmaf(v.w, v.w, ss);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    }
    ss = block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float)dim + eps);
    if (vec) {
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            const float4 v = ((const float4*)xr)[i];
            ((float4*)o)[i] = make_float4(v.x * inv * Fmt::get(w, 4 * i), v.y * inv * Fmt::get(w, 4 * i + 1),
                                          v.z * inv * Fmt::get(w, 4 * i + 2), v.w * inv * Fmt::get(w, 4 * i + 3));
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * Fmt::get(w, i);
    }
}
