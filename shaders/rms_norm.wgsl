// out = x / sqrt(mean(x^2) + eps) * weight, per row of `dim`; one workgroup per row. The
// weight (F32, F16 or BF16) is read through its format file matmul_<dtype>.wgsl; a
// reduce_*.wgsl variant provides wg_sum. Each invocation reads the elements it later
// writes, so out may be x (in place).

struct Params {
    t: u32,
    dim: u32,
    eps: f32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(ids: Ids) {
    let row = group_index(ids.wid, ids.nwg);
    let valid = row < p.t;
    let b = row * p.dim;
    var ss = 0.0;
    if (valid) {
        for (var i = ids.lid; i < p.dim; i += 64u) {
            let v = x[b + i];
            ss += v * v;
        }
    }
    let total = wg_sum(ss, ids);
    if (valid) {
        let inv = inverseSqrt(total / f32(p.dim) + p.eps);
        for (var i = ids.lid; i < p.dim; i += 64u) {
            out[b + i] = x[b + i] * inv * dq1(0u, i);
        }
    }
}
