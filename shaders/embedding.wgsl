// out[t, :] = table[ids[t], :] for the rows of one piece of the table (a table over the
// binding limit comes in pieces split at row boundaries; the Rust side launches once per
// piece and each launch writes the tokens whose id falls in its piece). The table is read
// in its file dtype through the format file matmul_<dtype>.wgsl prepended to this one.
// One workgroup per token.

struct Params {
    t: u32,
    cols: u32,
    row_bytes: u32,
    row0: u32,
    rows: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tok = group_index(wid, nwg);
    if (tok >= p.t) {
        return;
    }
    let id = ids[tok];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    let rb = (id - p.row0) * p.row_bytes;
    let ob = tok * p.cols;
    let c4 = p.cols & ~3u;
    for (var e = lid * 4u; e < c4; e += 256u) {
        let v = dq4(rb, e);
        out[ob + e] = v.x;
        out[ob + e + 1u] = v.y;
        out[ob + e + 2u] = v.z;
        out[ob + e + 3u] = v.w;
    }
    for (var e = c4 + lid; e < p.cols; e += 64u) {
        out[ob + e] = dq1(rb, e);
    }
}
