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
// slices. nsplit is fixed per cache from the device's SM count and the kv heads (never from
// the cache length), the slice bounds are computed here from the positions, so a decode step
// always launches the same grid (CUDA-graph replayable). Decode rows of the head sizes with
// an attention_mma variant go to attention_decode instead (below), which streams K and V
// straight from the cache with many loads in flight.
#include "common.cuh"

#define BK 32
#define MAX_D 256

extern "C" __global__ void attention(const float* __restrict__ q, const u16* __restrict__ kc,
                                     const u16* __restrict__ vc, const u32* __restrict__ pos,
                                     float* __restrict__ out, float* __restrict__ part, int t, int heads,
                                     int kv_heads, int d, int max_ctx, int rpb, int nsplit, float scale) {
    pdl_begin();
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
    // A position past the cache has no keys: its output is NaN (the host refuses such
    // positions before a direct launch; this catches a replayed graph fed one).
    const bool bad = active && pos[row] >= (u32)max_ctx;
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
        const float inv = l > 0.0f && !bad ? 1.0f / l : NAN_F32;
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
            if (c < d) pp[c] = bad ? NAN_F32 : o[i];
        }
        if (lane == 0) {
            pp[d] = bad ? 0.0f : m;  // a NaN l and o make the combined row NaN
            pp[d + 1] = bad ? NAN_F32 : l;
        }
    }
}

// Merges the nsplit (<= 64) slices (o, m, l) of each (row, query head): out = sum_s o_s
// e^(m_s - M) / sum_s l_s e^(m_s - M). Grid: x = row, y = query head. Warp 0 takes the
// slices' m and l (a lane per slice) into w (their weights, then 1 / l), so each output is
// one pass of independent loads.
extern "C" __global__ void attention_combine(const float* __restrict__ part, float* __restrict__ out, int heads,
                                             int d, int nsplit) {
    pdl_begin();
    __shared__ float w[65];
    const int lane = threadIdx.x % WARP;
    const i64 rh = (i64)blockIdx.x * heads + blockIdx.y;
    const float* pp = part + rh * nsplit * (d + 2);
    if (threadIdx.x < WARP) {
        float m[2], l = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            m[i] = s < nsplit ? pp[s * (d + 2) + d] : -INFINITY;
        }
        const float mx = warp_max(fmaxf(m[0], m[1]));
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            const float e = m[i] == -INFINITY ? 0.0f : expf(m[i] - mx);
            if (m[i] != -INFINITY) l += pp[s * (d + 2) + d + 1] * e;
            if (s < nsplit) w[s] = e;
        }
        l = warp_sum(l);
        // A NaN l (a position past the cache) or no keys at all make the row NaN.
        if (lane == 0) w[64] = l > 0.0f ? 1.0f / l : NAN_F32;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int s = 0; s < nsplit; s++) {
            const float ws = w[s], o = pp[s * (d + 2) + c];
            acc = ws != 0.0f ? fmaf(o, ws, acc) : acc;
        }
        out[rh * d + c] = acc * w[64];
    }
}

#ifdef HEAD_DIM
// attention_decode: attention of a decode step's few query rows on tensor cores, split over
// the keys. Block split * kv_heads + kv head, DEC_WARPS warps; the block's queries are the t
// rows x `group` query heads of its kv head (nq = t * group <= NQ_MAX, checked by the host),
// rows of an m16n8k16 product (rows nq..15 are zeros). A warp takes 16 keys a step, two steps
// in flight, with K and V straight from the cache into registers:
// - S = Q K^T as two 16 x 8 tiles. Lane (g, tig) holds key g's dims 16kk + 4tig..+3 as its B
//   fragment of k-step kk; Q's A fragment takes the same dims (a permutation of k that the
//   product does not see), from shared memory where the block put Q as f16, prescaled by
//   scale * log2 e.
// - an online softmax in base 2 per query, in the lanes g = query.
// - O^T += V^T P^T: the score tiles' registers are P^T's B fragment as they are; V^T's A
//   fragment pairs two keys' halves (byte_perm) of the words lane (g, tig) reads at dims
//   vdim(j, g), +1 of keys 2tig, 2tig+1, 2tig+8, 2tig+9; O^T's tile j is dims vdim(j, g), +1
//   by queries 2tig, 2tig+1.
// f16 Q and P, f32 sums: the precision of attention_mma. The block's warps take interleaved
// steps of its slice and merge their (m, l, o) through shared memory. Short contexts take
// fewer slices than the grid has (ns, of at least min_keys keys, none empty; the other blocks
// return at once): one slice writes `out` itself; with more, each writes its (o, m, l) to
// `part` and the last block of a kv head to finish merges them into `out` (a counter per kv
// head in `done`): a warp per query weighs the slices, then each output is one pass of FMAs.
// rope_attention (one row) is rope_kv_write and attention_decode in one launch: every block
// rotates the query heads it needs itself, and the block of the slice with the step's
// position rotates the key and stores it and the value into the cache; that block's lanes
// take them from shared memory (they loaded the position before the store), and no other
// block reads it. This saves a launch and a round trip.
__device__ __forceinline__ u32 pack_f16x2(float lo, float hi) {
    return (u32)f32_to_f16(lo) | ((u32)f32_to_f16(hi) << 16);
}

// c += a . b for one m16n8k16 tile (a: 4 f16x2 registers, b: 2, c: 4 f32).
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#define NQ_MAX 8
#ifndef DEC_WARPS
#define DEC_WARPS 4  // the host compiles with its choice (nvrtc::decode_warps)
#endif
#define DKS (HEAD_DIM / 16)
#define QSTR (HEAD_DIM + 8)
#define PSTR (HEAD_DIM + 4)  // floats of a slice's (o, m, l) in `part`: o 16-byte aligned
#define QI ((NQ_MAX * HEAD_DIM / 2 + 32 * DEC_WARPS - 1) / (32 * DEC_WARPS))  // q pairs a thread, at most

// Dims vdim(j, g) and + 1: lane g's word j of a V row, O^T's tile j. 64-dim parts as
// 16-byte loads (dims 64h + 8g..+7), the rest as 4-byte ones.
__device__ __forceinline__ int vdim(int j, int g) {
    return j < HEAD_DIM / 64 * 4 ? 64 * (j / 4) + 8 * g + 2 * (j % 4) : 16 * j + 2 * g;
}

__device__ __forceinline__ void v_words(const u16* row, int g, u32* w) {
#pragma unroll
    for (int h = 0; h < HEAD_DIM / 64; h++) {
        const uint4 u = *(const uint4*)(row + 64 * h + 8 * g);
        w[4 * h] = u.x;
        w[4 * h + 1] = u.y;
        w[4 * h + 2] = u.z;
        w[4 * h + 3] = u.w;
    }
#pragma unroll
    for (int j = HEAD_DIM / 64 * 4; j < DKS; j++) w[j] = *(const u32*)(row + 16 * j + 2 * g);
}

// Query n (< NQ_MAX) of a block is row r = n / group, head h = n % group of its kv head;
// by comparisons, as n is small (no division by a run-time group, no branch).
__device__ __forceinline__ void query_head(int n, int group, int& r, int& h) {
    r = 0;
#pragma unroll
    for (int k = 1; k < NQ_MAX; k++) r += n >= k * group;
    h = n - r * group;
}

template <bool ROPE>
__device__ __forceinline__ void decode(const float* __restrict__ q, const float* __restrict__ kn,
                                       const float* __restrict__ vn, const float* __restrict__ inv_freq,
                                       float rope_scale, int neox, u16* kc, u16* vc, const u32* __restrict__ pos,
                                       float* __restrict__ part, int t, int heads, int kv_heads, int max_ctx,
                                       int nsplit, float scale, float* __restrict__ out, u32* __restrict__ done,
                                       int min_keys) {
    // rope_attention loads the positions and its first keys and values before waiting for
    // the q/k/v product: launches that have finished wrote them (the one ahead waited for
    // them), and this one writes the step's row (taken from shared memory, below).
    if (!ROPE) pdl_begin();
    __shared__ __align__(16) u16 qs[NQ_MAX][QSTR];
    __shared__ __align__(16) u16 kvs[2][HEAD_DIM];  // rope_attention: the step's k and v
    __shared__ float ms[DEC_WARPS][NQ_MAX], ls[DEC_WARPS][NQ_MAX];
    __shared__ __align__(16) float os[DEC_WARPS][NQ_MAX][HEAD_DIM];
    // Split-major block order: the slices short contexts use are the grid's first blocks,
    // which start first when a grid cannot all be resident beside the one ahead of it.
    const int split = blockIdx.x / kv_heads, kvh = blockIdx.x % kv_heads;
    const int group = heads / kv_heads, nq = t * group;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane >> 2, tig = lane & 3;

    u32 mx = 0, bad = 0;  // bit r: row r's position is past the cache
    for (int r = 0; r < t; r++) {
        mx = max(mx, pos[r] + 1);
        bad |= (u32)(pos[r] >= (u32)max_ctx) << r;
    }
    const int kmax = (int)min(mx, (u32)max_ctx);
    const int ns0 = max(1, min(nsplit, (kmax + min_keys - 1) / min_keys));
    const int chunk = (kmax + ns0 - 1) / ns0, ns = (kmax + chunk - 1) / chunk;
    if (split >= ns) return;
    const int k0 = split * chunk, k1 = min(kmax, k0 + chunk);
    const i64 head0 = (i64)kvh * max_ctx * HEAD_DIM;
    const u16* kb_ptr = kc + head0;
    const u16* vb_ptr = vc + head0;
    // A step's K and V words; keys past the slice read its last key instead (their scores
    // are masked). The warp's first two steps are loaded before Q is staged, so that the
    // round trips overlap.
    uint2 kwa[2][DKS], kwb[2][DKS];
    u32 vwa[4][DKS], vwb[4][DKS];
    auto load = [&](int kb, uint2 (&kw)[2][DKS], u32 (&vw)[4][DKS]) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const u16* row = kb_ptr + (i64)min(kb + 8 * h + g, k1 - 1) * HEAD_DIM + 4 * tig;
#pragma unroll
            for (int kk = 0; kk < DKS; kk++) kw[h][kk] = *(const uint2*)(row + 16 * kk);
        }
#pragma unroll
        for (int e = 0; e < 4; e++)
            v_words(vb_ptr + (i64)min(kb + 2 * tig + (e & 1) + 8 * (e >> 1), k1 - 1) * HEAD_DIM, g, vw[e]);
    };
    // Two steps in flight: the next one loads while this one is computed.
    constexpr int S = 16 * DEC_WARPS;
    int kb = k0 + 16 * warp;
    if (kb < k1) load(kb, kwa, vwa);
    if (kb + S < k1) load(kb + S, kwb, vwb);
    if (ROPE) pdl_begin();
    // The step's queries, key, value and rope frequencies, issued with the first keys and
    // values in flight.
    const int half = HEAD_DIM / 2;
    // The thread's pair is threadIdx.x % half in every round when half divides the block
    // (head sizes 64 and 128): rope_attention then computes its factors once.
    constexpr bool ONE_C = (32 * DEC_WARPS) % (HEAD_DIM / 2) == 0;
    float qx[QI][2], qf[QI];
    const int s0 = ROPE && neox ? threadIdx.x : 2 * threadIdx.x, s1 = ROPE && neox ? s0 + half : s0 + 1;
    float kx[2] = {0.0f, 0.0f}, vx[2] = {0.0f, 0.0f}, rf = 0.0f;
#pragma unroll
    for (int it = 0; it < QI; it++) {
        const int i = threadIdx.x + 32 * DEC_WARPS * it, n = i / half, c = i % half;
        const int c0 = ROPE && neox ? c : 2 * c, c1 = ROPE && neox ? c + half : 2 * c + 1;
        qx[it][0] = qx[it][1] = qf[it] = 0.0f;
        if (n < nq) {
            int r, h;
            query_head(n, group, r, h);
            const float* qh = q + ((i64)r * heads + kvh * group + h) * HEAD_DIM;
            qx[it][0] = qh[c0];
            qx[it][1] = qh[c1];
            if (ROPE && !ONE_C) qf[it] = inv_freq[c];
        }
    }
    if (ROPE && (int)threadIdx.x < half) {
        const float *kh = kn + (i64)kvh * HEAD_DIM, *vh = vn + (i64)kvh * HEAD_DIM;
        kx[0] = kh[s0];
        kx[1] = kh[s1];
        vx[0] = vh[s0];
        vx[1] = vh[s1];
    }
    if (ROPE) rf = inv_freq[threadIdx.x % half];

    // Q (rotated first in rope_attention) as f16 times scale * log2 e; pair c of a head is
    // dims (2c, 2c + 1), or (c, c + HEAD_DIM / 2) for neox, as rope_kv_write pairs them.
    // Every load is issued before any rotation: one round trip, not one per pair.
    const float qscale = scale * 1.4426950408889634f;
    const u32 p = pos[0];
    // Lane g's query sees keys 0..=qpos.
    int qpos = -1;
    if (g < nq) {
        int r, h;
        query_head(g, group, r, h);
        qpos = (int)min(pos[r], (u32)max_ctx - 1);
    }
    // The block of the step's position stores its rotated key and value: pair threadIdx.x.
    const bool stores = ROPE && (int)p >= k0 && (int)p < k1 && p < (u32)max_ctx && (int)threadIdx.x < half;
    float rc = 0.0f, rs = 0.0f;  // rope's factors of pair threadIdx.x % half
    if (ROPE) rope_cs((float)p, rf, rope_scale, rc, rs);
#pragma unroll
    for (int it = 0; it < QI; it++) {
        const int i = threadIdx.x + 32 * DEC_WARPS * it, n = i / half, c = i % half;
        const int c0 = ROPE && neox ? c : 2 * c, c1 = ROPE && neox ? c + half : 2 * c + 1;
        if (n < nq) {
            float x0 = qx[it][0], x1 = qx[it][1];
            if (ROPE) {
                float fc = rc, fs = rs;
                if (!ONE_C) rope_cs((float)p, qf[it], rope_scale, fc, fs);
                rope_apply(x0, x1, fc, fs, x0, x1);
            }
            qs[n][c0] = f32_to_f16(x0 * qscale);
            qs[n][c1] = f32_to_f16(x1 * qscale);
        }
    }
    if (stores) {
        const i64 dst = head0 + (i64)p * HEAD_DIM;
        float y0, y1;
        rope_apply(kx[0], kx[1], rc, rs, y0, y1);
        kvs[0][s0] = kc[dst + s0] = f32_to_f16(y0);
        kvs[0][s1] = kc[dst + s1] = f32_to_f16(y1);
        kvs[1][s0] = vc[dst + s0] = f32_to_f16(vx[0]);
        kvs[1][s1] = vc[dst + s1] = f32_to_f16(vx[1]);
    }
    __syncthreads();

    // Rows past nq of Q are zeros (they were never staged).
    u32 qa[DKS][2];
#pragma unroll
    for (int kk = 0; kk < DKS; kk++) {
        const uint2 w = g < nq ? *(const uint2*)&qs[g][16 * kk + 4 * tig] : make_uint2(0u, 0u);
        qa[kk][0] = w.x;
        qa[kk][1] = w.y;
    }
    float o[DKS][4], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int j = 0; j < DKS; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

    auto step = [&](int kb, uint2 (&kw)[2][DKS], u32 (&vw)[4][DKS]) {
        if (ROPE && (int)p >= kb && (int)p < kb + 16) {
            // This block stored the step's key and value after loading them: take them from
            // shared memory (the lanes that hold key p).
#pragma unroll
            for (int h = 0; h < 2; h++)
                if (kb + 8 * h + g == (int)p)
#pragma unroll
                    for (int kk = 0; kk < DKS; kk++) kw[h][kk] = *(const uint2*)&kvs[0][16 * kk + 4 * tig];
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (kb + 2 * tig + (e & 1) + 8 * (e >> 1) == (int)p) v_words(kvs[1], g, vw[e]);
        }
        float s[2][4];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            s[h][0] = s[h][1] = s[h][2] = s[h][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < DKS; kk++) {
                const u32 a[4] = {qa[kk][0], 0u, qa[kk][1], 0u};
                mma16816(s[h], a, kw[h][kk].x, kw[h][kk].y);
            }
        }
        // s[h][e] is query g's score of key kb + 8h + 2tig + e.
        float smax = -INFINITY;
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = kb + 8 * h + 2 * tig + e;
                if (key >= k1 || key > qpos) s[h][e] = -INFINITY;
                smax = fmaxf(smax, s[h][e]);
            }
        }
        smax = fmaxf(smax, __shfl_xor_sync(FULL_MASK, smax, 1));
        smax = fmaxf(smax, __shfl_xor_sync(FULL_MASK, smax, 2));
        const float mn = fmaxf(m, smax);
        // Nothing visible yet keeps m = -inf: subtract 0 so exp2 gives 0, not NaN.
        const float base = mn == -INFINITY ? 0.0f : mn;
        const float corr = exp2f(m - base);
        float pr[2][2], psum = 0.0f;
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                pr[h][e] = exp2f(s[h][e] - base);
                psum += pr[h][e];
            }
        }
        psum += __shfl_xor_sync(FULL_MASK, psum, 1);
        psum += __shfl_xor_sync(FULL_MASK, psum, 2);
        l = l * corr + psum;
        m = mn;
        // O^T's columns are queries 2tig and 2tig + 1, whose factors live in lanes 8tig, 8tig + 4.
        const float c0 = __shfl_sync(FULL_MASK, corr, 8 * tig), c1 = __shfl_sync(FULL_MASK, corr, 8 * tig + 4);
        const u32 b0 = pack_f16x2(pr[0][0], pr[0][1]), b1 = pack_f16x2(pr[1][0], pr[1][1]);
#pragma unroll
        for (int j = 0; j < DKS; j++) {
            o[j][0] *= c0;
            o[j][1] *= c1;
            o[j][2] *= c0;
            o[j][3] *= c1;
            const u32 a[4] = {__byte_perm(vw[0][j], vw[1][j], 0x5410), __byte_perm(vw[0][j], vw[1][j], 0x7632),
                              __byte_perm(vw[2][j], vw[3][j], 0x5410), __byte_perm(vw[2][j], vw[3][j], 0x7632)};
            mma16816(o[j], a, b0, b1);
        }
    };
    for (; kb < k1; kb += 2 * S) {
        step(kb, kwa, vwa);
        if (kb + 2 * S < k1) load(kb + 2 * S, kwa, vwa);
        if (kb + S >= k1) break;
        step(kb + S, kwb, vwb);
        if (kb + 3 * S < k1) load(kb + 3 * S, kwb, vwb);
    }

    // Merge the warps' states, then the slice's (o, m, l) per query into `out` or `part`.
    if (tig == 0 && g < nq) {
        ms[warp][g] = m;
        ls[warp][g] = l;
    }
#pragma unroll
    for (int j = 0; j < DKS; j++) {
        const int c = vdim(j, g), n0 = 2 * tig, n1 = n0 + 1;
        if (n0 < nq) {
            os[warp][n0][c] = o[j][0];
            os[warp][n0][c + 1] = o[j][2];
        }
        if (n1 < nq) {
            os[warp][n1][c] = o[j][1];
            os[warp][n1][c + 1] = o[j][3];
        }
    }
    __syncthreads();
    // Each query's weights of the warps' states (thread n), then each output one pass of FMAs.
    __shared__ float wsc[DEC_WARPS][NQ_MAX], qml[NQ_MAX][2];
    if ((int)threadIdx.x < nq) {
        const int n = threadIdx.x;
        float M = -INFINITY, L = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, ms[w][n]);
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float e = M == -INFINITY ? 0.0f : exp2f(ms[w][n] - M);
            wsc[w][n] = e;
            L += ls[w][n] * e;
        }
        qml[n][0] = M;
        qml[n][1] = L;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HEAD_DIM; i += blockDim.x) {
        const int n = i / HEAD_DIM, c = i % HEAD_DIM;
        int r, h;
        query_head(n, group, r, h);
        float O = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) O += os[w][n][c] * wsc[w][n];
        const float M = qml[n][0], L = qml[n][1];
        // A position past the cache has no keys: NaN, as `attention` writes it.
        const bool bad_r = bad >> r & 1;
        const i64 rh = (i64)r * heads + kvh * group + h;
        if (ns == 1) {
            out[rh * HEAD_DIM + c] = !bad_r && L > 0.0f ? O * (1.0f / L) : NAN_F32;
            continue;
        }
        float* pp = part + (rh * nsplit + split) * PSTR;
        pp[c] = bad_r ? NAN_F32 : O;
        if (c == 0) {
            pp[HEAD_DIM] = bad_r ? 0.0f : M;
            pp[HEAD_DIM + 1] = bad_r ? NAN_F32 : L;
        }
    }
    if (ns == 1) return;

    // The block that finishes its kv head's slices last merges them (loads bypass L1: other
    // blocks wrote them during this launch; all of a thread's slices are loaded at once up to
    // 16) and sets the counter back to zero.
    __shared__ u32 last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(done + kvh, 1u) == (u32)ns - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Warp per query: the slices' weights (a lane per slice) and 1 / l into sw; then each
    // output one pass of FMAs.
    __shared__ float sw[NQ_MAX][65];
    for (int n = warp; n < nq; n += DEC_WARPS) {
        int r, h;
        query_head(n, group, r, h);
        const float* pp = part + ((i64)r * heads + kvh * group + h) * nsplit * PSTR;
        float2 ml[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            ml[i] = s < ns ? __ldcg((const float2*)(pp + s * PSTR + HEAD_DIM)) : make_float2(-INFINITY, 0.0f);
        }
        const float M = warp_max(fmaxf(ml[0].x, ml[1].x));
        float L = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            const float e = ml[i].x == -INFINITY ? 0.0f : exp2f(ml[i].x - M);
            if (s < ns) sw[n][s] = e;
            L += ml[i].y * e;
        }
        L = warp_sum(L);
        // A NaN l (a position past the cache) or no keys at all make the row NaN.
        if (lane == 0) sw[n][64] = L > 0.0f ? 1.0f / L : NAN_F32;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HEAD_DIM / 4; i += blockDim.x) {
        const int n = i / (HEAD_DIM / 4), c = 4 * (i % (HEAD_DIM / 4));
        int r, h;
        query_head(n, group, r, h);
        const i64 rh = (i64)r * heads + kvh * group + h;
        const float* pp = part + rh * nsplit * PSTR + c;
        float4 O = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
        for (int s = 0; s < ns; s++) {
            const float4 ov = __ldcg((const float4*)(pp + s * PSTR));
            const float e = sw[n][s];
            O.x = fmaf(ov.x, e, O.x);
            O.y = fmaf(ov.y, e, O.y);
            O.z = fmaf(ov.z, e, O.z);
            O.w = fmaf(ov.w, e, O.w);
        }
        const float inv = sw[n][64];
        *(float4*)(out + rh * HEAD_DIM + c) = make_float4(O.x * inv, O.y * inv, O.z * inv, O.w * inv);
    }
    if (threadIdx.x == 0) done[kvh] = 0;
}

#define DECODE_PARAMS                                                                                          \
    const float *__restrict__ q, const float *__restrict__ kn, const float *__restrict__ vn,                  \
        const float *__restrict__ inv_freq, float rope_scale, int neox, u16 *kc, u16 *vc,                      \
        const u32 *__restrict__ pos, float *__restrict__ part, int t, int heads, int kv_heads, int max_ctx,    \
        int nsplit, float scale, float *__restrict__ out, u32 *__restrict__ done, int min_keys
#define DECODE_ARGS \
    q, kn, vn, inv_freq, rope_scale, neox, kc, vc, pos, part, t, heads, kv_heads, max_ctx, nsplit, scale, out, done, min_keys

// kn, vn, inv_freq, rope_scale and neox are not read.
extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS, 8 / DEC_WARPS) attention_decode(DECODE_PARAMS) {
    decode<false>(DECODE_ARGS);
}

// One row (t = 1, checked by the host).
extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS, 8 / DEC_WARPS) rope_attention(DECODE_PARAMS) {
    decode<true>(DECODE_ARGS);
}

// attention_mma: prefill attention on tensor cores (mma.sync m16n8k16, f16 in, f32 out),
// compiled per head size (-DHEAD_DIM, a multiple of 16 up to 128). A block is one query
// head and 64 rows; each of its 4 warps owns 16 rows and keeps their Q (f16, prescaled by
// scale * log2 e), scores, probabilities and output in mma fragments (registers). K and V
// tiles of 64 keys pass through shared memory, rows padded by 8 halves so the fragment
// loads hit distinct banks; V fragments come transposed through ldmatrix.trans. Online
// softmax in base 2. Grid: x = row tile, y = query head.
#define BR 64
#define BC 64
#define KSTR (HEAD_DIM + 8)

// Four 8x8 f16 matrices from shared memory, transposed; lane l gives the address of row
// l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, const u16* p) {
    u64 g = (u64)p, s;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(s) : "l"(g));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((u32)s));
}

extern "C" __global__ void __launch_bounds__(128, 2)
    attention_mma(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                  const u32* __restrict__ pos, float* __restrict__ out, int t, int heads, int kv_heads,
                  int max_ctx, float scale) {
    pdl_begin();
    __shared__ __align__(16) u16 Ks[BC * KSTR];
    __shared__ __align__(16) u16 Vs[BC * KSTR];
    __shared__ int kmax_s;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const int g = lane / 4, tig = lane % 4;
    const int h = blockIdx.y, kvh = h / (heads / kv_heads);
    const int r0 = blockIdx.x * BR + warp * 16 + g, r1 = r0 + 8;
    // A row past t sees no key (all masked) and is not written.
    const int p0 = r0 < t ? (int)min(pos[r0], (u32)max_ctx - 1) : -1;
    const int p1 = r1 < t ? (int)min(pos[r1], (u32)max_ctx - 1) : -1;
    const bool bad0 = r0 < t && pos[r0] >= (u32)max_ctx, bad1 = r1 < t && pos[r1] >= (u32)max_ctx;

    if (threadIdx.x == 0) {
        u32 mx = 0;
        for (int i = 0; i < BR; i++) {
            const int r = blockIdx.x * BR + i;
            if (r < t) mx = max(mx, pos[r] + 1);
        }
        kmax_s = (int)min(mx, (u32)max_ctx);
    }

    // Q fragments: rows r0 / r1, dims 16kk + 2tig (+1) and + 8.
    const float qscale = scale * 1.4426950408889634f;
    u32 qa[HEAD_DIM / 16][4];
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = (i & 1) ? r1 : r0;
            const int c = 16 * kk + 2 * tig + ((i & 2) ? 8 : 0);
            float2 v = make_float2(0.0f, 0.0f);
            if (r < t) v = *(const float2*)(q + ((i64)r * heads + h) * HEAD_DIM + c);
            qa[kk][i] = pack_f16x2(v.x * qscale, v.y * qscale);
        }
    }
    int wmax = max(p0, p1);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wmax = max(wmax, __shfl_xor_sync(FULL_MASK, wmax, o));

    float o[HEAD_DIM / 8][4];
#pragma unroll
    for (int i = 0; i < HEAD_DIM / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    __syncthreads();
    const int kmax = kmax_s;
    const u16* kbase = kc + (i64)kvh * max_ctx * HEAD_DIM;
    const u16* vbase = vc + (i64)kvh * max_ctx * HEAD_DIM;

    for (int kb = 0; kb < kmax; kb += BC) {
        __syncthreads();
        // K and V tiles, 16 bytes per thread per step; keys past kmax are zeros.
        for (int c = threadIdx.x; c < BC * HEAD_DIM / 8; c += blockDim.x) {
            const int j = c / (HEAD_DIM / 8), col = (c % (HEAD_DIM / 8)) * 8;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (kb + j < kmax) {
                kv = *(const uint4*)(kbase + (i64)(kb + j) * HEAD_DIM + col);
                vv = *(const uint4*)(vbase + (i64)(kb + j) * HEAD_DIM + col);
            }
            *(uint4*)(Ks + j * KSTR + col) = kv;
            *(uint4*)(Vs + j * KSTR + col) = vv;
        }
        __syncthreads();
        if (kb > wmax) continue;  // every key of this tile is after every row of the warp

        float s[BC / 8][4];
#pragma unroll
        for (int j = 0; j < BC / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
#pragma unroll
            for (int j = 0; j < BC / 8; j++) {
                const u16* kr = Ks + (8 * j + g) * KSTR + 16 * kk + 2 * tig;
                mma16816(s[j], qa[kk], *(const u32*)kr, *(const u32*)(kr + 8));
            }
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < BC / 8; j++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = kb + 8 * j + 2 * tig + e;
                if (key > p0) s[j][e] = -INFINITY;
                if (key > p1) s[j][2 + e] = -INFINITY;
                mx0 = fmaxf(mx0, s[j][e]);
                mx1 = fmaxf(mx1, s[j][2 + e]);
            }
        }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(FULL_MASK, mx1, off));
        }
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        // A row with nothing visible yet keeps m = -inf: subtract 0 so exp2 gives 0, not NaN.
        const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;
        const float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int j = 0; j < BC / 8; j++) {
            s[j][0] = exp2f(s[j][0] - b0);
            s[j][1] = exp2f(s[j][1] - b0);
            s[j][2] = exp2f(s[j][2] - b1);
            s[j][3] = exp2f(s[j][3] - b1);
            sum0 += s[j][0] + s[j][1];
            sum1 += s[j][2] + s[j][3];
        }
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
        m0 = n0;
        m1 = n1;
#pragma unroll
        for (int i = 0; i < HEAD_DIM / 8; i++) {
            o[i][0] *= c0;
            o[i][1] *= c0;
            o[i][2] *= c1;
            o[i][3] *= c1;
        }
        // P (the score fragments) becomes the A operand: k-step kt covers keys 16kt..+16.
#pragma unroll
        for (int kt = 0; kt < BC / 16; kt++) {
            u32 pa[4];
            pa[0] = pack_f16x2(s[2 * kt][0], s[2 * kt][1]);
            pa[1] = pack_f16x2(s[2 * kt][2], s[2 * kt][3]);
            pa[2] = pack_f16x2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            pa[3] = pack_f16x2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int nd = 0; nd < HEAD_DIM / 8; nd += 2) {
                u32 b[4];
                ldmatrix_x4_trans(b, Vs + (16 * kt + (lane & 15)) * KSTR + 8 * (nd + (lane >> 4)));
                mma16816(o[nd], pa, b[0], b[1]);
                mma16816(o[nd + 1], pa, b[2], b[3]);
            }
        }
    }

#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l0 += __shfl_xor_sync(FULL_MASK, l0, off);
        l1 += __shfl_xor_sync(FULL_MASK, l1, off);
    }
    const float i0 = l0 > 0.0f && !bad0 ? 1.0f / l0 : NAN_F32;
    const float i1 = l1 > 0.0f && !bad1 ? 1.0f / l1 : NAN_F32;
#pragma unroll
    for (int nd = 0; nd < HEAD_DIM / 8; nd++) {
        const int c = 8 * nd + 2 * tig;
        if (r0 < t) *(float2*)(out + ((i64)r0 * heads + h) * HEAD_DIM + c) = make_float2(o[nd][0] * i0, o[nd][1] * i0);
        if (r1 < t) *(float2*)(out + ((i64)r1 * heads + h) * HEAD_DIM + c) = make_float2(o[nd][2] * i1, o[nd][3] * i1);
    }
}
#endif
