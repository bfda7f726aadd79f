// embedding: out[r, :] = table[ids[r], :] as f32, the table in its file format (quant.cuh).
// -DFMT=<DType>, -DPLAIN for F32/F16/BF16. Grid: x = row of the step, y = column chunks.
// An id outside the table writes NaN (the host checks ids before a direct launch; this
// catches a replayed graph fed a bad id).
#include "quant.cuh"

typedef FMT Fmt;

extern "C" __global__ void embedding(const u8* __restrict__ table, i64 row_bytes, const u32* __restrict__ ids,
                                     float* __restrict__ out, int cols, int vocab) {
    pdl_begin();
    const int r = blockIdx.x;
    const u32 id = ids[r];
    const bool ok = id < (u32)vocab;
    const u8* src = table + (i64)(ok ? id : 0) * row_bytes;
    float* o = out + (i64)r * cols;
    const float nan = NAN_F32;
#ifdef PLAIN
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < cols; i += gridDim.y * blockDim.x)
        o[i] = ok ? Fmt::get(src, i) : nan;
#else
    const int units = cols / Fmt::UNIT;
    for (int u = blockIdx.y * blockDim.x + threadIdx.x; u < units; u += gridDim.y * blockDim.x) {
        float w[Fmt::UNIT];
        if (ok) {
            Fmt::unit(src, u, w);
        } else {
#pragma unroll
            for (int k = 0; k < Fmt::UNIT; k++) w[k] = nan;
        }
        float4* dst = (float4*)(o + (i64)u * Fmt::UNIT);
#pragma unroll
        for (int k = 0; k < Fmt::UNIT / 4; k++) dst[k] = make_float4(w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]);
    }
#endif
}
