// matmul of an I8 weight (compressed-tensors W8A8): int8 weights with a per-row scale (and
// zero point where asymmetric), activations quantized per token at run time (dynamic), int32
// accumulation:  out[t, r] = (sum_c qx[t, c] * (w[r, c] - z[r])) * sx[t] * s[r].
// -DSFMT=<dtype of the scales> (F32/F16/BF16); -DVEC16 when rows are whole 16-byte vectors
// (else 4-byte words: columns must be a multiple of 4).
//
// matmul_i8_quantize: per token, sx = max|x| / 127 and qx = round-half-even(x / sx), as
//   compressed-tensors and vLLM do; also sum(qx) for the zero points. This is the formula of
//   scripts/golden/make_golden.py's w8a8-tiny-act8 to the operation (f32 max, f32 division by
//   127, IEEE f32 division x / sx as NVRTC compiles it by default, round half to even, clamp).
//   That golden cannot be met to 5e-3 by any engine that is not bit-identical to torch before
//   each quantization: a value near a rounding boundary moves a whole int8 step, and later
//   layers amplify it. Measured with transformers on the CPU: rounding K and V to f16 (this
//   backend's KV cache) alone moves the act8 logits by up to 5.0e-2, relative noise of 1e-6
//   on K and V by 2.4e-2; float activations differ from act8 by 5.2e-2.
// matmul_i8_gemv: decode (t <= MAX_T): a warp owns NR rows, lanes walk the row in words,
//   dp4a products, one pass over the weight.
// matmul_i8_scale: prefill: cuBLASLt's int32 products (in place in `out`) to f32.
#include "quant.cuh"

typedef SFMT Sfmt;

#define MAX_T 8
#define NR 2

// One block per token row.
extern "C" __global__ void matmul_i8_quantize(const float* __restrict__ x, i8* __restrict__ qx,
                                              float* __restrict__ sx, int* __restrict__ sq, int cols) {
    pdl_begin();
    __shared__ float scratch[32];
    __shared__ int iscratch[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    i8* qr = qx + (i64)blockIdx.x * cols;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) amax = fmaxf(amax, fabsf(xr[i]));
    amax = warp_max(amax);
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
    if (lane == 0) scratch[warp] = amax;
    __syncthreads();
    amax = warp_max(lane < nwarps ? scratch[lane] : 0.0f);
    const float s = amax / 127.0f;
    int sum = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        int q = 0;
        if (s > 0.0f) q = max(-128, min(127, __float2int_rn(xr[i] / s)));
        qr[i] = (i8)q;
        sum += q;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(FULL_MASK, sum, o);
    if (lane == 0) iscratch[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int w = 0; w < nwarps; w++) total += iscratch[w];
        sx[blockIdx.x] = s;
        sq[blockIdx.x] = total;
    }
}

// W points at the view's first row; scale and zero (null when symmetric) at its first row.
// (256, 1): room for the registers of eight loads in flight (see matmul.cu).
extern "C" __global__ void __launch_bounds__(256, 1)
    matmul_i8_gemv(const u8* __restrict__ W, i64 row_bytes, const i8* __restrict__ qx,
                   const float* __restrict__ sx, const int* __restrict__ sq, const u8* __restrict__ scale,
                   const i8* __restrict__ zero, float* __restrict__ out, int rows, int cols, int T) {
    pdl_begin();
    const int lane = threadIdx.x % WARP;
    const int r0 = (blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP) * NR;
    if (r0 >= rows) return;
    int acc[NR][MAX_T];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < MAX_T; t++) acc[r][t] = 0;
#ifdef VEC16
    // Four 16-byte vectors per lane and row loaded before their products (8 loads in flight),
    // then the rest of the row one vector per lane.
    const int nunits = cols / 16;
    int u0 = 0;
    for (; u0 + 4 * WARP <= nunits; u0 += 4 * WARP) {
        uint4 w[NR][4];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                w[r][i] = r0 + r < rows ? __ldg((const uint4*)(W + (i64)(r0 + r) * row_bytes) + u0 + WARP * i + lane)
                                        : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t < T) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const uint4 xv = ((const uint4*)(qx + (i64)t * cols))[u0 + WARP * i + lane];
#pragma unroll
                    for (int r = 0; r < NR; r++) {
                        int a = acc[r][t];
                        a = dp4a(w[r][i].x, xv.x, a);
                        a = dp4a(w[r][i].y, xv.y, a);
                        a = dp4a(w[r][i].z, xv.z, a);
                        acc[r][t] = dp4a(w[r][i].w, xv.w, a);
                    }
                }
            }
        }
    }
    for (int u = u0 + lane; u < nunits; u += WARP) {
        uint4 w[NR];
#pragma unroll
        for (int r = 0; r < NR; r++)
            w[r] = r0 + r < rows ? ((const uint4*)(W + (i64)(r0 + r) * row_bytes))[u] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t < T) {
                const uint4 xv = ((const uint4*)(qx + (i64)t * cols))[u];
#pragma unroll
                for (int r = 0; r < NR; r++) {
                    int a = acc[r][t];
                    a = dp4a(w[r].x, xv.x, a);
                    a = dp4a(w[r].y, xv.y, a);
                    a = dp4a(w[r].z, xv.z, a);
                    acc[r][t] = dp4a(w[r].w, xv.w, a);
                }
            }
        }
    }
#else
    const int nunits = cols / 4;
#pragma unroll 4
    for (int u = lane; u < nunits; u += WARP) {
        u32 w[NR];
#pragma unroll
        for (int r = 0; r < NR; r++) w[r] = r0 + r < rows ? ((const u32*)(W + (i64)(r0 + r) * row_bytes))[u] : 0u;
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t < T) {
                const u32 xv = ((const u32*)(qx + (i64)t * cols))[u];
#pragma unroll
                for (int r = 0; r < NR; r++) acc[r][t] = dp4a(w[r], xv, acc[r][t]);
            }
        }
    }
#endif
#pragma unroll
    for (int r = 0; r < NR; r++) {
        const int row = r0 + r;
        const float s = row < rows ? Sfmt::get(scale, row) : 0.0f;
        const int z = zero != nullptr && row < rows ? (int)zero[row] : 0;
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t < T) {
                int a = acc[r][t];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(FULL_MASK, a, o);
                if (lane == 0 && row < rows) out[(i64)t * rows + row] = (float)(a - z * sq[t]) * sx[t] * s;
            }
        }
    }
}

// out[t, r] holds cuBLASLt's int32 sum; replaced in place by its f32 value.
extern "C" __global__ void matmul_i8_scale(float* __restrict__ out, const float* __restrict__ sx,
                                           const int* __restrict__ sq, const u8* __restrict__ scale,
                                           const i8* __restrict__ zero, int rows, i64 total) {
    pdl_begin();
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const int t = (int)(i / rows), r = (int)(i % rows);
        const int a = __float_as_int(out[i]);
        const int z = zero != nullptr ? (int)zero[r] : 0;
        out[i] = (float)(a - z * sq[t]) * sx[t] * Sfmt::get(scale, r);
    }
}
