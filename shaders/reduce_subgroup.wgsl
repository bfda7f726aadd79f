// Workgroup-wide reductions for workgroups of 64 invocations with subgroup operations
// (adapter feature SUBGROUP): one subgroupAdd/subgroupMax per subgroup, then the partial
// results of the subgroups through workgroup memory. Subgroup sizes differ between devices
// (8 on lavapipe, 32 on NVIDIA, 64 on AMD), so nothing assumes one. Same names as
// reduce_shared.wgsl; call in uniform control flow.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
}

var<workgroup> red4: array<vec4<f32>, 64>;

fn wg_sum4(v: vec4<f32>, ids: Ids) -> vec4<f32> {
    let s = subgroupAdd(v);
    if (ids.sg_lane == 0u) {
        red4[ids.sg_id] = s;
    }
    workgroupBarrier();
    var r = red4[0];
    for (var i = 1u; i < ids.sg_count; i++) {
        r += red4[i];
    }
    workgroupBarrier();
    return r;
}

fn wg_sum(v: f32, ids: Ids) -> f32 {
    return wg_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), ids).x;
}

fn wg_max(v: f32, ids: Ids) -> f32 {
    let s = subgroupMax(v);
    if (ids.sg_lane == 0u) {
        red4[ids.sg_id].x = s;
    }
    workgroupBarrier();
    var r = red4[0].x;
    for (var i = 1u; i < ids.sg_count; i++) {
        r = max(r, red4[i].x);
    }
    workgroupBarrier();
    return r;
}

var<workgroup> ired4: array<vec4<i32>, 64>;

// Integer sums (int8 products accumulated in i32) stay exact.
fn wg_isum4(v: vec4<i32>, ids: Ids) -> vec4<i32> {
    let s = subgroupAdd(v);
    if (ids.sg_lane == 0u) {
        ired4[ids.sg_id] = s;
    }
    workgroupBarrier();
    var r = ired4[0];
    for (var i = 1u; i < ids.sg_count; i++) {
        r += ired4[i];
    }
    workgroupBarrier();
    return r;
}
