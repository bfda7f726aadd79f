// matmul: out[t, rows] = x[t, cols] . W[rows, cols]^T, W in its file format (quant.cuh).
// Compiled once per weight format: -DFMT=<DType>, plus -DPLAIN for F32/F16/BF16 (-DSCALAR
// for plain rows that are not 16-byte vectors) and -DCU=<units per chunk> for GGUF blocks
// (-DNO_IDOT: f32 products only, for comparisons; -DFMT2=<DType>: the third weight of a
// launch in a second format, Variant::matmul_mixed).
//
// matmul_gemv (one token) and matmul_gemv_t8 (up to MAX_T tokens, T at run time): the decode
// product, built to keep the memory system busy: one pass over the weight rows, each loaded
// once for all tokens, many 16-byte loads in flight per thread before their first use.
// A launch covers up to three weights of the same input and shape (q/k/v, gate/up: the
// "group"): rows [0, e0) of w0 into o0, [e0, e1) of w1 into o1, [e1, rows) of w2 into o2.
// A warp owns NR = 2 rows at a time, so each x value it reads serves two rows.
//
// - Plain types: lanes walk a row in 16-byte vectors, consecutive lanes on consecutive
//   vectors (coalesced), U = 4 vectors per lane and row loaded before any FMA: 8 loads of
//   16 bytes in flight per thread. x comes through L1 (16 KB to 56 KB, reused by every warp).
// - GGUF blocks (2-byte aligned, 18..210 bytes): a lane per 32-element unit would read x in
//   128-byte strides and its block in misaligned pieces, both slow in L1. Instead each warp
//   streams its rows in chunks of CU units through shared memory with cp.async (16-byte,
//   coalesced, NSLOT chunks in flight: the next ones while the current is computed), lanes decode
//   units from there, and x sits in shared memory at a stride per unit (XU, XD) at which lanes
//   reading consecutive units hit distinct banks. The grid is persistent (as many blocks as
//   fit), warps take row pairs in turn, and a warp's chunk stream runs across its pairs, so
//   the pipeline never drains between rows. matmul_gemv_xg reads x from global memory
//   instead, for x too large for shared memory (the host decides). One token of a format
//   with integer units (IDot: Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) multiplies with dp4a:
//   each block first writes x as two 8-bit digits per element (stage_x_digits, 80 bytes a
//   unit), and a unit costs 16 dp4a per row instead of 32 decodes and 32 FMAs.
// matmul_dequant: a band of rows of a GGUF weight as f16, the per-call scratch that feeds
// cuBLASLt for prefill (never stored). matmul_cast: activations to f16/bf16 for cuBLASLt.
#include "quant.cuh"

typedef FMT Fmt;

#define MAX_T 8
#define NR 2

// Most warps per block of matmul_gemv; the host launches fewer (blockDim.x / 32) when a
// matrix has too few rows to give every SM work. GGUF variants get theirs from the host
// (-DWARPS, LAMINA_CUDA_GEMV_WARPS for tuning).
#ifndef WARPS
#define WARPS 8
#endif

// Where row `row` of a grouped launch lives: its weight row, its output column, and the
// output's row stride (the rows of its own weight).
struct RowAt {
    const u8* w;
    float* o;
    int stride;
};

// e1 < 0 marks a gate/up launch fused with swiglu (matmul_swiglu): rows alternate gate row
// p, up row p (so a warp's row pair is one output), e0 = rows of each, out o0. The rows of
// w2 are row_bytes2 long (a GGUF launch of two formats, FMT2), the others row_bytes.
__device__ __forceinline__ RowAt row_at(int row, const u8* w0, const u8* w1, const u8* w2, float* o0, float* o1,
                                        float* o2, int e0, int e1, int rows, i64 row_bytes, i64 row_bytes2) {
    RowAt r;
    if (e1 < 0) {
        r.w = (row % 2 ? w1 : w0) + (i64)(row / 2) * row_bytes;
        r.o = o0 + row / 2;
        r.stride = e0;
    } else if (row < e0) {
        r.w = w0 + (i64)row * row_bytes;
        r.o = o0 + row;
        r.stride = e0;
    } else if (row < e1) {
        r.w = w1 + (i64)(row - e0) * row_bytes;
        r.o = o1 + (row - e0);
        r.stride = e1 - e0;
    } else {
        r.w = w2 + (i64)(row - e1) * row_bytes2;
        r.o = o2 + (row - e1);
        r.stride = rows - e1;
    }
    return r;
}

// Decode fusions (flags): ADD stores out += product (the residual add of the o and down
// projections); NORM multiplies rms_norm(x) * nrm instead of x (nrm in F32, F16 or BF16 by
// nrm_dt 0, 1, 2; GGUF blocks with x in shared memory, one token: the host checks), which
// saves the norm's launch before q/k/v and gate/up.
#define FUSE_ADD 1
#define FUSE_NORM 2
#define GEMV_PARAMS                                                                                                \
    const u8 *__restrict__ w0, const u8 *__restrict__ w1, const u8 *__restrict__ w2, i64 row_bytes,              \
        const float *__restrict__ x, float *__restrict__ o0, float *__restrict__ o1, float *__restrict__ o2, int e0, \
        int e1, int rows, int cols, int T, const u8 *__restrict__ nrm, int nrm_dt, float eps, int flags
#define GEMV_ARGS w0, w1, w2, row_bytes, x, o0, o1, o2, e0, e1, rows, cols, T, nrm, nrm_dt, eps, flags

// A 16-byte load that does not allocate in L1: weights are read once, x stays cached.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Sums each row's partials over the warp, times `scale` (the norm's 1 / rms under FUSE_NORM),
// and stores them (lane 0), or adds them to the output under FUSE_ADD.
// With `swiglu` (NR = 2: gate and up of one output) it stores silu(gate) * up instead.
template <int TT>
__device__ __forceinline__ void store_rows(float (&acc)[NR][TT], const RowAt* ra, const bool* ok, int T, int lane,
                                           bool swiglu, float scale, int flags) {
#pragma unroll
    for (int t = 0; t < TT; t++) {
        if (TT == 1 || t < T) {
            if (swiglu) {
                const float g = warp_sum(acc[0][t]) * scale, u = warp_sum(acc[1][t]) * scale;
                if (lane == 0 && ok[0]) ra[0].o[(i64)t * ra[0].stride] = swiglu1(g, u);
                continue;
            }
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const float s = warp_sum(acc[r][t]) * scale;
                float* o = ra[r].o + (i64)t * ra[r].stride;
                if (lane == 0 && ok[r]) *o = flags & FUSE_ADD ? *o + s : s;
            }
        }
    }
}

#ifdef PLAIN
// Elements per 16-byte vector: 4 for F32, 8 for F16/BF16.
#define VEC (16 / Fmt::BLOCK_BYTES)
#define U 4

template <int TT>
__device__ __forceinline__ void gemv_plain(GEMV_PARAMS) {
    const int lane = threadIdx.x % WARP;
    const int r0 = (blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP) * NR;
    RowAt ra[NR];
    bool ok[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) {
        ok[r] = r0 + r < rows;
        // A row past the end reads row r0 again and is not stored.
        ra[r] = row_at(ok[r] ? r0 + r : r0, w0, w1, w2, o0, o1, o2, e0, e1, rows, row_bytes, row_bytes);
    }
    pdl_begin();
    if (r0 >= rows) return;
    float acc[NR][TT];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;
#ifdef SCALAR
    for (int c = lane; c < cols; c += WARP) {
        float w[NR];
#pragma unroll
        for (int r = 0; r < NR; r++) w[r] = Fmt::get(ra[r].w, c);
#pragma unroll
        for (int t = 0; t < TT; t++) {
            if (TT == 1 || t < T) {
                const float xv = x[(i64)t * cols + c];
#pragma unroll
                for (int r = 0; r < NR; r++) acc[r][t] = fmaf(w[r], xv, acc[r][t]);
            }
        }
    }
#else
    const int nvec = cols / VEC;
    int v0 = 0;
    // Whole steps: U vectors per lane and row, all loaded before the first FMA.
    for (; v0 + WARP * U <= nvec; v0 += WARP * U) {
        uint4 raw[NR][U];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
            for (int i = 0; i < U; i++) raw[r][i] = ld_stream(ra[r].w + 16 * (i64)(v0 + WARP * i + lane));
#pragma unroll
        for (int i = 0; i < U; i++) {
            const int v = v0 + WARP * i + lane;
            float w[NR][VEC];
#pragma unroll
            for (int r = 0; r < NR; r++) Fmt::vec(raw[r][i], w[r]);
#pragma unroll
            for (int t = 0; t < TT; t++) {
                if (TT == 1 || t < T) {
                    const float4* xp = (const float4*)(x + (i64)t * cols + (i64)v * VEC);
#pragma unroll
                    for (int g = 0; g < VEC / 4; g++) {
                        const float4 xv = __ldg(xp + g);
#pragma unroll
                        for (int r = 0; r < NR; r++) {
                            float a = acc[r][t];
                            a = fmaf(w[r][4 * g], xv.x, a);
                            a = fmaf(w[r][4 * g + 1], xv.y, a);
                            a = fmaf(w[r][4 * g + 2], xv.z, a);
                            acc[r][t] = fmaf(w[r][4 * g + 3], xv.w, a);
                        }
                    }
                }
            }
        }
    }
    // The rest of the row, one vector per lane.
    for (int v = v0 + lane; v < nvec; v += WARP) {
        float w[NR][VEC];
#pragma unroll
        for (int r = 0; r < NR; r++) Fmt::vec(ld_stream(ra[r].w + 16 * (i64)v), w[r]);
#pragma unroll
        for (int t = 0; t < TT; t++) {
            if (TT == 1 || t < T) {
                const float4* xp = (const float4*)(x + (i64)t * cols + (i64)v * VEC);
#pragma unroll
                for (int g = 0; g < VEC / 4; g++) {
                    const float4 xv = __ldg(xp + g);
#pragma unroll
                    for (int r = 0; r < NR; r++) {
                        float a = acc[r][t];
                        a = fmaf(w[r][4 * g], xv.x, a);
                        a = fmaf(w[r][4 * g + 1], xv.y, a);
                        a = fmaf(w[r][4 * g + 2], xv.z, a);
                        acc[r][t] = fmaf(w[r][4 * g + 3], xv.w, a);
                    }
                }
            }
        }
    }
#endif
    store_rows<TT>(acc, ra, ok, T, lane, e1 < 0, 1.0f, flags);
}

// (256, 1): without the promise of one block per SM, ptxas saves registers by moving each
// weight load next to its use, leaving two of a step's eight in flight.
extern "C" __global__ void __launch_bounds__(32 * WARPS, 1) matmul_gemv(GEMV_PARAMS) { gemv_plain<1>(GEMV_ARGS); }
extern "C" __global__ void __launch_bounds__(32 * WARPS, 1) matmul_gemv_t8(GEMV_PARAMS) { gemv_plain<MAX_T>(GEMV_ARGS); }

#else  // GGUF blocks

typedef IDot<FMT> ID;
// A launch of two formats (-DFMT2): the rows of its third weight (w2, from row e1: a Q4_K_M
// layer's Q6_K v beside Q4_K q and k) are FMT2, the rest FMT, in one stream. e1 is even,
// so a warp's row pair is of one format; both stage x alike (both dp4a formats or neither).
#ifdef FMT2
typedef FMT2 Fmt2;
#define MIXED true
static_assert(IDot<FMT>::OK == IDot<FMT2>::OK, "the formats of a launch stage x alike");
#else
typedef FMT Fmt2;
#define MIXED false
#endif
// Floats of x per unit in shared memory: 32 and 4 of padding (f32 path), or 20 as digits
// (dp4a path: 64 bytes of digits, 3 floats, 1 of padding; lanes reading consecutive units
// 80 bytes apart hit distinct banks in each 128-byte phase). The host sizes shared memory
// by the same rule (gemv_shape in gemv.rs); the kernel checks it.
#define XU 36
#define XD 20

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u64 s;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(s) : "l"(p));
    return (u32)s;
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Chunk slots per warp (chunks in flight while one is computed, plus one).
#ifndef NSLOT
#define NSLOT 2
#endif

// Waits until at most NSLOT - 1 committed groups of this thread are still in flight.
__device__ __forceinline__ void cp_async_wait_slots() {
    asm volatile("cp.async.wait_group %0;" ::"n"(NSLOT - 1) : "memory");
}

// A warp's stream of chunks: chunk k is chunk (k % nch) of row pair (first + (k / nch) * step).
struct Stream {
    int first, step, nch, nunits;
};

// A place in the stream, stepped forward by `advance` (no division per chunk).
struct Cursor {
    int k, pair, c;
};

__device__ __forceinline__ void advance(const Stream& s, Cursor& p) {
    p.k++;
    if (++p.c == s.nch) {
        p.c = 0;
        p.pair += s.step;
    }
}

// Whether row pair `pair` is of the launch's second format.
__device__ __forceinline__ bool second_fmt(int pair, int e1) { return MIXED && e1 >= 0 && pair * NR >= e1; }

// The bytes of chunk c of a row of format F: whole blocks [u0 / upb, ceil(u1 / upb)) of
// units [u0, u1), upb units (32 elements) a block.
template <class F>
__device__ __forceinline__ void chunk_bytes(const Stream& s, int c, i64* b0, i64* b1) {
    constexpr int upb = F::BLOCK_ELEMS / 32;
    const int u0 = c * CU;
    const int u1 = min(u0 + CU, s.nunits);
    *b0 = (i64)(u0 / upb) * F::BLOCK_BYTES;
    *b1 = (i64)((u1 + upb - 1) / upb) * F::BLOCK_BYTES;
}

// Starts the copy of the stream's chunk at p into `slot` (NR rows of slot_row bytes each): the
// 16-byte aligned span around its bytes (weights carry 16 bytes of padding after their end,
// so the span stays inside the allocation). Commits a group even when there is nothing to
// copy, so that "all but the newest group" always means "chunk p.k".
__device__ __forceinline__ void issue(const Stream& s, const Cursor& p, int kend, u8* slot, int slot_row, int lane,
                                      GEMV_PARAMS, i64 row_bytes2) {
    if (p.k < kend) {
        i64 b0, b1;
        if (second_fmt(p.pair, e1))
            chunk_bytes<Fmt2>(s, p.c, &b0, &b1);
        else
            chunk_bytes<Fmt>(s, p.c, &b0, &b1);
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const int row = p.pair * NR + r;
            if (row < rows) {
                const u8* w = row_at(row, w0, w1, w2, o0, o1, o2, e0, e1, rows, row_bytes, row_bytes2).w;
                const u64 a = (u64)(w + b0) & ~(u64)15;
                const u64 e = ((u64)(w + b1) + 15) & ~(u64)15;
                u8* dst = slot + r * slot_row;
                for (u64 o = 16 * (u64)lane; o < e - a; o += 16 * WARP) cp_async16(dst + o, (const void*)(a + o));
            }
        }
    }
    cp_async_commit();
}

// Rounds of x loads a thread issues before it uses the first: x is read once per block
// from L2, and one round at a time would leave a 14336-wide x (down projection) waiting for
// 14 round trips before the first chunk is computed; 8 rounds make it 2 (16 made the dp4a
// GEMV spill registers on sm_90).
#define XR 8

// Four elements of the norm's weight (F32, F16 or BF16 by dt 0, 1, 2) from element c.
__device__ __forceinline__ float4 norm_w4(const u8* __restrict__ nrm, int dt, int c) {
    if (dt == 0) return __ldg((const float4*)nrm + c / 4);
    const uint2 h = __ldg((const uint2*)nrm + c / 4);
    if (dt == 1) return make_float4(f16_to_f32(h.x & 0xffff), f16_to_f32(h.x >> 16), f16_to_f32(h.y & 0xffff), f16_to_f32(h.y >> 16));
    return make_float4(bf16_to_f32(h.x & 0xffff), bf16_to_f32(h.x >> 16), bf16_to_f32(h.y & 0xffff), bf16_to_f32(h.y >> 16));
}

// x (one token) into shared memory for the dp4a path, per unit of 32 elements: 32 bytes of
// high digits, 32 of low digits, then the digits' scale d and the sums of x over each half
// of the unit (f32), XD floats per unit. Element k is
// d * hi[k] + d / 254 * lo[k]: hi = round(x / d) with d = max|x| / 127, lo the remainder
// in steps of d / 254, so x is kept to about 1 part in 64,000 of the unit's largest
// element (an f16 keeps 1 in 2,048 of each), and every product with the weight's
// integers is exact.
// With `nrm` (FUSE_NORM) the digits are of x * nrm, and the sum of x^2 comes back (this
// thread's part) for the norm's 1 / rms, which the outputs are multiplied by: the digits are
// the same for any common factor of x.
__device__ __forceinline__ float stage_x_digits(const float* __restrict__ x, float* xs, int cols,
                                                const u8* __restrict__ nrm, int nrm_dt) {
    float ss = 0.0f;
    // Eight threads per unit (4 elements each); blockDim.x is a multiple of 32, so a unit's
    // threads are eight aligned lanes of one warp, and whole warps run each round.
    const int c4 = cols / 4;
    for (int base = 0; base < c4; base += XR * blockDim.x) {
        float4 v[XR], g[XR];
#pragma unroll
        for (int r = 0; r < XR; r++) {
            const int i = base + r * blockDim.x + threadIdx.x;
            v[r] = i < c4 ? __ldg((const float4*)x + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (nrm) g[r] = i < c4 ? norm_w4(nrm, nrm_dt, 4 * i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int r = 0; r < XR; r++) {
            const int i = base + r * blockDim.x + threadIdx.x;
            if (base + r * blockDim.x >= c4) continue;  // uniform: a whole round past the end
            float e[4] = {v[r].x, v[r].y, v[r].z, v[r].w};
            if (nrm) {
                const float gw[4] = {g[r].x, g[r].y, g[r].z, g[r].w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    ss = fmaf(e[k], e[k], ss);
                    e[k] *= gw[k];
                }
            }
            // A NaN or infinite x makes d NaN, and so every output NaN, as f32 products would:
            // mx is infinite then (fmaxf alone would drop a NaN; the sum of |x| keeps it).
            const float ax = (fabsf(e[0]) + fabsf(e[1])) + (fabsf(e[2]) + fabsf(e[3]));
            float mx = fmaxf(fmaxf(fabsf(e[0]), fabsf(e[1])), fmaxf(fabsf(e[2]), fabsf(e[3])));
            if (ax != ax) mx = INFINITY;
            float sum = (e[0] + e[1]) + (e[2] + e[3]);
#pragma unroll
            for (int o = 1; o < 8; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
#pragma unroll
            for (int o = 1; o < 4; o <<= 1) sum += __shfl_xor_sync(FULL_MASK, sum, o);
            if (i >= c4) continue;
            const bool finite = mx < INFINITY;
            const float d = finite ? mx * (1.0f / 127.0f) : NAN_F32;
            const float inv = finite && mx > 0.0f ? 127.0f * __frcp_rn(mx) : 0.0f;
            // Rounding by adding 1.5 * 2^23 (|t| <= 127 * (1 + 2^-21)): the sum's low byte is
            // the rounded value's two's complement byte, and every step is an exact f32 add or
            // a rounded product, without the conversion unit. |t - hi| <= 1/2, so |lo| <= 127.
            const float MAGIC = 12582912.0f;
            u32 hb[4], lb[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float t = __fmul_rn(e[k], inv);
                const float m = __fadd_rn(t, MAGIC);
                hb[k] = __float_as_uint(m);
                lb[k] = __float_as_uint(__fmaf_rn(__fsub_rn(t, __fsub_rn(m, MAGIC)), 254.0f, MAGIC));
            }
            const u32 hw = __byte_perm(__byte_perm(hb[0], hb[1], 0x0040), __byte_perm(hb[2], hb[3], 0x0040), 0x5410);
            const u32 lw = __byte_perm(__byte_perm(lb[0], lb[1], 0x0040), __byte_perm(lb[2], lb[3], 0x0040), 0x5410);
            const int unit = i / 8, k = i % 8;
            u32* dst = (u32*)(xs + unit * XD);
            dst[k] = hw;
            dst[8 + k] = lw;
            if (k == 0) {
                xs[unit * XD + 16] = d;
                xs[unit * XD + 17] = sum;
            } else if (k == 4) {
                xs[unit * XD + 18] = sum;
            }
        }
    }
    return ss;
}

// x (T tokens) into shared memory as f32, XU floats per unit; with `nrm` (one token) x * nrm,
// returning this thread's part of the sum of x^2 as stage_x_digits does.
__device__ __forceinline__ float stage_x_f32(const float* __restrict__ x, float* xs, int cols, int T,
                                             const u8* __restrict__ nrm, int nrm_dt) {
    const int c4 = cols / 4, n = T * c4, xstride = (cols / 32) * XU;
    float ss = 0.0f;
    for (int base = 0; base < n; base += XR * blockDim.x) {
        float4 v[XR];
#pragma unroll
        for (int r = 0; r < XR; r++) {
            const int i = base + r * blockDim.x + threadIdx.x;
            if (i < n) v[r] = __ldg((const float4*)x + i);
        }
#pragma unroll
        for (int r = 0; r < XR; r++) {
            const int i = base + r * blockDim.x + threadIdx.x;
            if (i < n) {
                const int t = i / c4, c = 4 * (i - t * c4);
                float4 e = v[r];
                if (nrm) {
                    const float4 gw = norm_w4(nrm, nrm_dt, c);
                    ss = fmaf(e.x, e.x, fmaf(e.y, e.y, fmaf(e.z, e.z, fmaf(e.w, e.w, ss))));
                    e = make_float4(e.x * gw.x, e.y * gw.y, e.z * gw.z, e.w * gw.w);
                }
                *(float4*)(xs + t * xstride + (c / 32) * XU + c % 32) = e;
            }
        }
    }
    return ss;
}

// The units [u0, u1) of a chunk of format F, the NR rows' bytes at sp[r], into acc: dp4a on
// x's digits (IQ) or f32 products on x (XS: staged, else read from global memory).
template <class F, int TT, bool XS, bool IQ>
__device__ __forceinline__ void chunk_dot(float (&acc)[NR][TT], const u8* const* sp, int u0, int u1, int lane,
                                          const float* xs, const float* __restrict__ x, int xstride, int T, int cols) {
    typedef IDot<F> IDF;
    typedef Dot<F> DF;
#pragma unroll
    for (int j = 0; j < CU / WARP; j++) {
        const int u = u0 + WARP * j + lane;
        if (IQ && u < u1) {
            u32 w[NR][8];
            float a[NR][2], b[NR][1];
#pragma unroll
            for (int r = 0; r < NR; r++) IDF::unit_i(sp[r], u - u0, w[r], a[r], b[r]);
            const uint4* xq = (const uint4*)(xs + u * XD);
            const uint4 h0 = xq[0], h1 = xq[1], l0 = xq[2], l1 = xq[3];
            const float4 m = *(const float4*)(xs + u * XD + 16);
            const u32 hi[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
            const u32 lo[8] = {l0.x, l0.y, l0.z, l0.w, l1.x, l1.y, l1.z, l1.w};
            // m: the digits' scale, then the sums of x over each half of the unit.
            const float d = m.x, d2 = m.x * (1.0f / 254.0f);
            const float sxh[2] = {IDF::HALVES == 2 ? m.y : m.y + m.z, m.z};
#pragma unroll
            for (int r = 0; r < NR; r++) {
                int sh[2] = {0, 0}, sl[2] = {0, 0};
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    const int h = i / (8 / IDF::HALVES);
                    sh[h] = dp4a(w[r][i], hi[i], sh[h]);
                    sl[h] = dp4a(w[r][i], lo[i], sl[h]);
                }
                float v = acc[r][0];
#pragma unroll
                for (int h = 0; h < IDF::HALVES; h++) {
                    float dot = fmaf(d, (float)sh[h], d2 * (float)sl[h]);
                    if (IDF::ZERO) dot = fmaf(-(float)IDF::ZERO, sxh[h], dot);
                    v = fmaf(a[r][h], dot, v);
                }
                if (IDF::OFFSET) v = fmaf(b[r][0], m.y + m.z, v);
                acc[r][0] = v;
            }
        } else if (!IQ && u < u1) {
            float q[NR][32], a[NR][2], b[NR][1];
#pragma unroll
            for (int r = 0; r < NR; r++) DF::unit_q(sp[r], u - u0, q[r], a[r], b[r]);
#pragma unroll
            for (int t = 0; t < TT; t++) {
                if (TT == 1 || t < T) {
                    const float* xp = XS ? xs + t * xstride + u * XU : x + (i64)t * cols + (i64)u * 32;
                    float sum[NR][2], sx = 0.0f;
#pragma unroll
                    for (int r = 0; r < NR; r++) sum[r][0] = sum[r][1] = 0.0f;
#pragma unroll
                    for (int g = 0; g < 8; g++) {
                        const float4 xv = XS ? *(const float4*)(xp + 4 * g) : __ldg((const float4*)(xp + 4 * g));
                        if (DF::OFFSET) sx += (xv.x + xv.y) + (xv.z + xv.w);
                        const int h = g / (8 / DF::HALVES);
#pragma unroll
                        for (int r = 0; r < NR; r++) {
                            float m = sum[r][h];
                            m = fmaf(q[r][4 * g], xv.x, m);
                            m = fmaf(q[r][4 * g + 1], xv.y, m);
                            m = fmaf(q[r][4 * g + 2], xv.z, m);
                            sum[r][h] = fmaf(q[r][4 * g + 3], xv.w, m);
                        }
                    }
#pragma unroll
                    for (int r = 0; r < NR; r++) {
                        float v = fmaf(a[r][0], sum[r][0], acc[r][t]);
                        if (DF::HALVES == 2) v = fmaf(a[r][1], sum[r][1], v);
                        if (DF::OFFSET) v = fmaf(b[r][0], sx, v);
                        acc[r][t] = v;
                    }
                }
            }
        }
    }
}

// Shared memory: per warp NSLOT slots of NR rows of slot_row bytes, then (XS) x: T rows of
// XU floats per unit (XD as digits), then 16 bytes the decoders may over-read, then 32 floats
// for the norm's sum (FUSE_NORM).
template <int TT, bool XS>
__device__ __forceinline__ void gemv_blocks(GEMV_PARAMS, int slot_row, i64 row_bytes2) {
    // One token with x in shared memory, in a format with integer units: dp4a products.
#ifdef NO_IDOT
    constexpr bool IQ = false;
#else
    constexpr bool IQ = ID::OK && TT == 1 && XS;
#endif
    extern __shared__ __align__(16) u8 smem[];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nw = blockDim.x / WARP;
    const int nunits = cols / 32;
    const int xstride = (cols / 32) * (IQ ? XD : XU);
    float* xs = (float*)(smem + nw * NSLOT * NR * slot_row);
    u8* slots = smem + warp * NSLOT * NR * slot_row;
    // The host sizes shared memory by the same layout (gemv_shape): a launch given less stops.
    u32 given;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(given));
    if ((u32)(nw * NSLOT * NR * slot_row) + (XS ? 4u * (u32)(T * xstride + 36) : 16u) > given) __trap();

    Stream s;
    // Warp-major: a launch whose row pairs do not divide evenly among its warps gives the
    // extra pairs to a few warps of every block, not to every warp of the first blocks, so
    // no SM sits idle while others finish a last round.
    s.first = warp * gridDim.x + blockIdx.x;
    s.step = gridDim.x * nw;
    s.nch = (nunits + CU - 1) / CU;
    s.nunits = nunits;
    const int npairs = (rows + NR - 1) / NR;
    const int mine = s.first < npairs ? (npairs - 1 - s.first) / s.step + 1 : 0;
    const int kend = mine * s.nch;

    // The first NSLOT chunks are on their way while the kernel ahead finishes (weights depend
    // on no kernel) and while x is staged.
    Cursor next = {0, s.first, 0};
#pragma unroll
    for (int k = 0; k < NSLOT; k++) {
        issue(s, next, kend, slots + k * NR * slot_row, slot_row, lane, GEMV_ARGS, row_bytes2);
        advance(s, next);
    }
    pdl_begin();
    // 1 / rms(x) under FUSE_NORM (one token, x in shared memory: the host sees to it).
    float scale = 1.0f;
    const u8* norm = XS && (flags & FUSE_NORM) ? nrm : nullptr;
    if (XS) {
        const float ss = IQ ? stage_x_digits(x, xs, cols, norm, nrm_dt) : stage_x_f32(x, xs, cols, T, norm, nrm_dt);
        // block_sum's arithmetic with one barrier, the one that publishes x: its scratch
        // (past x) has no earlier use to wait for.
        float* part = xs + T * xstride + 4;
        if (norm) {
            const float v = warp_sum(ss);
            if (lane == 0) part[warp] = v;
        }
        __syncthreads();
        if (norm) scale = rsqrtf(warp_sum(lane < nw ? part[lane] : 0.0f) / (float)cols + eps);
    }

    float acc[NR][TT];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;

    for (Cursor cur = {0, s.first, 0}; cur.k < kend; advance(s, cur)) {
        const int k = cur.k, pair = cur.pair, c = cur.c;
        u8* slot = slots + (k % NSLOT) * NR * slot_row;
        cp_async_wait_slots();
        __syncwarp();

        RowAt ra[NR];
        bool ok[NR];
        const u8* sp[NR];
        i64 b0, b1;
        if (second_fmt(pair, e1))
            chunk_bytes<Fmt2>(s, c, &b0, &b1);
        else
            chunk_bytes<Fmt>(s, c, &b0, &b1);
#pragma unroll
        for (int r = 0; r < NR; r++) {
            ok[r] = pair * NR + r < rows;
            // A row past the end decodes row 0's bytes and is not stored.
            const int rr = ok[r] ? r : 0;
            ra[r] = row_at(pair * NR + rr, w0, w1, w2, o0, o1, o2, e0, e1, rows, row_bytes, row_bytes2);
            sp[r] = slot + rr * slot_row + (int)((u64)(ra[r].w + b0) & 15);
        }
        const int u0 = c * CU, u1 = min(u0 + CU, nunits);
        if (second_fmt(pair, e1))
            chunk_dot<Fmt2, TT, XS, IQ>(acc, sp, u0, u1, lane, xs, x, xstride, T, cols);
        else
            chunk_dot<Fmt, TT, XS, IQ>(acc, sp, u0, u1, lane, xs, x, xstride, T, cols);
        __syncwarp();
        // The slot is free again: chunk k + NSLOT goes into it.
        issue(s, next, kend, slot, slot_row, lane, GEMV_ARGS, row_bytes2);
        advance(s, next);
        if (c == s.nch - 1) {
            store_rows<TT>(acc, ra, ok, T, lane, e1 < 0, scale, flags);
#pragma unroll
            for (int r = 0; r < NR; r++)
#pragma unroll
                for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;
        }
    }
}

extern "C" __global__ void __launch_bounds__(32 * WARPS, 1) matmul_gemv(GEMV_PARAMS, int slot_row, i64 row_bytes2) {
    gemv_blocks<1, true>(GEMV_ARGS, slot_row, row_bytes2);
}
// Up to MAX_T tokens need more registers (about 160): at most 8 warps a block (the host
// launches no more), one block per SM, enough for these rarer launches.
#define WARPS_T8 (WARPS < 8 ? WARPS : 8)
extern "C" __global__ void __launch_bounds__(32 * WARPS_T8, 1) matmul_gemv_t8(GEMV_PARAMS, int slot_row, i64 row_bytes2) {
    gemv_blocks<MAX_T, true>(GEMV_ARGS, slot_row, row_bytes2);
}
extern "C" __global__ void __launch_bounds__(32 * WARPS_T8, 1) matmul_gemv_xg(GEMV_PARAMS, int slot_row, i64 row_bytes2) {
    gemv_blocks<MAX_T, false>(GEMV_ARGS, slot_row, row_bytes2);
}

// out[r, :] (f16, row-major [rows, cols]) = W[row0 + r, :] for r < rows; W points at row0.
extern "C" __global__ void matmul_dequant(const u8* __restrict__ W, i64 row_bytes, u16* __restrict__ out,
                                          int rows, int cols) {
    pdl_begin();
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

// y = x as bf16 for BF16 weights, f16 otherwise (the operand type cuBLASLt multiplies); with
// `lo`, what that rounding dropped, rounded the same way: the two halves sum to x within about
// 16 bits of mantissa (bf16) or 22 (f16), for products as accurate as f32
// (LAMINA_CUDA_MATMUL=exact). Four elements per step where n allows (n % 4 == 0; buffers
// start 256-byte aligned).
__device__ __forceinline__ u16 cast1(float v) {
#ifdef CAST_BF16
    return f32_to_bf16(v);
#else
    return f32_to_f16(v);
#endif
}

__device__ __forceinline__ u16 cast_half(float v, int lo) {
#ifdef CAST_BF16
    return lo ? cast1(v - bf16_to_f32(cast1(v))) : cast1(v);
#else
    return lo ? cast1(v - f16_to_f32(cast1(v))) : cast1(v);
#endif
}

extern "C" __global__ void matmul_cast(const float* __restrict__ x, u16* __restrict__ y, i64 n, int lo) {
    pdl_begin();
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if (n % 4 == 0) {
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n / 4; i += stride) {
            const float4 v = ((const float4*)x)[i];
            ((uint2*)y)[i] = make_uint2((u32)cast_half(v.x, lo) | ((u32)cast_half(v.y, lo) << 16),
                                        (u32)cast_half(v.z, lo) | ((u32)cast_half(v.w, lo) << 16));
        }
    } else {
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = cast_half(x[i], lo);
    }
}
