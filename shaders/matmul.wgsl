// out[t, out_col0 + r] = x[t, :] . W[w_row0 + r, :] for r < n: the matmul kernels, shared by
// every weight dtype. pipelines.rs prepends common.wgsl, bytes.wgsl, the dtype's format
// file matmul_<dtype>.wgsl (which defines dq32/dq4/dq1: how to read that dtype) and a reduce_*.wgsl
// variant. `w` is one piece of the weight (a tensor over the binding limit comes in several,
// split at row boundaries); the Rust side launches once per piece a weight view touches.
//
// Weights are read 32 elements at a time (dq32: one Q4_0/Q8_0 block, an eighth of a K-quant
// super-block, scales read once); float weights whose k is not a multiple of 32 finish
// with dq1. Four entry points:
//   gemv  (one or two tokens, GPUs): 64 invocations share GEMV_ROWS rows of one token,
//         splitting k by chunks of 32 (neighbouring invocations read neighbouring blocks),
//         then one workgroup reduction.
//   rows, rows4 (CPU adapters; fewer than ROWS_T tokens, and more): each invocation
//         computes ROWS_R rows for one token (rows) or ROWS_T tokens (rows4) over the whole
//         of k, no reduction and no barrier. A CPU runs the loads of SIMD lanes one lane at
//         a time, so loads are what costs: each x chunk is loaded once for ROWS_R rows, and
//         in rows4 each weight chunk once for ROWS_T tokens.
//   tiled (prefill, GPUs): a workgroup computes a TILE_T x TILE_N block of out, stepping
//         along k by 32; each weight element of the tile is dequantized once into
//         workgroup memory and used by all TILE_T tokens.

struct Params {
    t: u32,
    n: u32,
    k: u32,
    row_bytes: u32,
    w_row0: u32,
    out_stride: u32,
    out_col0: u32,
    // 1: add the product to out (matmul_add: the residual add after o and down).
    add: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const GEMV_ROWS: u32 = 4u;

fn put(i: u32, v: f32) {
    if (p.add != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

// Elements 32c..32c+31 of x row `tok`.
fn x32(tok: u32, c: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x4(tok * p.k + c * 32u + i * 4u);
    }
    return v;
}

fn dot32(a: array<vec4<f32>, 8>, b: array<vec4<f32>, 8>) -> f32 {
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        s += a[i] * b[i];
    }
    return s.x + s.y + s.z + s.w;
}

// Launched with ceil(n / GEMV_ROWS) * t workgroups.
@compute @workgroup_size(64)
fn gemv(ids: Ids) {
    let groups_per_token = (p.n + GEMV_ROWS - 1u) / GEMV_ROWS;
    let g = group_index(ids.wid, ids.nwg);
    let tok = g / groups_per_token;
    let r0 = (g % groups_per_token) * GEMV_ROWS;
    // Rows past n read row n - 1 (always present) and are not stored.
    var rb: array<u32, GEMV_ROWS>;
    for (var r = 0u; r < GEMV_ROWS; r++) {
        rb[r] = (p.w_row0 + min(r0 + r, p.n - 1u)) * p.row_bytes;
    }
    var acc = vec4<f32>(0.0);
    if (tok < p.t) {
        let chunks = p.k / 32u;
        for (var c = ids.lid; c < chunks; c += 64u) {
            let xv = x32(tok, c);
            for (var r = 0u; r < GEMV_ROWS; r++) {
                acc[r] += dot32(dq32(rb[r], c), xv);
            }
        }
        // Float weights may have k % 32 != 0; block formats never do.
        for (var e = chunks * 32u + ids.lid; e < p.k; e += 64u) {
            let xe = x[tok * p.k + e];
            acc += xe * vec4<f32>(dq1(rb[0], e), dq1(rb[1], e), dq1(rb[2], e), dq1(rb[3], e));
        }
    }
    let s = wg_sum4(acc, ids);
    if (ids.lid < GEMV_ROWS && tok < p.t && r0 + ids.lid < p.n) {
        put(tok * p.out_stride + p.out_col0 + r0 + ids.lid, s[ids.lid]);
    }
}

// Rows per invocation of `rows` and `rows4`, tokens per invocation of `rows4`, and
// invocations per workgroup (few, so that a small matrix still spreads over all cores).
const ROWS_R: u32 = 8u;
const ROWS_T: u32 = 4u;
const ROWS_WG: u32 = 16u;

// The first row of this invocation in the layout of `rows`/`rows4`: invocation lid of a
// group computes rows lid, lid + ROWS_WG, ..., of its group of ROWS_R * ROWS_WG rows.
fn rows_first(g: u32, lid: u32) -> u32 {
    let per_group = ROWS_R * ROWS_WG;
    return (g % ((p.n + per_group - 1u) / per_group)) * per_group + lid;
}

// Byte offsets of the invocation's rows. No early return in these kernels (on a CPU
// adapter code after a divergent exit runs under a partial mask): rows past n read row
// n - 1 and are not stored.
fn rows_bytes(r0: u32) -> array<u32, ROWS_R> {
    var rb: array<u32, ROWS_R>;
    for (var j = 0u; j < ROWS_R; j++) {
        rb[j] = (p.w_row0 + min(r0 + j * ROWS_WG, p.n - 1u)) * p.row_bytes;
    }
    return rb;
}

// Launched with ceil(n / (ROWS_R * ROWS_WG)) * t workgroups: ROWS_R rows of one token.
@compute @workgroup_size(16)
fn rows(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    let per_group = ROWS_R * ROWS_WG;
    let tok = g / ((p.n + per_group - 1u) / per_group);
    let tok_in = min(tok, p.t - 1u);
    let r0 = rows_first(g, lid);
    let rb = rows_bytes(r0);
    var acc: array<f32, ROWS_R>;
    let chunks = p.k / 32u;
    for (var c = 0u; c < chunks; c++) {
        let xv = x32(tok_in, c);
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += dot32(dq32(rb[j], c), xv);
        }
    }
    for (var e = chunks * 32u; e < p.k; e++) {
        let xe = x[tok_in * p.k + e];
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += xe * dq1(rb[j], e);
        }
    }
    for (var j = 0u; j < ROWS_R; j++) {
        let r = r0 + j * ROWS_WG;
        if (tok < p.t && r < p.n) {
            put(tok * p.out_stride + p.out_col0 + r, acc[j]);
        }
    }
}

// Launched with ceil(n / (ROWS_R * ROWS_WG)) * ceil(t / ROWS_T) workgroups: ROWS_R rows of
// ROWS_T tokens, each weight chunk dequantized once for the ROWS_T tokens. (`rows` is the
// same for one token: fixed-size arrays here keep everything in registers, and a token
// count known only at run time would not.)
@compute @workgroup_size(16)
fn rows4(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    let per_group = ROWS_R * ROWS_WG;
    let t0 = (g / ((p.n + per_group - 1u) / per_group)) * ROWS_T;
    let nt = select(0u, min(ROWS_T, p.t - t0), t0 < p.t);
    let r0 = rows_first(g, lid);
    let rb = rows_bytes(r0);
    var acc: array<vec4<f32>, ROWS_R>;
    let chunks = p.k / 32u;
    for (var c = 0u; c < chunks; c++) {
        var xv: array<array<vec4<f32>, 8>, ROWS_T>;
        for (var i = 0u; i < ROWS_T; i++) {
            if (i < nt) {
                xv[i] = x32(t0 + i, c);
            }
        }
        for (var j = 0u; j < ROWS_R; j++) {
            let wv = dq32(rb[j], c);
            for (var i = 0u; i < ROWS_T; i++) {
                acc[j][i] += dot32(wv, xv[i]);
            }
        }
    }
    for (var e = chunks * 32u; e < p.k; e++) {
        for (var j = 0u; j < ROWS_R; j++) {
            let we = dq1(rb[j], e);
            for (var i = 0u; i < ROWS_T; i++) {
                if (i < nt) {
                    acc[j][i] += we * x[(t0 + i) * p.k + e];
                }
            }
        }
    }
    for (var j = 0u; j < ROWS_R; j++) {
        let r = r0 + j * ROWS_WG;
        for (var i = 0u; i < ROWS_T; i++) {
            if (r < p.n && i < nt) {
                put((t0 + i) * p.out_stride + p.out_col0 + r, acc[j][i]);
            }
        }
    }
}

const TILE_T: u32 = 32u;
const TILE_N: u32 = 64u;
// k step of a tile, in vec4s (32 elements).
const TK4: u32 = 8u;

var<workgroup> w_tile: array<vec4<f32>, 512>; // [TILE_N][TK4]
var<workgroup> x_tile: array<vec4<f32>, 256>; // [TILE_T][TK4]

// Elements e..e+3 of a row, zero past `len` (float weights with k % 4 != 0).
fn dq4_tail(rb: u32, e: u32, len: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (e + i < len) {
            v[i] = dq1(rb, e + i);
        }
    }
    return v;
}

fn x4_tail(i: u32, e: u32, len: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (e + j < len) {
            v[j] = x[i + j];
        }
    }
    return v;
}

// Launched with ceil(n / TILE_N) * ceil(t / TILE_T) workgroups. Invocation (ty, tx) of the
// 8 x 8 grid computes tokens 4 ty .. 4 ty + 3 of rows tx, tx + 8, ..., tx + 56 of the tile.
@compute @workgroup_size(64)
fn tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n_tiles = (p.n + TILE_N - 1u) / TILE_N;
    let g = group_index(wid, nwg);
    let n0 = (g % n_tiles) * TILE_N;
    let t0 = (g / n_tiles) * TILE_T;
    let ty = lid / 8u;
    let tx = lid % 8u;
    var acc: array<vec4<f32>, 8>;
    for (var k0 = 0u; k0 < p.k; k0 += TK4 * 4u) {
        // Row lid of the tile: one chunk of 32.
        let row = n0 + lid;
        let rb = (p.w_row0 + min(row, p.n - 1u)) * p.row_bytes;
        if (row < p.n && k0 + 32u <= p.k) {
            let wv = dq32(rb, k0 / 32u);
            for (var i = 0u; i < TK4; i++) {
                w_tile[lid * TK4 + i] = wv[i];
            }
        } else {
            for (var i = 0u; i < TK4; i++) {
                var v = vec4<f32>(0.0);
                if (row < p.n) {
                    v = dq4_tail(rb, k0 + i * 4u, p.k);
                }
                w_tile[lid * TK4 + i] = v;
            }
        }
        for (var s = 0u; s < 4u; s++) {
            let i = lid + s * 64u;
            let tok = t0 + i / TK4;
            let e = k0 + (i % TK4) * 4u;
            var v = vec4<f32>(0.0);
            if (tok < p.t && e < p.k) {
                v = x4_tail(tok * p.k + e, e, p.k);
            }
            x_tile[i] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK4; kk++) {
            let xa = x_tile[(ty * 4u) * TK4 + kk];
            let xb = x_tile[(ty * 4u + 1u) * TK4 + kk];
            let xc = x_tile[(ty * 4u + 2u) * TK4 + kk];
            let xd = x_tile[(ty * 4u + 3u) * TK4 + kk];
            for (var j = 0u; j < 8u; j++) {
                let wv = w_tile[(tx + j * 8u) * TK4 + kk];
                acc[j] += vec4<f32>(dot(wv, xa), dot(wv, xb), dot(wv, xc), dot(wv, xd));
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 8u; j++) {
        let row = n0 + tx + j * 8u;
        for (var i = 0u; i < 4u; i++) {
            let tok = t0 + ty * 4u + i;
            if (row < p.n && tok < p.t) {
                put(tok * p.out_stride + p.out_col0 + row, acc[j][i]);
            }
        }
    }
}
