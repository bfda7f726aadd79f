//! GGML's K-quants: super-blocks of 256 elements with one or two f16 scales (d, dmin) and a
//! small integer scale (and min) per sub-block of 16 or 32 elements.
//!
//! ```text
//! Q2_K  scales[16] qs[64] d dmin             x = d*sc*l - dmin*mn   l: 2 bits, sc/mn: 4 bits
//! Q3_K  hmask[32] qs[64] scales[12] d        x = d*(sc-32)*(l-4)    l: 3 bits, sc: 6 bits
//! Q4_K  d dmin scales[12] qs[128]            x = d*sc*l - dmin*mn   l: 4 bits, sc/mn: 6 bits
//! Q5_K  d dmin scales[12] qh[32] qs[128]     x = d*sc*l - dmin*mn   l: 5 bits
//! Q6_K  ql[128] qh[64] scales:i8[16] d       x = d*sc*(l-32)        l: 6 bits
//! ```
//! Where element i's bits live (`*_at` below):
//! - 2-bit fields (Q2_K levels, Q3_K low bits): byte 32*(i/128) + i%32, bits 2*((i%128)/32).
//! - 4-bit fields (Q4_K, Q5_K low bits): byte 32*(i/64) + i%32, the nibble (i%64)/32.
//! - single high bits (Q3_K hmask, Q5_K qh): bit i/32 of byte i%32.
//! - Q6_K: low nibble in ql[64*(i/128) + i%32 + 32*(p%2)], nibble p/2, with p = (i%128)/32;
//!   the top two bits in qh[32*(i/128) + i%32], bits 2*p.
//! - Q4_K/Q5_K 6-bit scales sc[j] and mins mn[j], j < 8, in 12 bytes: for j < 4, sc in the low
//!   6 bits of byte j and mn of byte j+4; for j >= 4, the low nibbles of sc and mn in byte j+4
//!   (sc low, mn high) and their top two bits in the top bits of bytes j-4 (sc) and j (mn).
//! - Q3_K 6-bit scales j < 16: low nibble in byte j%8 (low nibble for j < 8, else high), top
//!   two bits in byte 8 + j%4 at bits 2*(j/4).

use super::search::{fit_affine, fit_symmetric, nearest};
use super::{f16_at, f16_bytes, f16_round};

const QK_K: usize = 256;

fn crumb_at(i: usize) -> (usize, u32) {
    (32 * (i / 128) + i % 32, 2 * ((i % 128) / 32) as u32)
}

fn nibble_at(i: usize) -> (usize, u32) {
    (32 * (i / 64) + i % 32, 4 * ((i % 64) / 32) as u32)
}

fn high_bit_at(i: usize) -> (usize, u32) {
    (i % 32, (i / 32) as u32)
}

/// Q6_K: (ql byte, shift) of the low nibble and (qh byte, shift) of the top two bits.
fn q6_at(i: usize) -> ((usize, u32), (usize, u32)) {
    let (n, l, p) = (i / 128, i % 32, (i % 128) / 32);
    (
        (64 * n + l + 32 * (p % 2), 4 * (p / 2) as u32),
        (32 * n + l, 2 * p as u32),
    )
}

fn get(bytes: &[u8], (byte, shift): (usize, u32), mask: u8) -> u8 {
    (bytes[byte] >> shift) & mask
}

fn put(bytes: &mut [u8], (byte, shift): (usize, u32), v: u8) {
    bytes[byte] |= v << shift;
}

/// Sub-block j's (scale, min), 6 bits each, of Q4_K/Q5_K.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn pack_scale_min_k4(sc: &[u8], mn: &[u8], s: &mut [u8]) {
    s.fill(0);
    for j in 0..8 {
        if j < 4 {
            s[j] = sc[j];
            s[j + 4] = mn[j];
        } else {
            s[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mn[j] >> 4) << 6;
        }
    }
}

/// Sub-block j's 6-bit scale of Q3_K, still biased by 32.
fn q3_scale(j: usize, s: &[u8]) -> u8 {
    let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
    low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
}

fn pack_q3_scales(biased: &[u8], s: &mut [u8]) {
    s.fill(0);
    for (j, &v) in biased.iter().enumerate() {
        s[j % 8] |= (v & 0xF) << (4 * (j / 8));
        s[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
    }
}

pub(super) fn dequant_q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (i, y) in y.iter_mut().enumerate() {
        let sc = scales[i / 16];
        let dl = d * (sc & 0xF) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *y = dl * get(qs, crumb_at(i), 3) as f32 - ml;
    }
}

pub(super) fn dequant_q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for (i, y) in y.iter_mut().enumerate() {
        let dl = d * (q3_scale(i / 16, scales) as i32 - 32) as f32;
        let l = get(qs, crumb_at(i), 3) | (get(hmask, high_bit_at(i), 1) << 2);
        *y = dl * (l as i32 - 4) as f32;
    }
}

pub(super) fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (i, y) in y.iter_mut().enumerate() {
        let (sc, mn) = scale_min_k4(i / 32, scales);
        *y = (d * sc as f32) * get(qs, nibble_at(i), 0xF) as f32 - dmin * mn as f32;
    }
}

pub(super) fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (i, y) in y.iter_mut().enumerate() {
        let (sc, mn) = scale_min_k4(i / 32, scales);
        let l = get(qs, nibble_at(i), 0xF) | (get(qh, high_bit_at(i), 1) << 4);
        *y = (d * sc as f32) * l as f32 - dmin * mn as f32;
    }
}

pub(super) fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (i, y) in y.iter_mut().enumerate() {
        let (lo, hi) = q6_at(i);
        let l = get(ql, lo, 0xF) | (get(qh, hi, 3) << 4);
        *y = (d * scales[i / 16] as i8 as f32) * (l as i32 - 32) as f32;
    }
}

/// An affine super-block: its f16 scales, integer sub-scales and mins, and levels.
struct Affine {
    d: f32,
    dmin: f32,
    sc: Vec<u8>,
    mn: Vec<u8>,
    levels: [u8; QK_K],
}

/// Fits each sub-block of `sub` elements with levels 0..=top, then quantizes the sub-block
/// scales and mins to 0..=smax against the f16 super-block scales, and re-rounds every level
/// against the scales as they will be decoded.
fn quantize_affine(x: &[f32], sub: usize, top: u8, smax: u8) -> Affine {
    let (s, m): (Vec<f32>, Vec<f32>) = x.chunks_exact(sub).map(|g| fit_affine(g, top)).unzip();
    let super_scale = |v: &[f32]| f16_round(v.iter().fold(0.0f32, |a, &b| a.max(b)) / smax as f32);
    let (d, dmin) = (super_scale(&s), super_scale(&m));
    let to_int = |v: f32, unit: f32| -> u8 {
        if unit > 0.0 {
            nearest(v / unit).clamp(0.0, smax as f32) as u8
        } else {
            0
        }
    };
    let sc: Vec<u8> = s.iter().map(|&v| to_int(v, d)).collect();
    let mn: Vec<u8> = m.iter().map(|&v| to_int(v, dmin)).collect();
    let mut levels = [0u8; QK_K];
    for (i, l) in levels.iter_mut().enumerate() {
        let ds = d * sc[i / sub] as f32;
        let dm = dmin * mn[i / sub] as f32;
        *l = if ds > 0.0 {
            nearest((x[i] + dm) / ds).clamp(0.0, top as f32) as u8
        } else {
            0
        };
    }
    Affine {
        d,
        dmin,
        sc,
        mn,
        levels,
    }
}

/// A symmetric super-block: f16 scale, signed sub-scales, levels biased by `half`.
struct Symmetric {
    d: f32,
    sc: Vec<i32>,
    levels: [u8; QK_K],
}

/// Sub-blocks of 16 with levels -half..half; sub-scales in -smin..smin-1 against d.
fn quantize_symmetric(x: &[f32], half: i32, smin: i32) -> Symmetric {
    let s: Vec<f32> = x.chunks_exact(16).map(|g| fit_symmetric(g, half)).collect();
    // The largest sub-scale takes -smin, the level with no positive twin.
    let max = s
        .iter()
        .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
    let d = f16_round(max / -(smin as f32));
    let sc: Vec<i32> = s
        .iter()
        .map(|&v| {
            if d != 0.0 {
                (nearest(v / d) as i32).clamp(-smin, smin - 1)
            } else {
                0
            }
        })
        .collect();
    let mut levels = [0u8; QK_K];
    for (i, l) in levels.iter_mut().enumerate() {
        let ds = d * sc[i / 16] as f32;
        let q = if ds != 0.0 {
            (nearest(x[i] / ds) as i32).clamp(-half, half - 1)
        } else {
            0
        };
        *l = (q + half) as u8;
    }
    Symmetric { d, sc, levels }
}

pub(super) fn quant_q2_k(x: &[f32], b: &mut [u8]) {
    let a = quantize_affine(x, 16, 3, 15);
    b.fill(0);
    for (j, b) in b[..16].iter_mut().enumerate() {
        *b = a.sc[j] | (a.mn[j] << 4);
    }
    for (i, &l) in a.levels.iter().enumerate() {
        put(&mut b[16..80], crumb_at(i), l);
    }
    b[80..82].copy_from_slice(&f16_bytes(a.d));
    b[82..84].copy_from_slice(&f16_bytes(a.dmin));
}

pub(super) fn quant_q3_k(x: &[f32], b: &mut [u8]) {
    let s = quantize_symmetric(x, 4, 32);
    b.fill(0);
    for (i, &l) in s.levels.iter().enumerate() {
        put(&mut b[0..32], high_bit_at(i), l >> 2);
        put(&mut b[32..96], crumb_at(i), l & 3);
    }
    let biased: Vec<u8> = s.sc.iter().map(|&v| (v + 32) as u8).collect();
    pack_q3_scales(&biased, &mut b[96..108]);
    b[108..110].copy_from_slice(&f16_bytes(s.d));
}

pub(super) fn quant_q4_k(x: &[f32], b: &mut [u8]) {
    let a = quantize_affine(x, 32, 15, 63);
    b.fill(0);
    b[0..2].copy_from_slice(&f16_bytes(a.d));
    b[2..4].copy_from_slice(&f16_bytes(a.dmin));
    pack_scale_min_k4(&a.sc, &a.mn, &mut b[4..16]);
    for (i, &l) in a.levels.iter().enumerate() {
        put(&mut b[16..144], nibble_at(i), l);
    }
}

pub(super) fn quant_q5_k(x: &[f32], b: &mut [u8]) {
    let a = quantize_affine(x, 32, 31, 63);
    b.fill(0);
    b[0..2].copy_from_slice(&f16_bytes(a.d));
    b[2..4].copy_from_slice(&f16_bytes(a.dmin));
    pack_scale_min_k4(&a.sc, &a.mn, &mut b[4..16]);
    for (i, &l) in a.levels.iter().enumerate() {
        put(&mut b[16..48], high_bit_at(i), l >> 4);
        put(&mut b[48..176], nibble_at(i), l & 0xF);
    }
}

pub(super) fn quant_q6_k(x: &[f32], b: &mut [u8]) {
    let s = quantize_symmetric(x, 32, 128);
    b.fill(0);
    for (i, &l) in s.levels.iter().enumerate() {
        let (lo, hi) = q6_at(i);
        put(&mut b[0..128], lo, l & 0xF);
        put(&mut b[128..192], hi, l >> 4);
    }
    for (j, &v) in s.sc.iter().enumerate() {
        b[192 + j] = v as i8 as u8;
    }
    b[208..210].copy_from_slice(&f16_bytes(s.d));
}
