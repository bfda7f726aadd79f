//! Rope frequencies for every scaling a supported config can name, computed on the host the
//! way Hugging Face transformers computes them (float32 results from f64 arithmetic).

use super::config::{ModelConfig, RopeScaling};

/// inv_freq (head_dim / 2 values) and the factor on cos/sin for a sequence of `seq_len`
/// positions. Only dynamic NTK and longrope depend on `seq_len`.
pub fn rope_frequencies(c: &ModelConfig, seq_len: usize) -> (Vec<f32>, f32) {
    let d = c.head_dim;
    let base = c.rope_theta as f64;
    let plain = |base: f64| -> Vec<f64> {
        (0..d / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64))
            .collect()
    };
    let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    match &c.rope_scaling {
        None => (to32(plain(base)), 1.0),
        Some(RopeScaling::Linear { factor }) => (
            to32(
                plain(base)
                    .into_iter()
                    .map(|f| f / *factor as f64)
                    .collect(),
            ),
            1.0,
        ),
        Some(RopeScaling::Dynamic {
            factor,
            original_max_position_embeddings: orig,
        }) => {
            let (factor, orig) = (*factor as f64, *orig as f64);
            let len = (seq_len as f64).max(orig);
            let b = if seq_len as f64 > orig {
                base * ((factor * len / orig) - (factor - 1.0)).powf(d as f64 / (d as f64 - 2.0))
            } else {
                base
            };
            (to32(plain(b)), 1.0)
        }
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: orig,
        }) => {
            let (factor, lo, hi, orig) = (
                *factor as f64,
                *low_freq_factor as f64,
                *high_freq_factor as f64,
                *orig as f64,
            );
            let low_wavelen = orig / lo;
            let high_wavelen = orig / hi;
            let f = plain(base)
                .into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (orig / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect();
            (to32(f), 1.0)
        }
        Some(RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings: orig,
            attention_factor,
        }) => {
            let ext = if seq_len > *orig {
                long_factor
            } else {
                short_factor
            };
            let f = plain(base)
                .into_iter()
                .zip(ext.iter())
                .map(|(f, e)| f / *e as f64)
                .collect();
            let scale = attention_factor.unwrap_or_else(|| {
                let factor = c.max_position_embeddings as f64 / *orig as f64;
                if factor <= 1.0 {
                    1.0
                } else {
                    ((1.0 + factor.ln() / (*orig as f64).ln()).sqrt()) as f32
                }
            });
            (to32(f), scale)
        }
    }
}
