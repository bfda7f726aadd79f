// Rotates each head of x [t, heads * head_dim] in place by angle positions[t] * inv_freq[i],
// cos and sin scaled by `scale`. neox 0 (layout Normal) pairs elements (2i, 2i + 1), neox 1
// (layout Neox) pairs (i, i + head_dim / 2). One invocation per pair.

struct Params {
    t: u32,
    heads: u32,
    head_dim: u32,
    neox: u32,
    scale: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read_write> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

const TAU: f32 = 6.283185307179586;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let half = p.head_dim / 2u;
    let idx = group_index(wid, nwg) * 256u + lid;
    if (idx >= p.t * p.heads * half) {
        return;
    }
    let i = idx % half;
    let head = idx / half; // token * heads + head
    let tok = head / p.heads;
    let a = f32(positions[tok]) * inv_freq[i];
    // sin/cos are only accurate near [-pi, pi] on some devices: reduce first.
    let r = a - TAU * round(a / TAU);
    let c = cos(r) * p.scale;
    let s = sin(r) * p.scale;
    let base = head * p.head_dim;
    var i0 = base + 2u * i;
    var i1 = i0 + 1u;
    if (p.neox == 1u) {
        i0 = base + i;
        i1 = i0 + half;
    }
    let x0 = x[i0];
    let x1 = x[i1];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
}
