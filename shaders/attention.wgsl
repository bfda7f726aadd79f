// Causal grouped-query attention of the step's queries q [t, heads * head_dim] over one layer
// of the cache ([kv_heads][max_ctx][head_dim], written by kv_write.wgsl): query row t sees
// cache positions 0..=positions[t]; head h reads kv head h / (heads / kv_heads).
//
// One workgroup of 64 per (row, head). The context is walked 64 positions at a time with an
// online softmax: invocation j scores position c0 + j, the chunk's maximum and sum come from
// a workgroup reduction (reduce_*.wgsl), and each invocation accumulates the weighted values
// of the dims it owns (d = lid, lid + 64, ...; head_dim <= 256). q is read whole before out
// is written, so out may be q.

struct Params {
    t: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    max_ctx: u32,
    scale: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_s: array<f32, 256>;
var<workgroup> p_s: array<f32, 64>;

// Stands for -infinity: WGSL does not promise infinities.
const NEG_BIG: f32 = -3.0e38;

@compute @workgroup_size(64)
fn main(ids: Ids) {
    let g = group_index(ids.wid, ids.nwg);
    let tok = g / p.heads;
    let head = g % p.heads;
    let valid = tok < p.t;
    let hd = p.head_dim;
    let qb = (tok * p.heads + head) * hd;
    for (var d = ids.lid; d < hd; d += 64u) {
        if (valid) {
            q_s[d] = q[qb + d] * p.scale;
        }
    }
    workgroupBarrier();
    var n_ctx = 0u;
    if (valid) {
        n_ctx = positions[tok] + 1u;
    }
    let kvh = head / (p.heads / p.kv_heads);
    let cb = kvh * p.max_ctx * hd;
    var m = NEG_BIG;
    var l = 0.0;
    var o = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < n_ctx; c0 += 64u) {
        let j = c0 + ids.lid;
        var s = NEG_BIG;
        if (j < n_ctx) {
            let kb = cb + j * hd;
            var acc = 0.0;
            for (var d = 0u; d < hd; d++) {
                acc += q_s[d] * k_cache[kb + d];
            }
            s = acc;
        }
        let m_new = max(m, wg_max(s, ids));
        var pj = 0.0;
        if (j < n_ctx) {
            pj = exp(s - m_new);
        }
        p_s[ids.lid] = pj;
        let alpha = exp(m - m_new);
        l = l * alpha + wg_sum(pj, ids);
        let n = min(64u, n_ctx - c0);
        for (var i = 0u; i < 4u; i++) {
            let d = ids.lid + i * 64u;
            if (d < hd) {
                var acc = o[i] * alpha;
                for (var jj = 0u; jj < n; jj++) {
                    acc += p_s[jj] * v_cache[cb + (c0 + jj) * hd + d];
                }
                o[i] = acc;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if (valid) {
        for (var i = 0u; i < 4u; i++) {
            let d = ids.lid + i * 64u;
            if (d < hd) {
                out[qb + d] = o[i] / l;
            }
        }
    }
}
