// matmul: out[t, rows] = x[t, cols] . W[rows, cols]^T, W in its file format (quant.cuh).
// Compiled once per weight format: -DFMT=<DType> -DNR=<rows per warp>, plus -DPLAIN for
// F32/F16/BF16 and -DSCALAR for plain rows that are not 16-byte multiples.
//
// matmul_gemv: the decode product (t <= MAX_T). A warp owns NR rows; its lanes walk the row
// in units (a 16-byte vector of a plain type, a 32-element block or sub-block of a GGUF
// type), consecutive lanes on consecutive units, so each row is read once, coalesced, and
// each unit is dequantized once for all t tokens. f32 accumulation, warp-shuffle reduction.
// matmul_dequant: a band of rows of a GGUF weight as f16, the per-call scratch that feeds
// cuBLASLt for prefill (never stored). matmul_cast: activations to f16/bf16 for cuBLASLt.
#include "quant.cuh"

typedef FMT Fmt;

#define MAX_T 8

#ifdef SCALAR
#define UNITS 1
#else
#define UNITS Fmt::UNIT
#endif

__device__ __forceinline__ void load_w(const u8* row, int u, float* w) {
#ifdef SCALAR
    w[0] = Fmt::get(row, u);
#else
    Fmt::unit(row, u, w);
#endif
}

// U consecutive floats; 16-byte loads when U is a multiple of 4 (x rows are then 16-byte
// aligned: cols is a multiple of U and buffers start 256-byte aligned).
template <int U>
__device__ __forceinline__ void load_x(const float* p, float* v) {
    if (U % 4 == 0) {
#pragma unroll
        for (int i = 0; i < U / 4; i++) {
            const float4 f = ((const float4*)p)[i];
            v[4 * i] = f.x;
            v[4 * i + 1] = f.y;
            v[4 * i + 2] = f.z;
            v[4 * i + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < U; i++) v[i] = p[i];
    }
}

extern "C" __global__ void __launch_bounds__(256) matmul_gemv(const u8* __restrict__ W, i64 row_bytes,
                                                              const float* __restrict__ x,
                                                              float* __restrict__ out, int rows, int cols,
                                                              int T) {
    const int lane = threadIdx.x % WARP;
    const int r0 = (blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP) * NR;
    if (r0 >= rows) return;
    float acc[NR][MAX_T];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < MAX_T; t++) acc[r][t] = 0.0f;

    const int nunits = cols / UNITS;
    // Plain types unrolled so that several 16-byte loads are in flight before their FMAs
    // (a GGUF unit is already ~20-50 bytes per lane).
#pragma unroll(UNITS >= 32 ? 1 : 4)
    for (int u = lane; u < nunits; u += WARP) {
        float w[NR][UNITS];
#pragma unroll
        for (int r = 0; r < NR; r++) {
            if (r0 + r < rows) {
                load_w(W + (i64)(r0 + r) * row_bytes, u, w[r]);
            } else {
#pragma unroll
                for (int k = 0; k < UNITS; k++) w[r][k] = 0.0f;
            }
        }
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t < T) {
                float xv[UNITS];
                load_x<UNITS>(x + (i64)t * cols + (i64)u * UNITS, xv);
#pragma unroll
                for (int r = 0; r < NR; r++)
#pragma unroll
                    for (int k = 0; k < UNITS; k++) acc[r][t] = fmaf(w[r][k], xv[k], acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MAX_T; t++) {
        if (t < T) {
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const float s = warp_sum(acc[r][t]);
                if (lane == 0 && r0 + r < rows) out[(i64)t * rows + r0 + r] = s;
            }
        }
    }
}

#ifndef PLAIN
// out[r, :] (f16, row-major [rows, cols]) = W[row0 + r, :] for r < rows; W points at row0.
extern "C" __global__ void matmul_dequant(const u8* __restrict__ W, i64 row_bytes, u16* __restrict__ out,
                                          int rows, int cols) {
    const i64 per_row = cols / Fmt::UNIT;
    const i64 total = (i64)rows * per_row;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = i / per_row;
        const int u = (int)(i - r * per_row);
        float w[Fmt::UNIT];
        Fmt::unit(W + r * row_bytes, u, w);
        // UNIT is 32: 64 bytes, 16-byte aligned because cols is a multiple of 32.
        uint4* o = (uint4*)(out + r * cols + (i64)u * Fmt::UNIT);
#pragma unroll
        for (int v = 0; v < Fmt::UNIT / 8; v++) {
            u32 p[4];
#pragma unroll
            for (int e = 0; e < 4; e++)
                p[e] = (u32)f32_to_f16(w[8 * v + 2 * e]) | ((u32)f32_to_f16(w[8 * v + 2 * e + 1]) << 16);
            o[v] = make_uint4(p[0], p[1], p[2], p[3]);
        }
    }
}
#endif

// y = x as bf16 for BF16 weights, f16 otherwise (the operand type cuBLASLt multiplies).
extern "C" __global__ void matmul_cast(const float* __restrict__ x, u16* __restrict__ y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
#ifdef CAST_BF16
        y[i] = f32_to_bf16(x[i]);
#else
        y[i] = f32_to_f16(x[i]);
#endif
    }
}
