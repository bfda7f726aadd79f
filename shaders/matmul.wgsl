// out[t, out_col0 + r] = x[t, :] . W[w_row0 + r, :] for r < n: the matmul kernels, shared by
// every weight dtype. pipelines.rs prepends common.wgsl, bytes.wgsl, the dtype's format
// file matmul_<dtype>.wgsl (which defines dq4/dq1/dot32: how to read that dtype) and a reduce_*.wgsl
// variant. `w` is one piece of the weight (a tensor over the binding limit comes in several,
// split at row boundaries); the Rust side launches once per piece a weight view touches.
//
// Three entry points:
//   gemv  (few tokens, GPUs): 64 invocations share GEMV_ROWS rows of one token; each takes
//         32-element chunks along k (the format file's dot32), then one workgroup
//         reduction.
//   gemv_rows (few tokens, CPU adapters): ROWS_R rows per invocation, whole k.
//   tiled (prefill): a workgroup computes a TILE_T x TILE_N block of out, stepping along k
//         by 32 (one Q4_0/Q8_0 block, an eighth of a K-quant super-block); each weight
//         element of the tile is dequantized once into workgroup memory and used by all
//         TILE_T tokens.

struct Params {
    t: u32,
    n: u32,
    k: u32,
    row_bytes: u32,
    w_row0: u32,
    out_stride: u32,
    out_col0: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const GEMV_ROWS: u32 = 4u;

fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

// Launched with ceil(n / GEMV_ROWS) * t workgroups. Invocation i takes the 32-element
// chunks i, i + 64, ... of its token's x and of each of the GEMV_ROWS rows: one block of
// Q4_0/Q8_0/..., a sub-block of a K-quant (so scales are read once per chunk), with x read
// once for all the rows.
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
        let xb = tok * p.k;
        let chunks = p.k / 32u;
        for (var c = ids.lid; c < chunks; c += 64u) {
            var xv: array<vec4<f32>, 8>;
            for (var i = 0u; i < 8u; i++) {
                xv[i] = x4(xb + c * 32u + i * 4u);
            }
            let xsum = vec2<f32>(
                dot(xv[0] + xv[1] + xv[2] + xv[3], vec4<f32>(1.0)),
                dot(xv[4] + xv[5] + xv[6] + xv[7], vec4<f32>(1.0)),
            );
            acc += vec4<f32>(
                dot32(rb[0], c, &xv, xsum),
                dot32(rb[1], c, &xv, xsum),
                dot32(rb[2], c, &xv, xsum),
                dot32(rb[3], c, &xv, xsum),
            );
        }
        // Float weights may have k % 32 != 0; block formats never do.
        for (var e = chunks * 32u + ids.lid; e < p.k; e += 64u) {
            let xe = x[xb + e];
            acc += xe * vec4<f32>(dq1(rb[0], e), dq1(rb[1], e), dq1(rb[2], e), dq1(rb[3], e));
        }
    }
    let s = wg_sum4(acc, ids);
    if (ids.lid < GEMV_ROWS && tok < p.t && r0 + ids.lid < p.n) {
        out[tok * p.out_stride + p.out_col0 + r0 + ids.lid] = s[ids.lid];
    }
}

// Rows per invocation of gemv_rows, and invocations per workgroup.
const ROWS_R: u32 = 8u;
const ROWS_WG: u32 = 16u;

// Launched with ceil(n / (ROWS_R * ROWS_WG)) * t workgroups: each invocation computes
// ROWS_R rows (lid, lid + ROWS_WG, ...) over the whole of k, no reduction. For CPU
// adapters: the 32 x values of a chunk are loaded once for ROWS_R rows (a CPU runs the
// loads of each SIMD lane one by one, so loads are what costs), there is no barrier, and
// small workgroups spread a small matrix over all cores.
@compute @workgroup_size(16)
fn gemv_rows(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let per_group = ROWS_R * ROWS_WG;
    let groups_per_token = (p.n + per_group - 1u) / per_group;
    let g = group_index(wid, nwg);
    let tok = g / groups_per_token;
    let r0 = (g % groups_per_token) * per_group + lid;
    // No early return: on a CPU adapter, code after a divergent exit runs with a partial
    // mask. Rows past n read row n - 1 and are not stored.
    var rb: array<u32, ROWS_R>;
    for (var j = 0u; j < ROWS_R; j++) {
        rb[j] = (p.w_row0 + min(r0 + j * ROWS_WG, p.n - 1u)) * p.row_bytes;
    }
    let xb = min(tok, p.t - 1u) * p.k;
    let chunks = p.k / 32u;
    var acc: array<f32, ROWS_R>;
    for (var c = 0u; c < chunks; c++) {
        var xv: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xv[i] = x4(xb + c * 32u + i * 4u);
        }
        let xsum = vec2<f32>(
            dot(xv[0] + xv[1] + xv[2] + xv[3], vec4<f32>(1.0)),
            dot(xv[4] + xv[5] + xv[6] + xv[7], vec4<f32>(1.0)),
        );
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += dot32(rb[j], c, &xv, xsum);
        }
    }
    for (var e = chunks * 32u; e < p.k; e++) {
        let xe = x[xb + e];
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += xe * dq1(rb[j], e);
        }
    }
    for (var j = 0u; j < ROWS_R; j++) {
        let r = r0 + j * ROWS_WG;
        if (tok < p.t && r < p.n) {
            out[tok * p.out_stride + p.out_col0 + r] = acc[j];
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
    if (e + 4u <= len) {
        return dq4(rb, e);
    }
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
        for (var s = 0u; s < 8u; s++) {
            let i = lid + s * 64u;
            let row = n0 + i / TK4;
            let e = k0 + (i % TK4) * 4u;
            var v = vec4<f32>(0.0);
            if (row < p.n && e < p.k) {
                v = dq4_tail((p.w_row0 + row) * p.row_bytes, e, p.k);
            }
            w_tile[i] = v;
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
                out[tok * p.out_stride + p.out_col0 + row] = acc[j][i];
            }
        }
    }
}
