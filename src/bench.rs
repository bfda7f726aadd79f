//! `lamina bench`: the same model on several backends, side by side, as llama-bench names
//! its figures: prefill tokens/s (pp), decode tokens/s (tg) at a KV depth, load time, peak
//! device memory, and decode's share of the bandwidth floor (weight bytes per token over the
//! device copy rate this bench measures). Median of repetitions, with min and max.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::generate::{Engine, EngineOptions, InferenceAdapter};
use crate::model::llama::Plan;
use crate::model::resolve::{self, LoadedModel};
use crate::sample::{argmax, Rng};
use crate::select::{self, BackendChoice};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub model: String,
    pub backends: Vec<BackendChoice>,
    /// Prompt tokens of the prefill figure (pp).
    pub prompt: usize,
    /// Generated tokens of the decode figure (tg).
    pub gen: usize,
    /// Tokens already in the KV cache before each measurement.
    pub depth: usize,
    pub reps: usize,
    /// Tokens per prefill pass.
    pub batch: usize,
}

/// Median, min and max of a figure over the repetitions.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(f64::total_cmp);
        Stat {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub backend: String,
    pub device: String,
    pub load_s: f64,
    pub prompt: usize,
    pub gen: usize,
    pub depth: usize,
    pub prefill_tok_s: Stat,
    pub decode_tok_s: Stat,
    pub peak_bytes: u64,
    pub weight_bytes: u64,
    /// Device-to-device copy, bytes read plus bytes written per second.
    pub copy_bytes_s: f64,
    /// copy rate / weight bytes: decode cannot beat this at batch 1.
    pub floor_tok_s: f64,
    pub decode_share_of_floor: f64,
}

pub fn run(args: &BenchArgs) -> Result<Vec<BenchRow>> {
    if args.reps == 0 || args.prompt == 0 {
        return Err(Error::Input("bench needs -r >= 1 and -p >= 1".into()));
    }
    let mut rows = vec![];
    for &choice in &args.backends {
        let m = resolve::open(&args.model)?;
        let row = match choice {
            BackendChoice::Cuda => one(crate::backend::cuda::Cuda::new(0)?, m, args),
            BackendChoice::Wgpu => one(
                crate::backend::wgpu::Wgpu::new(Default::default())?,
                m,
                args,
            ),
            BackendChoice::Reference => one(crate::backend::reference::Reference::new(), m, args),
            BackendChoice::Auto => {
                return Err(Error::Input(
                    "bench takes named backends: cuda, wgpu, reference".into(),
                ))
            }
        }?;
        tracing::info!("{}", serde_json::to_string(&row).unwrap_or_default());
        rows.push(row);
    }
    Ok(rows)
}

/// Random token ids (never special structure; the same for every backend).
fn ids(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

fn one<B: Backend + 'static>(b: B, m: LoadedModel, args: &BenchArgs) -> Result<BenchRow> {
    let copy_bytes_s = copy_rate(&b)?;
    let weight_bytes = Plan::new(&m.config, &m.store)?.bytes(&m.store) as u64;
    let vocab = m.config.vocab_size;
    let ctx = args.depth + args.prompt.max(args.gen + 1) + 8;
    let tok = select::tokenizer_for(&m)?;
    let opts = EngineOptions {
        ctx_size: ctx,
        batch: args.batch,
    };
    let mut e = Engine::new(b, m.store, m.config, tok, opts);
    let t0 = Instant::now();
    e.load()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut peak = e.allocated_bytes();
    let mut rng = Rng::new(1234);
    let depth_ids = ids(&mut rng, args.depth, vocab);
    let (mut pp, mut tg) = (vec![], vec![]);
    // One warm-up (kernel compiles, graph capture), then the measured repetitions.
    for rep in 0..=args.reps {
        // A fresh first token each time so no cached prefix is reused.
        let mut seq = depth_ids.clone();
        seq.insert(0, rep as u32 % vocab as u32);
        if args.depth > 0 {
            e.prefill(&seq)?;
        }
        let prompt = ids(&mut rng, args.prompt, vocab);
        let t = Instant::now();
        if args.depth > 0 {
            e.extend(&prompt)?;
        } else {
            let mut p = prompt.clone();
            p[0] = (p[0] + rep as u32) % vocab as u32;
            e.prefill(&p)?;
        }
        let pp_s = t.elapsed().as_secs_f64();
        // Decode at the same depth: back to `depth` tokens, then gen steps.
        let logits = if args.depth > 0 {
            e.prefill(&seq)?
        } else {
            e.prefill(&seq[..1])?
        };
        let mut next = argmax(&logits);
        let t = Instant::now();
        for _ in 0..args.gen {
            next = e.decode_greedy(next)?;
        }
        let tg_s = t.elapsed().as_secs_f64();
        peak = peak.max(e.allocated_bytes());
        if rep > 0 {
            pp.push(args.prompt as f64 / pp_s);
            tg.push(args.gen as f64 / tg_s.max(1e-9));
        }
    }
    let decode = Stat::of(tg);
    let floor = copy_bytes_s / weight_bytes as f64;
    Ok(BenchRow {
        backend: e.backend().name().to_string(),
        device: e.backend().device(),
        load_s,
        prompt: args.prompt,
        gen: args.gen,
        depth: args.depth,
        prefill_tok_s: Stat::of(pp),
        decode_tok_s: decode,
        peak_bytes: peak,
        weight_bytes,
        copy_bytes_s,
        floor_tok_s: floor,
        decode_share_of_floor: decode.median / floor,
    })
}

/// Bytes read plus written per second by the backend's `copy` op over 128 MiB buffers
/// (larger than any L2 cache, within every adapter's binding limit), median of 5 after a
/// warm-up, 16 copies per timing so the final synchronisation does not count.
fn copy_rate<B: Backend>(b: &B) -> Result<f64> {
    let n = 1usize << 25;
    let (x, y) = (b.alloc(n)?, b.alloc(n)?);
    // Never time zeros: fill the source.
    b.write(
        &x,
        &(0..n).map(|i| (i % 1021) as f32 * 0.5).collect::<Vec<_>>(),
    )?;
    let mut times = vec![];
    for rep in 0..6 {
        b.read(&y, 1)?;
        let t = Instant::now();
        for _ in 0..16 {
            b.copy(&x, 0, &y, 0, n)?;
        }
        b.read(&y, 1)?;
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64() / 16.0);
        }
    }
    let t = Stat::of(times).median;
    Ok(2.0 * 4.0 * n as f64 / t)
}

pub fn markdown(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| backend | device | load s | pp tok/s | tg tok/s | depth | peak mem | copy rate | decode floor | share of floor |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let st = |x: &Stat| format!("{:.1} ({:.1}-{:.1})", x.median, x.min, x.max);
        s += &format!(
            "| {} | {} | {:.2} | pp{}: {} | tg{}: {} | {} | {:.2} GiB | {:.3} TB/s | {:.1} tok/s | {:.0}% |\n",
            r.backend,
            r.device,
            r.load_s,
            r.prompt,
            st(&r.prefill_tok_s),
            r.gen,
            st(&r.decode_tok_s),
            r.depth,
            r.peak_bytes as f64 / (1u64 << 30) as f64,
            r.copy_bytes_s / 1e12,
            r.floor_tok_s,
            100.0 * r.decode_share_of_floor
        );
    }
    s
}
