//! Scale searches for the K-quants: for a small group of values, the scale (and offset) whose
//! rounded levels reproduce the group with the least squared error.
//!
//! Plain round-to-nearest from the group's extremes wastes levels on one outlier; instead we
//! try a fan of scales around it, and for each one fit scale (and offset) to the rounded
//! levels by least squares, re-round, and fit again. The best candidate wins. Errors come
//! from sums in closed form, so each try is one pass over the group.

/// Round to nearest (ties to even) by the float trick: exact for |v| < 2^22, and larger
/// values stay large, which the callers clamp. `f32::round` is a libm call on baseline x86-64,
/// and this runs for every element of every candidate scale.
pub(super) fn nearest(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC) - MAGIC
}

/// Accumulator lanes of the search loops (groups are 16 or 32 values).
const LANES: usize = 8;

/// The sum of the lanes.
fn total(a: [f32; LANES]) -> f64 {
    a.iter().map(|&v| v as f64).sum::<f64>()
}

/// Sums of a group's values needed by every fit.
struct Moments {
    n: f64,
    sx: f64,
    sxx: f64,
}

fn moments(x: &[f32]) -> Moments {
    Moments {
        n: x.len() as f64,
        sx: x.iter().map(|&v| v as f64).sum(),
        sxx: x.iter().map(|&v| v as f64 * v as f64).sum(),
    }
}

/// Levels of x for step `s` and offset `m` (x = s * l - m), clamped to 0..=top, fitted again
/// by least squares with m >= 0. Returns the fitted (s, m) and their squared error.
fn affine_try(x: &[f32], mo: &Moments, s: f32, m: f32, top: f32) -> Option<(f32, f32, f64)> {
    let inv = 1.0 / s;
    // Sums in LANES independent f32 accumulators, so the loop runs as SIMD (this loop is
    // most of the time `lamina quantize` spends on K-quants). Level sums are integers far
    // below 2^24, so exact in f32; the x * level sum is rounded once per lane.
    let (mut sl, mut sll, mut sxl) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let c: &[f32; LANES] = c.try_into().expect("chunks_exact");
        for j in 0..LANES {
            let l = nearest((c[j] + m) * inv).clamp(0.0, top);
            sl[j] += l;
            sll[j] += l * l;
            sxl[j] += c[j] * l;
        }
    }
    for &v in rest {
        let l = nearest((v + m) * inv).clamp(0.0, top);
        sl[0] += l;
        sll[0] += l * l;
        sxl[0] += v * l;
    }
    let (sl, sll, sxl) = (total(sl), total(sll), total(sxl));
    let det = mo.n * sll - sl * sl;
    if det <= 0.0 {
        return None;
    }
    let offset = (sll * mo.sx - sl * sxl) / det;
    // The format stores a non-negative m (x = s * l - m): a group above zero gets m = 0.
    let (s, m) = if offset > 0.0 {
        (sxl / sll, 0.0)
    } else {
        ((mo.n * sxl - mo.sx * sl) / det, -offset)
    };
    if s <= 0.0 {
        return None;
    }
    // sum (s l - m - x)^2, expanded.
    let err =
        s * s * sll + mo.n * m * m + mo.sxx - 2.0 * s * m * sl - 2.0 * s * sxl + 2.0 * m * mo.sx;
    Some((s as f32, m as f32, err))
}

/// (s, m) with x ~ s * level - m for levels 0..=top, s >= 0, m >= 0.
pub(super) fn fit_affine(x: &[f32], top: u8) -> (f32, f32) {
    let lo = x.iter().fold(0.0f32, |a, &v| a.min(v));
    let hi = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    if hi <= lo || !(hi - lo).is_finite() {
        return (0.0, -lo);
    }
    let mo = moments(x);
    let top = top as f32;
    let (mut best_s, mut best_m, mut best) = ((hi - lo) / top, -lo, f64::INFINITY);
    for k in -10..=10 {
        let (mut s, mut m) = ((hi - lo) / (top + 0.1 * k as f32), -lo);
        for _ in 0..2 {
            let Some((fs, fm, err)) = affine_try(x, &mo, s, m, top) else {
                break;
            };
            if err < best {
                (best_s, best_m, best) = (fs, fm, err);
            }
            (s, m) = (fs, fm);
        }
    }
    (best_s, best_m)
}

/// s with x ~ s * (level - half) for levels 0..2*half; s may be negative so that the value of
/// largest magnitude can take the extra level -half.
pub(super) fn fit_symmetric(x: &[f32], half: i32) -> f32 {
    let max = x
        .iter()
        .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
    if max == 0.0 || !max.is_finite() {
        return 0.0;
    }
    let mo = moments(x);
    let (lo, hi) = (-half as f32, (half - 1) as f32);
    let mut best_s = 0.0f32;
    let mut best = mo.sxx;
    for k in -10..=10 {
        let mut s = max / -(half as f32 + 0.1 * k as f32);
        for _ in 0..2 {
            let inv = 1.0 / s;
            let (mut sxq, mut sqq) = ([0.0f32; LANES], [0.0f32; LANES]);
            let chunks = x.chunks_exact(LANES);
            let rest = chunks.remainder();
            for c in chunks {
                let c: &[f32; LANES] = c.try_into().expect("chunks_exact");
                for j in 0..LANES {
                    let q = nearest(c[j] * inv).clamp(lo, hi);
                    sxq[j] += c[j] * q;
                    sqq[j] += q * q;
                }
            }
            for &v in rest {
                let q = nearest(v * inv).clamp(lo, hi);
                sxq[0] += v * q;
                sqq[0] += q * q;
            }
            let (sxq, sqq) = (total(sxq), total(sqq));
            if sqq == 0.0 || sxq == 0.0 {
                break;
            }
            s = (sxq / sqq) as f32;
            // With s fitted to these levels the error is sum x^2 - sxq^2 / sqq.
            let err = mo.sxx - sxq * sxq / sqq;
            if err < best {
                (best_s, best) = (s, err);
            }
        }
    }
    best_s
}
