// Workgroup-wide reductions for workgroups of 64 invocations, through workgroup memory: the
// variant for adapters without subgroup operations. reduce_subgroup.wgsl defines the same
// names; src/backend/wgpu/pipelines.rs prepends one of the two. Every invocation of the
// workgroup must call these in uniform control flow, and gets the result.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

var<workgroup> red4: array<vec4<f32>, 64>;

fn wg_sum4(v: vec4<f32>, ids: Ids) -> vec4<f32> {
    red4[ids.lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (ids.lid < s) {
            red4[ids.lid] += red4[ids.lid + s];
        }
        workgroupBarrier();
    }
    let r = red4[0];
    workgroupBarrier();
    return r;
}

fn wg_sum(v: f32, ids: Ids) -> f32 {
    return wg_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), ids).x;
}

fn wg_max(v: f32, ids: Ids) -> f32 {
    red4[ids.lid].x = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (ids.lid < s) {
            red4[ids.lid].x = max(red4[ids.lid].x, red4[ids.lid + s].x);
        }
        workgroupBarrier();
    }
    let r = red4[0].x;
    workgroupBarrier();
    return r;
}

var<workgroup> ired4: array<vec4<i32>, 64>;

// Integer sums (int8 products accumulated in i32) stay exact.
fn wg_isum4(v: vec4<i32>, ids: Ids) -> vec4<i32> {
    ired4[ids.lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (ids.lid < s) {
            ired4[ids.lid] += ired4[ids.lid + s];
        }
        workgroupBarrier();
    }
    let r = ired4[0];
    workgroupBarrier();
    return r;
}
