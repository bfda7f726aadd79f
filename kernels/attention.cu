// attention: causal grouped-query attention of the step's queries over one layer of the KV
// cache (f16, [kv_heads][max_ctx][d], written by kv_write). Row r sees positions
// 0..=pos[r]; query head h reads kv head h / group.
//
// Flash-style: keys and values stream through shared memory in tiles of BK positions with
// an online softmax (running max m, sum l, unnormalized output o), so no t x t matrix exists.
// A block owns one kv head and `rpb` consecutive rows; its warps are (row, query head of the
// group) pairs, so the group's query heads share every K/V tile. A warp scores one tile
// lane-per-key (lane j: q . k_j, K rows padded to d + 1 floats against bank conflicts), then
// accumulates V with lanes over dimensions.
//
// Split over the key range (flash-decoding) when nsplit > 1: block x = tile * nsplit + split
// covers a slice of the keys and writes its (o, m, l) to `part`; attention_combine merges the
// slices. nsplit is fixed by the cache, the slice bounds are computed here from the
// positions, so a decode step always launches the same grid (CUDA-graph replayable).
#include "common.cuh"

#define BK 32
#define MAX_D 256

extern "C" __global__ void attention(const float* __restrict__ q, const u16* __restrict__ kc,
                                     const u16* __restrict__ vc, const u32* __restrict__ pos,
                                     float* __restrict__ out, float* __restrict__ part, int t, int heads,
                                     int kv_heads, int d, int max_ctx, int rpb, int nsplit, float scale) {
    extern __shared__ float smem[];
    __shared__ int kmax_s;
    const int group = heads / kv_heads;
    const int nwarps = blockDim.x / WARP;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const int tile = blockIdx.x / nsplit, split = blockIdx.x % nsplit;
    const int kvh = blockIdx.y;
    const int g = warp % group, r = warp / group;
    const int row = tile * rpb + r;
    const bool active = row < t;
    const int qh = kvh * group + g;
    const int ks = d + 1;
    float* Ks = smem;            // BK x (d + 1)
    float* Vs = Ks + BK * ks;    // BK x d
    float* Qs = Vs + BK * d;     // nwarps x d
    (void)nwarps;

    if (threadIdx.x == 0) {
        u32 mx = 0;
        for (int i = 0; i < rpb; i++) {
            const int rr = tile * rpb + i;
            if (rr < t) mx = max(mx, pos[rr] + 1);
        }
        kmax_s = (int)min(mx, (u32)max_ctx);
    }
    const int my_pos = active ? (int)min(pos[row], (u32)max_ctx - 1) : -1;
    for (int c = lane; c < d; c += WARP) Qs[warp * d + c] = active ? q[((i64)row * heads + qh) * d + c] : 0.0f;
    __syncthreads();

    const int kmax = kmax_s;
    const int chunk = ((kmax + nsplit - 1) / nsplit + BK - 1) / BK * BK;
    const int k0 = split * chunk;
    const int k1 = min(kmax, k0 + chunk);
    const u16* kb_ptr = kc + (i64)kvh * max_ctx * d;
    const u16* vb_ptr = vc + (i64)kvh * max_ctx * d;
    const float* qv = Qs + warp * d;

    float m = -INFINITY, l = 0.0f;
    float o[MAX_D / WARP];
#pragma unroll
    for (int i = 0; i < MAX_D / WARP; i++) o[i] = 0.0f;

    for (int kb = k0; kb < k1; kb += BK) {
        const int nk = min(BK, k1 - kb);
        __syncthreads();
        if ((d & 7) == 0) {
            const int vpr = d / 8;  // 16-byte vectors per row
            for (int idx = threadIdx.x; idx < nk * vpr; idx += blockDim.x) {
                const int j = idx / vpr, c = (idx % vpr) * 8;
                const uint4 kv = *(const uint4*)(kb_ptr + (i64)(kb + j) * d + c);
                const uint4 vv = *(const uint4*)(vb_ptr + (i64)(kb + j) * d + c);
                const u32 kw[4] = {kv.x, kv.y, kv.z, kv.w};
                const u32 vw[4] = {vv.x, vv.y, vv.z, vv.w};
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    Ks[j * ks + c + 2 * e] = f16_to_f32((u16)(kw[e] & 0xffff));
                    Ks[j * ks + c + 2 * e + 1] = f16_to_f32((u16)(kw[e] >> 16));
                    Vs[j * d + c + 2 * e] = f16_to_f32((u16)(vw[e] & 0xffff));
                    Vs[j * d + c + 2 * e + 1] = f16_to_f32((u16)(vw[e] >> 16));
                }
            }
        } else {
            for (int idx = threadIdx.x; idx < nk * d; idx += blockDim.x) {
                const int j = idx / d, c = idx % d;
                Ks[j * ks + c] = f16_to_f32(kb_ptr[(i64)(kb + j) * d + c]);
                Vs[j * d + c] = f16_to_f32(vb_ptr[(i64)(kb + j) * d + c]);
            }
        }
        __syncthreads();
        if (!active) continue;

        float s = -INFINITY;
        if (lane < nk && kb + lane <= my_pos) {
            const float* kr = Ks + lane * ks;
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc = fmaf(qv[c], kr[c], acc);
            s = acc * scale;
        }
        const float mn = fmaxf(m, warp_max(s));
        if (mn == -INFINITY) continue;  // nothing visible yet (uniform over the warp)
        const float p = s == -INFINITY ? 0.0f : expf(s - mn);
        const float corr = expf(m - mn);
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int i = 0; i < MAX_D / WARP; i++) o[i] *= corr;
        for (int j = 0; j < nk; j++) {
            const float pj = __shfl_sync(FULL_MASK, p, j);
#pragma unroll
            for (int i = 0; i < MAX_D / WARP; i++) {
                const int c = lane + WARP * i;
                if (c < d) o[i] = fmaf(pj, Vs[j * d + c], o[i]);
            }
        }
        m = mn;
    }

    if (!active) return;
    if (nsplit == 1) {
        // l > 0 always: a row sees at least its own position. NaN if not (bad positions).
        const float inv = l > 0.0f ? 1.0f / l : NAN_F32;
        float* dst = out + ((i64)row * heads + qh) * d;
#pragma unroll
        for (int i = 0; i < MAX_D / WARP; i++) {
            const int c = lane + WARP * i;
            if (c < d) dst[c] = o[i] * inv;
        }
    } else {
        float* pp = part + (((i64)row * heads + qh) * nsplit + split) * (d + 2);
#pragma unroll
        for (int i = 0; i < MAX_D / WARP; i++) {
            const int c = lane + WARP * i;
            if (c < d) pp[c] = o[i];
        }
        if (lane == 0) {
            pp[d] = m;
            pp[d + 1] = l;
        }
    }
}

// Merges the nsplit slices of each (row, query head): out = sum_s o_s e^(m_s - M) /
// sum_s l_s e^(m_s - M). Grid: x = row, y = query head.
extern "C" __global__ void attention_combine(const float* __restrict__ part, float* __restrict__ out, int heads,
                                             int d, int nsplit) {
    const float* pp = part + ((i64)blockIdx.x * heads + blockIdx.y) * nsplit * (d + 2);
    float mx = -INFINITY;
    for (int s = 0; s < nsplit; s++) mx = fmaxf(mx, pp[s * (d + 2) + d]);
    float l = 0.0f;
    for (int s = 0; s < nsplit; s++) {
        const float ms = pp[s * (d + 2) + d];
        if (ms != -INFINITY) l += pp[s * (d + 2) + d + 1] * expf(ms - mx);
    }
    const float inv = l > 0.0f ? 1.0f / l : NAN_F32;
    float* dst = out + ((i64)blockIdx.x * heads + blockIdx.y) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < nsplit; s++) {
            const float ms = pp[s * (d + 2) + d];
            if (ms != -INFINITY) acc += pp[s * (d + 2) + c] * expf(ms - mx);
        }
        dst[c] = acc * inv;
    }
}
