// The activation side of W8A8 (compressed-tensors with dynamic per-token int8 input
// activations): each row (token) of x is quantized at run time, symmetric, exactly as the
// reference's `quantize_activations` (and compressed-tensors/vLLM) do:
//   s = max|x| / 127,  q = clamp(round_half_even(x / s), -128, 127)  (q = 0 where s = 0).
// WGSL's round() rounds half to even. The levels are packed 4 per u32, lowest byte first,
// the layout of an I8 weight row, so that matmul_i8.wgsl multiplies them with dot4I8Packed;
// per token it also stores s and sum(q) (for weights with zero points).
//
// Part of the (matmul, I8) module: pipelines.rs concatenates common.wgsl, a reduce_*.wgsl
// variant, this file and matmul_i8.wgsl (which declares Params and the product's
// bindings). The scratch bindings 4 and 5 are written here and read by the product.

struct TokenScale {
    scale: f32,
    sum: i32,
}

// Levels of token t: words t * k / 4 .. (t + 1) * k / 4.
@group(0) @binding(4) var<storage, read_write> xq: array<u32>;
@group(0) @binding(5) var<storage, read_write> xs: array<TokenScale>;
// The f32 activations, [t, k].
@group(0) @binding(7) var<storage, read_write> x: array<f32>;

// Launched with t workgroups, one per token: Params t and k (k a multiple of 4).
@compute @workgroup_size(64)
fn quantize(ids: Ids) {
    let tok = group_index(ids.wid, ids.nwg);
    let valid = tok < p.t;
    let words = p.k / 4u;
    let b = tok * p.k;
    var amax = 0.0;
    if (valid) {
        for (var i = ids.lid; i < p.k; i += 64u) {
            amax = max(amax, abs(x[b + i]));
        }
    }
    let s = wg_max(amax, ids) / 127.0;
    var sum = 0;
    if (valid) {
        for (var j = ids.lid; j < words; j += 64u) {
            let i = b + j * 4u;
            var q = vec4<i32>(0);
            if (s > 0.0) {
                let v = vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
                q = clamp(vec4<i32>(round(v / s)), vec4<i32>(-128), vec4<i32>(127));
            }
            xq[tok * words + j] = pack4xI8(q);
            sum += q.x + q.y + q.z + q.w;
        }
    }
    let total = wg_isum4(vec4<i32>(sum, 0, 0, 0), ids).x;
    if (valid && ids.lid == 0u) {
        xs[tok] = TokenScale(s, total);
    }
}
