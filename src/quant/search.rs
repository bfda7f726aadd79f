//! Scale searches for the K-quants: for a small group of values, the scale (and offset) whose
//! rounded levels reproduce the group with the least squared error.
//!
//! Plain round-to-nearest from the group's extremes wastes levels on one outlier; instead we
//! try a fan of scales around it, and for each one fit scale (and offset) to the rounded
//! levels by least squares, re-round, and fit again. The best candidate wins. Sums are f64.

/// Level of `v` for step `s` and offset `m` (x = s * l - m), clamped to 0..=top.
fn affine_level(v: f32, s: f64, m: f64, top: u8) -> u8 {
    ((v as f64 + m) / s).round().clamp(0.0, top as f64) as u8
}

/// Least-squares (s, m) for x = s * l - m with m >= 0, or None when the levels are constant.
fn fit_affine_to(x: &[f32], levels: &[u8]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    let (mut sl, mut sll, mut sx, mut sxl) = (0.0, 0.0, 0.0, 0.0);
    for (&v, &l) in x.iter().zip(levels) {
        let (v, l) = (v as f64, l as f64);
        sl += l;
        sll += l * l;
        sx += v;
        sxl += v * l;
    }
    let det = n * sll - sl * sl;
    if det <= 0.0 {
        return None;
    }
    let s = (n * sxl - sx * sl) / det;
    let offset = (sll * sx - sl * sxl) / det;
    // The format stores a non-negative m (x = s * l - m): a group above zero gets m = 0.
    let (s, m) = if offset > 0.0 {
        (sxl / sll, 0.0)
    } else {
        (s, -offset)
    };
    (s > 0.0).then_some((s, m))
}

fn affine_error(x: &[f32], levels: &[u8], s: f64, m: f64) -> f64 {
    x.iter()
        .zip(levels)
        .map(|(&v, &l)| (s * l as f64 - m - v as f64).powi(2))
        .sum()
}

/// Levels 0..=top and (s, m) with x ~ s * level - m, s >= 0, m >= 0.
pub(super) fn fit_affine(x: &[f32], top: u8, levels: &mut [u8]) -> (f32, f32) {
    let lo = x.iter().fold(0.0f32, |a, &v| a.min(v)) as f64;
    let hi = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
    if hi <= lo || !(hi - lo).is_finite() {
        levels.fill(0);
        return (0.0, (-lo) as f32);
    }
    let mut trial = vec![0u8; x.len()];
    // Start from plain min..max rounding, which is always valid.
    let (mut best_s, mut best_m) = ((hi - lo) / top as f64, -lo);
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = affine_level(v, best_s, best_m, top);
    }
    let mut best = affine_error(x, levels, best_s, best_m);
    for k in -10..=10 {
        let steps = top as f64 + 0.1 * k as f64;
        let (mut s, mut m) = ((hi - lo) / steps, -lo);
        for _ in 0..3 {
            for (l, &v) in trial.iter_mut().zip(x) {
                *l = affine_level(v, s, m, top);
            }
            let Some((fs, fm)) = fit_affine_to(x, &trial) else {
                break;
            };
            (s, m) = (fs, fm);
            let err = affine_error(x, &trial, s, m);
            if err < best {
                best = err;
                (best_s, best_m) = (s, m);
                levels.copy_from_slice(&trial);
            }
        }
    }
    (best_s as f32, best_m as f32)
}

/// Levels 0..2*half for x ~ s * (level - half); s may be negative so that the value of
/// largest magnitude can take the extra level -half.
pub(super) fn fit_symmetric(x: &[f32], half: i32, levels: &mut [u8]) -> f32 {
    let max = x
        .iter()
        .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a }) as f64;
    levels.fill(half as u8);
    if max == 0.0 || !max.is_finite() {
        return 0.0;
    }
    let level = |v: f32, s: f64| -> u8 {
        ((v as f64 / s)
            .round()
            .clamp(-half as f64, (half - 1) as f64)
            + half as f64) as u8
    };
    let mut trial = vec![0u8; x.len()];
    let mut best_s = 0.0f64;
    let mut best = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
    for k in -10..=10 {
        let mut s = max / -(half as f64 + 0.1 * k as f64);
        for _ in 0..3 {
            for (l, &v) in trial.iter_mut().zip(x) {
                *l = level(v, s);
            }
            let (mut sxq, mut sqq) = (0.0, 0.0);
            for (&v, &l) in x.iter().zip(&trial) {
                let q = l as f64 - half as f64;
                sxq += v as f64 * q;
                sqq += q * q;
            }
            if sqq == 0.0 {
                break;
            }
            s = sxq / sqq;
            // With s fitted to these levels the error is sum x^2 - sxq^2 / sqq.
            let err = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() - sxq * sxq / sqq;
            if err < best {
                best = err;
                best_s = s;
                levels.copy_from_slice(&trial);
            }
            if s == 0.0 {
                break;
            }
        }
    }
    best_s as f32
}
