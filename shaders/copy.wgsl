// dst[dst_off + i] = src[src_off + i] for i < n; one invocation per element. The ranges
// may be in the same buffer when they do not overlap (the Rust side checks).

struct Params {
    n: u32,
    src_off: u32,
    dst_off: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i < p.n) {
        dst[p.dst_off + i] = src[p.src_off + i];
    }
}
