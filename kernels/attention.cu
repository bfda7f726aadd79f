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

// Merges the nsplit slices of each (row, query head): out = sum_s o_s e^(m_s - M) /
// sum_s l_s e^(m_s - M). Grid: x = row, y = query head.
// Merges the nsplit (<= 64) slices (o, m, l) of nq (<= NQ_COMBINE) queries into their d
// outputs, with all of the block's threads. Query n is (row, head) index
// base + (n / group) * heads + kvh * group + n % group of `part` and `out`. Warp n % warps
// takes query n's m and l (a lane per slice) into w[n] (the slices' weights, then 1 / l), so
// each output is then one pass of independent loads. Loads bypass L1 (__ldcg): in
// attention_decode other blocks wrote the slices during this launch.
#define NQ_COMBINE 8
__device__ __forceinline__ void combine_slices(const float* part, float* out, int nq, i64 base, int group, int heads,
                                               int kvh, int d, int nsplit, int ns, float (*w)[65]) {
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, nw = blockDim.x / WARP;
    for (int n = warp; n < nq; n += nw) {
        const float* pp = part + (base + (n / group) * heads + kvh * group + n % group) * nsplit * (d + 2);
        float m[2], l = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            m[i] = s < ns ? __ldcg(pp + s * (d + 2) + d) : -INFINITY;
        }
        const float mx = warp_max(fmaxf(m[0], m[1]));
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int s = lane + WARP * i;
            const float e = m[i] == -INFINITY ? 0.0f : expf(m[i] - mx);
            if (m[i] != -INFINITY) l += __ldcg(pp + s * (d + 2) + d + 1) * e;
            if (s < ns) w[n][s] = e;
        }
        l = warp_sum(l);
        // A NaN l (a position past the cache) or no keys at all make the row NaN.
        if (lane == 0) w[n][64] = l > 0.0f ? 1.0f / l : NAN_F32;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nq * d; i += blockDim.x) {
        const int n = i / d, c = i % d;
        const i64 rh = base + (n / group) * heads + kvh * group + n % group;
        const float* pp = part + rh * nsplit * (d + 2);
        float acc = 0.0f;
#pragma unroll 8
        for (int s = 0; s < ns; s++) {
            const float ws = w[n][s], o = __ldcg(pp + s * (d + 2) + c);
            acc = ws != 0.0f ? fmaf(o, ws, acc) : acc;
        }
        out[rh * d + c] = acc * w[n][64];
    }
}

extern "C" __global__ void attention_combine(const float* __restrict__ part, float* __restrict__ out, int heads,
                                             int d, int nsplit) {
    pdl_begin();
    __shared__ float w[1][65];
    combine_slices(part, out, 1, (i64)blockIdx.x * heads + blockIdx.y, 1, heads, 0, d, nsplit, nsplit, w);
}

#ifdef HEAD_DIM
// attention_decode: split attention of a few query rows (decode) for one head size. Block
// (split, kv head), 4 warps; the block's queries are the t rows x `group` query heads of its kv
// head (t * group <= NQ_MAX, checked by the host). A lane holds 4 consecutive dimensions of
// every query, key and value (lanes past HEAD_DIM / 4 hold zeros), so a key row is one
// coalesced 8-byte load per lane; a warp takes 8 keys at a time (16 loads in flight per lane),
// sums q . k over the warp (a reduce-scatter: 9 shuffles for 8 keys, one exp per lane), and
// keeps an online softmax per query. The block's warps take
// interleaved groups of 8 keys of its slice and merge their (m, l, o) through shared memory;
// the slice's result goes to `part`, in the layout of `attention`, and the last block of a
// kv head to finish merges the slices into `out` (a counter per kv head in `done`).
// Short contexts take fewer slices than the grid has (ns, at least min_keys keys each; the
// other blocks return at once): one slice needs no merge and writes `out` itself, which
// saves the partial results' round trip, the counter and the merge (at 128 keys the split
// launch cost three times what one block's keys do).
#define NQ_MAX 8
#define DEC_WARPS 4
#define KG 8

__device__ __forceinline__ void f16x4(uint2 v, float* f) {
    f[0] = f16_to_f32((u16)(v.x & 0xffff));
    f[1] = f16_to_f32((u16)(v.x >> 16));
    f[2] = f16_to_f32((u16)(v.y & 0xffff));
    f[3] = f16_to_f32((u16)(v.y >> 16));
}

extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS, 2)
    attention_decode(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                     const u32* __restrict__ pos, float* __restrict__ part, int t, int heads, int kv_heads,
                     int max_ctx, int nsplit, float scale, float* __restrict__ out, u32* __restrict__ done,
                     int min_keys) {
    pdl_begin();
    __shared__ float ms[DEC_WARPS][NQ_MAX], ls[DEC_WARPS][NQ_MAX];
    __shared__ __align__(16) float os[DEC_WARPS][NQ_MAX][HEAD_DIM];
    const int split = blockIdx.x, kvh = blockIdx.y;
    const int group = heads / kv_heads, nq = t * group;
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const bool dl = lane < HEAD_DIM / 4;

    u32 mx = 0;
    for (int r = 0; r < t; r++) mx = max(mx, pos[r] + 1);
    const int kmax = (int)min(mx, (u32)max_ctx);
    const int ns = max(1, min(nsplit, (kmax + min_keys - 1) / min_keys));
    if (split >= ns) return;
    const int chunk = (kmax + ns - 1) / ns;
    const int k0 = split * chunk, k1 = min(kmax, k0 + chunk);

    // Query n is row n / group, head kvh * group + n % group; it sees keys 0..=qpos[n].
    float qv[NQ_MAX][4], m[NQ_MAX], l[NQ_MAX], o[NQ_MAX][4];
    int qpos[NQ_MAX];
#pragma unroll
    for (int n = 0; n < NQ_MAX; n++) {
        const int r = n / group;
        const bool live = n < nq;
        qpos[n] = live ? (int)min(pos[r], (u32)max_ctx - 1) : -1;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (live && dl) v = *(const float4*)(q + ((i64)r * heads + kvh * group + n % group) * HEAD_DIM + 4 * lane);
        qv[n][0] = v.x;
        qv[n][1] = v.y;
        qv[n][2] = v.z;
        qv[n][3] = v.w;
        m[n] = -INFINITY;
        l[n] = 0.0f;
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    }

    const u16* kb_ptr = kc + (i64)kvh * max_ctx * HEAD_DIM + 4 * lane;
    const u16* vb_ptr = vc + (i64)kvh * max_ctx * HEAD_DIM + 4 * lane;
    // The warp's next group of keys is loaded while this one is computed: a short slice is a
    // few groups, each of which would otherwise wait a full memory round trip.
    uint2 kn[KG], vn[KG];
    auto load = [&](int kb) {
#pragma unroll
        for (int j = 0; j < KG; j++) {
            const bool in = kb + j < k1 && dl;
            kn[j] = in ? *(const uint2*)(kb_ptr + (i64)(kb + j) * HEAD_DIM) : make_uint2(0, 0);
            vn[j] = in ? *(const uint2*)(vb_ptr + (i64)(kb + j) * HEAD_DIM) : make_uint2(0, 0);
        }
    };
    load(k0 + KG * warp);
    for (int kb = k0 + KG * warp; kb < k1; kb += KG * DEC_WARPS) {
        uint2 kr[KG], vr[KG];
#pragma unroll
        for (int j = 0; j < KG; j++) {
            kr[j] = kn[j];
            vr[j] = vn[j];
        }
        load(kb + KG * DEC_WARPS);
        float kf[KG][4];
#pragma unroll
        for (int j = 0; j < KG; j++) f16x4(kr[j], kf[j]);
        // Lane bits 4, 3, 2 name the key whose score a lane ends up holding (jl).
        const bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
        const int jl = (b4 ? 4 : 0) + (b3 ? 2 : 0) + (b2 ? 1 : 0);
#pragma unroll
        for (int n = 0; n < NQ_MAX; n++) {
            if (n >= nq) break;
            float p[KG];
#pragma unroll
            for (int j = 0; j < KG; j++) {
                float a = qv[n][0] * kf[j][0];
                a = fmaf(qv[n][1], kf[j][1], a);
                a = fmaf(qv[n][2], kf[j][2], a);
                p[j] = fmaf(qv[n][3], kf[j][3], a);
            }
            // Reduce-scatter over the warp: each exchange halves the keys a lane keeps and
            // sums the other half into its partner, so the 8 sums take 4 + 2 + 1 + 2
            // shuffles; afterwards lane l holds the full dot product of key jl(l).
            float h4[4], h2[2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float send = b4 ? p[i] : p[i + 4];
                h4[i] = (b4 ? p[i + 4] : p[i]) + __shfl_xor_sync(FULL_MASK, send, 16);
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const float send = b3 ? h4[i] : h4[i + 2];
                h2[i] = (b3 ? h4[i + 2] : h4[i]) + __shfl_xor_sync(FULL_MASK, send, 8);
            }
            float dot = (b2 ? h2[1] : h2[0]) + __shfl_xor_sync(FULL_MASK, b2 ? h2[0] : h2[1], 4);
            dot += __shfl_xor_sync(FULL_MASK, dot, 2);
            dot += __shfl_xor_sync(FULL_MASK, dot, 1);
            const int key = kb + jl;
            const float sc = key < k1 && key <= qpos[n] ? dot * scale : -INFINITY;
            // Max and sum over the 8 keys: over lane bits 4, 3, 2 (uniform over the warp).
            float smax = fmaxf(sc, __shfl_xor_sync(FULL_MASK, sc, 16));
            smax = fmaxf(smax, __shfl_xor_sync(FULL_MASK, smax, 8));
            smax = fmaxf(smax, __shfl_xor_sync(FULL_MASK, smax, 4));
            const float mn = fmaxf(m[n], smax);
            if (mn == -INFINITY) continue;  // nothing visible yet
            const float corr = expf(m[n] - mn);
            const float pl = sc == -INFINITY ? 0.0f : expf(sc - mn);
            float psum = pl + __shfl_xor_sync(FULL_MASK, pl, 16);
            psum += __shfl_xor_sync(FULL_MASK, psum, 8);
            psum += __shfl_xor_sync(FULL_MASK, psum, 4);
            o[n][0] *= corr;
            o[n][1] *= corr;
            o[n][2] *= corr;
            o[n][3] *= corr;
#pragma unroll
            for (int j = 0; j < KG; j++) {
                // Key j's probability from a lane that holds it.
                const float pj = __shfl_sync(FULL_MASK, pl, ((j >> 2) & 1) << 4 | ((j >> 1) & 1) << 3 | (j & 1) << 2);
                float vf[4];
                f16x4(vr[j], vf);
                o[n][0] = fmaf(pj, vf[0], o[n][0]);
                o[n][1] = fmaf(pj, vf[1], o[n][1]);
                o[n][2] = fmaf(pj, vf[2], o[n][2]);
                o[n][3] = fmaf(pj, vf[3], o[n][3]);
            }
            l[n] = l[n] * corr + psum;
            m[n] = mn;
        }
    }

    // Merge the warps' states, then the slice's (o, m, l) per query into `part`.
#pragma unroll
    for (int n = 0; n < NQ_MAX; n++) {
        if (n < nq) {
            if (dl) *(float4*)&os[warp][n][4 * lane] = make_float4(o[n][0], o[n][1], o[n][2], o[n][3]);
            if (lane == 0) {
                ms[warp][n] = m[n];
                ls[warp][n] = l[n];
            }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nq * HEAD_DIM; i += blockDim.x) {
        const int n = i / HEAD_DIM, c = i % HEAD_DIM, r = n / group;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, ms[w][n]);
        float L = 0.0f, O = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                if (ms[w][n] != -INFINITY) {
                    const float e = expf(ms[w][n] - M);
                    L += ls[w][n] * e;
                    O += os[w][n][c] * e;
                }
            }
        }
        // A position past the cache has no keys: NaN, as `attention` writes it.
        const bool bad = pos[r] >= (u32)max_ctx;
        if (ns == 1) {
            out[((i64)r * heads + kvh * group + n % group) * HEAD_DIM + c] =
                !bad && L > 0.0f ? O * (1.0f / L) : NAN_F32;
            continue;
        }
        float* pp = part + (((i64)r * heads + kvh * group + n % group) * nsplit + split) * (HEAD_DIM + 2);
        pp[c] = bad ? NAN_F32 : O;
        if (c == 0) {
            pp[HEAD_DIM] = bad ? 0.0f : M;
            pp[HEAD_DIM + 1] = bad ? NAN_F32 : L;
        }
    }

    // The block that finishes its kv head's slices last merges them into `out` (what
    // attention_combine does, without a launch of its own) and sets the counter back to
    // zero for the next launch.
    if (ns == 1) return;
    __shared__ u32 last;
    __shared__ float w[NQ_COMBINE][65];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(done + kvh, 1u) == (u32)ns - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    combine_slices(part, out, nq, 0, group, heads, kvh, HEAD_DIM, nsplit, ns, w);
    if (threadIdx.x == 0) done[kvh] = 0;
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
