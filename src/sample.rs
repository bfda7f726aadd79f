//! Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p,
//! after a repetition penalty; seeded so the same seed gives the same tokens.

#[derive(Clone, Debug, serde::Serialize)]
pub struct SamplingParams {
    /// 0 (or less) means greedy.
    pub temperature: f32,
    /// 0 means no limit.
    pub top_k: usize,
    /// 1 means no limit.
    pub top_p: f32,
    /// 0 means no limit.
    pub min_p: f32,
    /// 1 means none; applied to tokens seen in the last `repeat_last_n` tokens.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplingParams {
    /// Whether the choice is the argmax of the model's logits as they are (no temperature,
    /// no repetition penalty), which the engine can find on the device.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repeat_penalty == 1.0
    }

    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Rejects values that have no meaning, naming the flag.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::Input(m.to_string()));
        if !self.temperature.is_finite() {
            return bad("--temp must be a finite number");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("--top-p must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("--min-p must be in [0, 1)");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("--repeat-penalty must be a positive number");
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, and the same stream on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = Rng::new(params.seed);
        Sampler { params, rng }
    }

    /// The next token given the logits of the last position and the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let mut logits = logits.to_vec();
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &id in &seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    // As llama.cpp and transformers do: shrink positive logits, grow negative.
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(&logits);
        }
        // Candidates sorted by logit, best first; ties broken by id so runs repeat.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cand.truncate(p.top_k.max(1));
        }
        let max = cand[0].1 as f64;
        let mut probs: Vec<f64> = cand.iter().map(|c| (c.1 as f64 - max).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            let keep = probs.iter().take_while(|&&q| q >= floor).count().max(1);
            probs.truncate(keep);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (i, q) in probs.iter().enumerate() {
            r -= q;
            if r < 0.0 {
                return cand[i].0;
            }
        }
        cand[probs.len() - 1].0
    }
}

/// Index of the largest logit (the first one on ties); NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    // Greedy decoding calls this once per token on a whole vocabulary (128k logits for
    // Llama 3): in fixed-width lanes the compiler turns both passes into vector code, where
    // a running index would not be (it cost ~0.15 ms a token). NaN compares false, so it
    // never becomes the maximum.
    const W: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; W];
    let chunks = logits.chunks_exact(W);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &l) in lanes.iter_mut().zip(c) {
            if l > *m {
                *m = l;
            }
        }
    }
    let max = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    let chunk = logits
        .chunks(W)
        .position(|c| c.iter().fold(false, |found, &l| found | (l == max)))
        .unwrap_or(0);
    let at = logits[(chunk * W).min(logits.len())..]
        .iter()
        .position(|&l| l == max)
        .unwrap_or(0);
    (chunk * W + at) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, -1.0, 2.9, 0.5]
    }

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&logits(), &[]), 1);
    }

    #[test]
    fn repetition_penalty_changes_the_choice() {
        let mut p = SamplingParams::greedy();
        p.repeat_penalty = 1.5;
        let mut s = Sampler::new(p);
        // 3.0 / 1.5 = 2.0 < 2.9
        assert_eq!(s.sample(&logits(), &[1]), 4);
    }

    #[test]
    fn top_k_one_is_greedy_and_same_seed_repeats() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        assert_eq!(Sampler::new(p).sample(&logits(), &[]), 1);
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..50)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        let a = run(&p);
        assert_eq!(a, run(&p));
        // With temperature 1.5 over these logits, more than one token must appear.
        assert!(a.iter().any(|&t| t != a[0]));
        let mut q = p.clone();
        q.seed = 8;
        assert_ne!(a, run(&q));
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        // min_p 0.5: only tokens with p >= half of the best survive: ids 1 and 4.
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        for _ in 0..200 {
            let t = s.sample(&logits(), &[]);
            assert!(t == 1 || t == 4, "min-p let {t} through");
        }
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.3,
            min_p: 0.0,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        for _ in 0..200 {
            assert_eq!(s.sample(&logits(), &[]), 1);
        }
    }

    #[test]
    fn argmax_agrees_with_a_plain_scan() {
        // The first index of the largest non-NaN value (0 when there is none), checked
        // against a one-element-at-a-time scan on lengths around the lane width, with ties,
        // NaN and infinities mixed in.
        fn plain(v: &[f32]) -> u32 {
            let mut best: Option<usize> = None;
            for (i, &l) in v.iter().enumerate() {
                if !l.is_nan() && best.is_none_or(|b| l > v[b]) {
                    best = Some(i);
                }
            }
            best.unwrap_or(0) as u32
        }
        let mut rng = Rng::new(5);
        let specials = [f32::NAN, f32::NEG_INFINITY, f32::INFINITY, 3.0, -7.5];
        for len in [0, 1, 2, 15, 16, 17, 31, 33, 100, 1000] {
            for _ in 0..50 {
                let v: Vec<f32> = (0..len)
                    .map(|_| match rng.next_u64() % 10 {
                        0 => specials[(rng.next_u64() % 5) as usize],
                        1 => 3.0,
                        _ => rng.next_f64() as f32 * 6.0 - 3.0,
                    })
                    .collect();
                assert_eq!(argmax(&v), plain(&v), "{v:?}");
            }
        }
        assert_eq!(argmax(&[f32::NAN; 20]), 0);
    }

    #[test]
    fn nan_never_wins() {
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
    }
}
