// Prepended to every shader by src/backend/wgpu/pipelines.rs.

// Workgroups are laid out on a 2-D grid when there are more than the 65535 a dimension
// allows; this is the workgroup's index in launch order.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
