// rms_norm: out = x / sqrt(mean(x^2) + eps) * w per row of `dim`, in f32 as Hugging Face
// computes it; w in F32/F16/BF16 (-DFMT). One block per row, four floats per load when dim
// allows (rows then start 16-byte aligned); out may alias x (each thread rereads only what it
// writes, after the reduction's barriers).
// add_rms_norm: x += y, then out = rms_norm(x) * w, in one pass: the residual add that ends a
// block of the layer fused with the norm that starts the next (a decode step has two per
// layer; each launch saved is a launch gap saved). The same f32 operations as add followed
// by rms_norm, so results are identical.
#include "quant.cuh"

typedef FMT Fmt;

// One row: with y, x += y first (written back); then out = x * inv_rms * w.
__device__ __forceinline__ void norm_row(float* xr, const float* yr, const u8* __restrict__ w, float* o, int dim,
                                         float eps) {
    __shared__ float scratch[32];
    const bool vec = dim % 4 == 0;
    float ss = 0.0f;
    if (vec) {
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            float4 v = ((const float4*)xr)[i];
            if (yr) {
                const float4 u = ((const float4*)yr)[i];
                v.x += u.x;
                v.y += u.y;
                v.z += u.z;
                v.w += u.w;
                ((float4*)xr)[i] = v;
            }
            ss = fmaf(v.x, v.x, ss);
            ss = fmaf(v.y, v.y, ss);
            ss = fmaf(v.z, v.z, ss);
            ss = fmaf(v.w, v.w, ss);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float v = xr[i];
            if (yr) {
                v += yr[i];
                xr[i] = v;
            }
            ss = fmaf(v, v, ss);
        }
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

// x is not written without y (the cast only shares norm_row).
extern "C" __global__ void rms_norm(const float* x, const u8* __restrict__ w, float* out, int dim, float eps) {
    pdl_begin();
    const i64 r = blockIdx.x;
    norm_row((float*)x + r * dim, nullptr, w, out + r * dim, dim, eps);
}

extern "C" __global__ void add_rms_norm(float* x, const float* y, const u8* __restrict__ w, float* out, int dim,
                                        float eps) {
    pdl_begin();
    const i64 r = blockIdx.x;
    norm_row(x + r * dim, y + r * dim, w, out + r * dim, dim, eps);
}
