//! GGML's first block formats: 32 elements per block, one f16 scale (and an f16 offset for the
//! `_1` types).
//!
//! ```text
//! Q4_0  d:f16 qs[16]            x = d * (q - 8)     q: 4 bits
//! Q4_1  d:f16 m:f16 qs[16]      x = d * q + m       q: 4 bits
//! Q5_0  d:f16 qh:u32 qs[16]     x = d * (q - 16)    q: 4 low bits in qs, 5th bit in qh
//! Q5_1  d:f16 m:f16 qh qs[16]   x = d * q + m
//! Q8_0  d:f16 qs:i8[32]         x = d * q
//! ```
//! Element i < 16 is the low nibble of qs[i], element i + 16 its high nibble; bit i of the
//! little-endian qh is the 5th bit of element i.
//!
//! The quantizers are GGML's round-to-nearest definitions: the element of largest magnitude
//! sets the scale (mapped to -8 or -16 so the extra negative level is used), or min and max
//! span the levels for the `_1` types. Their float operations are in GGML's order so the bytes
//! match its reference quantizer.

use super::{f16_at, f16_bytes};

const QK: usize = 32;

/// The level of element i (0..32) of a block whose nibbles are in `qs` and 5th bits in `qh`.
fn level(qs: &[u8], qh: u32, i: usize) -> u8 {
    let nibble = if i < 16 { qs[i] & 0xF } else { qs[i - 16] >> 4 };
    nibble | ((((qh >> i) & 1) as u8) << 4)
}

fn qh_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (i, y) in y.iter_mut().enumerate() {
        *y = d * (level(&b[2..18], 0, i) as i32 - 8) as f32;
    }
}

pub(super) fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (i, y) in y.iter_mut().enumerate() {
        *y = d * level(&b[4..20], 0, i) as f32 + m;
    }
}

pub(super) fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = qh_at(b, 2);
    for (i, y) in y.iter_mut().enumerate() {
        *y = d * (level(&b[6..22], qh, i) as i32 - 16) as f32;
    }
}

pub(super) fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = qh_at(b, 4);
    for (i, y) in y.iter_mut().enumerate() {
        *y = d * level(&b[8..24], qh, i) as f32 + m;
    }
}

pub(super) fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = q as i8 as f32 * d;
    }
}

/// Packs 32 levels of up to 5 bits: nibbles into `qs` (16 bytes), 5th bits as the u32 qh.
fn pack(levels: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for i in 0..16 {
        qs[i] = (levels[i] & 0xF) | ((levels[i + 16] & 0xF) << 4);
    }
    for (i, &l) in levels.iter().enumerate() {
        qh |= ((l >> 4) as u32 & 1) << i;
    }
    qh
}

/// The element of largest magnitude, with its sign (the first one on ties).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    max
}

fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Symmetric 4- or 5-bit levels: `half` is 8 or 16, the level of zero.
fn symmetric_levels(x: &[f32], half: i32) -> (f32, [u8; QK]) {
    let d = signed_absmax(x) / -(half as f32);
    let id = inverse(d);
    let mut levels = [0u8; QK];
    for (l, &v) in levels.iter_mut().zip(x) {
        // Truncation after adding half + 0.5 rounds to nearest, as GGML does.
        *l = ((v * id + (half as f32 + 0.5)) as i32).clamp(0, 2 * half - 1) as u8;
    }
    (d, levels)
}

/// Affine levels 0..=top spanning min..max.
fn affine_levels(x: &[f32], top: i32) -> (f32, f32, [u8; QK]) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / top as f32;
    let id = inverse(d);
    let mut levels = [0u8; QK];
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = (((v - min) * id + 0.5) as i32).clamp(0, top) as u8;
    }
    (d, min, levels)
}

pub(super) fn quant_q4_0(x: &[f32], b: &mut [u8]) {
    let (d, levels) = symmetric_levels(x, 8);
    b[0..2].copy_from_slice(&f16_bytes(d));
    pack(&levels, &mut b[2..18]);
}

pub(super) fn quant_q4_1(x: &[f32], b: &mut [u8]) {
    let (d, min, levels) = affine_levels(x, 15);
    b[0..2].copy_from_slice(&f16_bytes(d));
    b[2..4].copy_from_slice(&f16_bytes(min));
    pack(&levels, &mut b[4..20]);
}

pub(super) fn quant_q5_0(x: &[f32], b: &mut [u8]) {
    let (d, levels) = symmetric_levels(x, 16);
    b[0..2].copy_from_slice(&f16_bytes(d));
    let qh = pack(&levels, &mut b[6..22]);
    b[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub(super) fn quant_q5_1(x: &[f32], b: &mut [u8]) {
    let (d, min, levels) = affine_levels(x, 31);
    b[0..2].copy_from_slice(&f16_bytes(d));
    b[2..4].copy_from_slice(&f16_bytes(min));
    let qh = pack(&levels, &mut b[8..24]);
    b[4..8].copy_from_slice(&qh.to_le_bytes());
}

pub(super) fn quant_q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    b[0..2].copy_from_slice(&f16_bytes(d));
    for (q, &v) in b[2..34].iter_mut().zip(x) {
        // Rounding half away from zero, as GGML's reference does.
        *q = ((v * id).round() as i8) as u8;
    }
}
