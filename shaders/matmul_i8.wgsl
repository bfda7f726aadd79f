// matmul of an I8 weight (compressed-tensors W8A8): int8 weights with a per-row (output
// channel) scale and, when asymmetric, zero point; activations quantized per token by the
// `quantize` entry point (matmul_i8_quantize.wgsl) into the scratch bindings 4 and 5. Then
//   out[t, out_col0 + r] = (sum_c qx[t, c] * (w[row, c] - z[row])) * sx[t] * s[row]
// with the sum over int8 x int8 products in i32 (dot4I8Packed: four products and their sum
// from two packed words; naga emits the native instruction where the device has one
// (SPIR-V SDot, HLSL dot4add_i8packed, ...) and unpacks bytes where it does not, so no
// adapter feature is needed). The zero point is subtracted as z * sum(qx) after the sum,
// in i32 when z is an integer (I8 zero points), so the result is exact before the scaling.
//
// The weight is bound as array<u32> exactly as the file has it: a row of k int8 is k / 4
// words (k must be a multiple of 4). `w` is one piece of the weight (pieces split at row
// boundaries); the Rust side launches once per piece a view touches. Entry points as in
// matmul.wgsl: gemv (one or two tokens, GPUs), rows/rows4 (CPU adapters), tiled (prefill,
// GPUs).

struct Params {
    t: u32,
    n: u32,
    k: u32,
    // First row of this launch in the piece `w`.
    w_row0: u32,
    out_stride: u32,
    out_col0: u32,
    // First row of this launch in the whole weight: the index into the scales and zeros.
    row: u32,
    // Dtype codes: scale in bits 0..8 (1 F32, 2 F16, 3 BF16), zero point in bits 8..16
    // (0 none, 1 F32, 2 F16, 3 BF16, 4 I8).
    codes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> sc: array<u32>;
@group(0) @binding(3) var<storage, read> zp: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// The word holding element i of a vector of dtype `code`, and the element from that word.
fn word_of(i: u32, code: u32) -> u32 {
    switch code {
        case 1u: {
            return i;
        }
        case 4u: {
            return i >> 2u;
        }
        default: {
            return i >> 1u;
        }
    }
}

fn decode(word: u32, i: u32, code: u32) -> f32 {
    switch code {
        case 1u: {
            return bitcast<f32>(word);
        }
        case 2u: {
            return unpack2x16float(word >> ((i & 1u) * 16u)).x;
        }
        case 3u: {
            return bitcast<f32>((word >> ((i & 1u) * 16u)) << 16u);
        }
        default: {
            return f32(bitcast<i32>(word << (24u - (i & 3u) * 8u)) >> 24u);
        }
    }
}

// Row r of this launch for token tok, from its i32 sum.
fn finish(acc: i32, tok: u32, r: u32) -> f32 {
    let g = p.row + r;
    let s_code = p.codes & 0xffu;
    let z_code = (p.codes >> 8u) & 0xffu;
    let sw = decode(sc[word_of(g, s_code)], g, s_code);
    let ts = xs[tok];
    var v = f32(acc);
    if (z_code != 0u) {
        let z = decode(zp[word_of(g, z_code)], g, z_code);
        let zi = i32(z);
        if (f32(zi) == z) {
            v = f32(acc - zi * ts.sum);
        } else {
            v = f32(acc) - z * f32(ts.sum);
        }
    }
    return v * ts.scale * sw;
}

// The 16 int8 products of weight words o..o+3 with the activation words xv, summed.
fn dot16(o: u32, xv: vec4<u32>) -> i32 {
    return dot4I8Packed(w[o], xv.x) + dot4I8Packed(w[o + 1u], xv.y)
        + dot4I8Packed(w[o + 2u], xv.z) + dot4I8Packed(w[o + 3u], xv.w);
}

fn xq4(o: u32) -> vec4<u32> {
    return vec4<u32>(xq[o], xq[o + 1u], xq[o + 2u], xq[o + 3u]);
}

const GEMV_ROWS: u32 = 4u;

// Launched with ceil(n / GEMV_ROWS) * t workgroups: 64 invocations share GEMV_ROWS rows
// of one token, 16 bytes of each row at a time (neighbouring invocations read neighbouring
// bytes), then one workgroup reduction.
@compute @workgroup_size(64)
fn gemv(ids: Ids) {
    let groups_per_token = (p.n + GEMV_ROWS - 1u) / GEMV_ROWS;
    let g = group_index(ids.wid, ids.nwg);
    let tok = g / groups_per_token;
    let r0 = (g % groups_per_token) * GEMV_ROWS;
    let words = p.k / 4u;
    // Rows past n read row n - 1 (always present) and are not stored.
    var rw: array<u32, GEMV_ROWS>;
    for (var r = 0u; r < GEMV_ROWS; r++) {
        rw[r] = (p.w_row0 + min(r0 + r, p.n - 1u)) * words;
    }
    var acc = vec4<i32>(0);
    if (tok < p.t) {
        let xb = tok * words;
        let quads = words / 4u;
        for (var c = ids.lid; c < quads; c += 64u) {
            let xv = xq4(xb + c * 4u);
            for (var r = 0u; r < GEMV_ROWS; r++) {
                acc[r] += dot16(rw[r] + c * 4u, xv);
            }
        }
        for (var j = quads * 4u + ids.lid; j < words; j += 64u) {
            let xw = xq[xb + j];
            for (var r = 0u; r < GEMV_ROWS; r++) {
                acc[r] += dot4I8Packed(w[rw[r] + j], xw);
            }
        }
    }
    let s = wg_isum4(acc, ids);
    if (ids.lid < GEMV_ROWS && tok < p.t && r0 + ids.lid < p.n) {
        out[tok * p.out_stride + p.out_col0 + r0 + ids.lid] = finish(s[ids.lid], tok, r0 + ids.lid);
    }
}

// Rows per invocation of `rows` and `rows4`, tokens per invocation of `rows4`, and
// invocations per workgroup: as in matmul.wgsl (a CPU runs the loads of SIMD lanes one
// lane at a time, so each activation word is loaded once for ROWS_R rows, and in rows4
// each weight word once for ROWS_T tokens).
const ROWS_R: u32 = 8u;
const ROWS_T: u32 = 4u;
const ROWS_WG: u32 = 16u;

// The first row of this invocation: invocation lid of a group computes rows lid,
// lid + ROWS_WG, ..., of its group of ROWS_R * ROWS_WG rows.
fn rows_first(g: u32, lid: u32) -> u32 {
    let per_group = ROWS_R * ROWS_WG;
    return (g % ((p.n + per_group - 1u) / per_group)) * per_group + lid;
}

// Word offsets of the invocation's rows. No early return (on a CPU adapter code after a
// divergent exit runs under a partial mask): rows past n read row n - 1 and are not stored.
fn rows_words(r0: u32) -> array<u32, ROWS_R> {
    var rw: array<u32, ROWS_R>;
    for (var j = 0u; j < ROWS_R; j++) {
        rw[j] = (p.w_row0 + min(r0 + j * ROWS_WG, p.n - 1u)) * (p.k / 4u);
    }
    return rw;
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
    let rw = rows_words(r0);
    let words = p.k / 4u;
    let xb = tok_in * words;
    var acc: array<i32, ROWS_R>;
    let quads = words / 4u;
    for (var c = 0u; c < quads; c++) {
        let xv = xq4(xb + c * 4u);
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += dot16(rw[j] + c * 4u, xv);
        }
    }
    for (var e = quads * 4u; e < words; e++) {
        let xw = xq[xb + e];
        for (var j = 0u; j < ROWS_R; j++) {
            acc[j] += dot4I8Packed(w[rw[j] + e], xw);
        }
    }
    for (var j = 0u; j < ROWS_R; j++) {
        let r = r0 + j * ROWS_WG;
        if (tok < p.t && r < p.n) {
            out[tok * p.out_stride + p.out_col0 + r] = finish(acc[j], tok, r);
        }
    }
}

// Launched with ceil(n / (ROWS_R * ROWS_WG)) * ceil(t / ROWS_T) workgroups: ROWS_R rows
// of ROWS_T tokens.
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
    let rw = rows_words(r0);
    let words = p.k / 4u;
    // Tokens past t read token t0 (present whenever nt > 0) and are not stored.
    var xb: array<u32, ROWS_T>;
    for (var i = 0u; i < ROWS_T; i++) {
        xb[i] = select(t0, t0 + i, i < nt) * words;
    }
    var acc: array<vec4<i32>, ROWS_R>;
    for (var e = 0u; e < words; e++) {
        let xw = vec4<u32>(xq[xb[0] + e], xq[xb[1] + e], xq[xb[2] + e], xq[xb[3] + e]);
        for (var j = 0u; j < ROWS_R; j++) {
            let ww = w[rw[j] + e];
            acc[j] += vec4<i32>(
                dot4I8Packed(ww, xw.x),
                dot4I8Packed(ww, xw.y),
                dot4I8Packed(ww, xw.z),
                dot4I8Packed(ww, xw.w),
            );
        }
    }
    for (var j = 0u; j < ROWS_R; j++) {
        let r = r0 + j * ROWS_WG;
        for (var i = 0u; i < ROWS_T; i++) {
            if (r < p.n && i < nt) {
                out[(t0 + i) * p.out_stride + p.out_col0 + r] = finish(acc[j][i], t0 + i, r);
            }
        }
    }
}

const TILE_T: u32 = 32u;
const TILE_N: u32 = 64u;
// k step of a tile, in words (32 int8).
const TKW: u32 = 8u;

var<workgroup> w_tile: array<u32, 512>; // [TILE_N][TKW]
var<workgroup> x_tile: array<u32, 256>; // [TILE_T][TKW]

// Launched with ceil(n / TILE_N) * ceil(t / TILE_T) workgroups. Invocation (ty, tx) of the
// 8 x 8 grid computes tokens 4 ty .. 4 ty + 3 of rows tx, tx + 8, ..., tx + 56 of the tile.
// Each weight word is loaded once per tile and used by all TILE_T tokens.
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
    let words = p.k / 4u;
    var acc: array<vec4<i32>, 8>;
    for (var k0 = 0u; k0 < words; k0 += TKW) {
        // Eight neighbouring invocations load the 32 bytes of one row (or token) at k0.
        for (var s = 0u; s < 8u; s++) {
            let i = lid + s * 64u;
            let row = n0 + i / TKW;
            let e = k0 + i % TKW;
            var v = 0u;
            if (row < p.n && e < words) {
                v = w[(p.w_row0 + row) * words + e];
            }
            w_tile[i] = v;
        }
        for (var s = 0u; s < 4u; s++) {
            let i = lid + s * 64u;
            let tok = t0 + i / TKW;
            let e = k0 + i % TKW;
            var v = 0u;
            if (tok < p.t && e < words) {
                v = xq[tok * words + e];
            }
            x_tile[i] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TKW; kk++) {
            let xa = x_tile[(ty * 4u) * TKW + kk];
            let xb = x_tile[(ty * 4u + 1u) * TKW + kk];
            let xc = x_tile[(ty * 4u + 2u) * TKW + kk];
            let xd = x_tile[(ty * 4u + 3u) * TKW + kk];
            for (var j = 0u; j < 8u; j++) {
                let ww = w_tile[(tx + j * 8u) * TKW + kk];
                acc[j] += vec4<i32>(
                    dot4I8Packed(ww, xa),
                    dot4I8Packed(ww, xb),
                    dot4I8Packed(ww, xc),
                    dot4I8Packed(ww, xd),
                );
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 8u; j++) {
        let row = n0 + tx + j * 8u;
        for (var i = 0u; i < 4u; i++) {
            let tok = t0 + ty * 4u + i;
            if (row < p.n && tok < p.t) {
                out[tok * p.out_stride + p.out_col0 + row] = finish(acc[j][i], tok, row);
            }
        }
    }
}
