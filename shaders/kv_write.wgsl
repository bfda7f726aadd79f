// Stores k and v [t, kv_heads * head_dim] of this step at their positions in one layer of
// the cache, laid out [kv_heads][max_ctx][head_dim] so that attention reads each head's
// keys contiguously. One invocation per element of k.

struct Params {
    t: u32,
    kv_heads: u32,
    head_dim: u32,
    max_ctx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let width = p.kv_heads * p.head_dim;
    if (idx >= p.t * width) {
        return;
    }
    let tok = idx / width;
    let h = (idx % width) / p.head_dim;
    let d = idx % p.head_dim;
    let dst = (h * p.max_ctx + positions[tok]) * p.head_dim + d;
    k_cache[dst] = k[idx];
    v_cache[dst] = v[idx];
}
