// argmax: the index of the largest of x[0, n) into out[0] (as an f32, exact for any
// vocabulary below 2^24), the first one on ties; a NaN never wins and all-NaN gives 0, as
// sample::argmax (the reference) and kernels/argmax.cu do. One workgroup: greedy decoding
// then reads back one value instead of a vocabulary of logits.
// NaN is recognized by its bits: WGSL lets implementations assume comparisons see no NaN.

struct Params {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const NONE: u32 = 0xffffffffu;
var<workgroup> wv: array<f32, 256>;
var<workgroup> wi: array<u32, 256>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether candidate (v2, i2) beats (v, i): a real value, and larger, or equal at a lower
// index; anything beats no candidate (i = NONE).
fn beats(v: f32, i: u32, v2: f32, i2: u32) -> bool {
    if (i2 == NONE || is_nan(v2)) {
        return false;
    }
    return i == NONE || v2 > v || (v2 == v && i2 < i);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var v = 0.0;
    var at = NONE;
    for (var j = lid; j < p.n; j += 256u) {
        let c = x[j];
        if (beats(v, at, c, j)) {
            v = c;
            at = j;
        }
    }
    wv[lid] = v;
    wi[lid] = at;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s && beats(wv[lid], wi[lid], wv[lid + s], wi[lid + s])) {
            wv[lid] = wv[lid + s];
            wi[lid] = wi[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = select(f32(wi[0]), 0.0, wi[0] == NONE);
    }
}
