//! `lamina perplexity`: perplexity of a model on a text, and the KL divergence of its token
//! distribution from a base model's, measured the way llama.cpp's perplexity tool does.
//!
//! # Method
//! 1. The whole file is tokenized once, with BOS in front where the model adds one.
//! 2. The tokens are cut into consecutive, non-overlapping windows of `ctx` tokens
//!    (`n_windows = n_tokens / ctx`; the remainder is not scored). Where the model uses BOS, the
//!    first token of every window is replaced by BOS, as llama.cpp does.
//! 3. Each window runs from an empty KV cache. Only its second half is scored: the logits at
//!    positions `ctx/2 ..= ctx-2` predict the tokens at `ctx/2+1 ..= ctx-1`, so every scored
//!    token has at least `ctx/2` tokens of context (`ctx - 1 - ctx/2` tokens per window).
//! 4. For each scored token, `nll = logsumexp(logits) - logits[token]` (in f64). PPL =
//!    `exp(mean nll)`; its standard error is `PPL * sqrt(var(nll) / (n - 1))` with `var` the
//!    population variance of the nll values (the error of the mean, carried through `exp`).
//!
//! With a base model, both run on the same windows and, per scored position:
//! `KLD = sum_i p_base(i) * (ln p_base(i) - ln p_model(i))` over the whole vocabulary (exact: no
//! 16-bit compression of the base log-probs and no cut-off of small `p_base`, where llama.cpp
//! has both), top-1 agreement ("same top p"), and `Δp = p_model(token) - p_base(token)` of
//! the correct token. Means carry the same standard error as above; the error of
//! `ln(PPL(Q)/PPL(base))` accounts for the covariance of the two nll series.

use crate::error::{Error, Result};
use crate::generate::{EngineOptions, InferenceAdapter};
use crate::select::{self, BackendChoice};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const METHOD: &str =
    "Method (as llama.cpp's perplexity tool): the file is tokenized once (with BOS where the model
adds it) and cut into consecutive, non-overlapping windows of --ctx tokens; where the model uses
BOS, each window starts with BOS in place of its first token. Each window runs from an empty KV
cache and only its second half is scored: the tokens after the first ctx/2, each predicted with
at least ctx/2 tokens of context (ctx-1-ctx/2 tokens per window). PPL = exp(mean negative
log-likelihood), printed as it accumulates per window ([1]..,[2]..) and at the end with its
standard error (PPL * stderr of the mean nll).

With --kl-base BASE, the base (e.g. unquantized) model runs on the same windows; both models
stay loaded (memory: the sum of both). Reported as llama.cpp does: PPL of both, their ratio and
difference, the KL divergence KLD(base || model) per token over the full vocabulary (mean ±
stderr, median, percentiles, maximum), top-1 agreement (\"same top p\") and Δp, the change in
probability of the correct token. Both tokenizers must give the same ids for the text.";

/// The flags of `lamina perplexity`.
#[derive(clap::Args, Clone, Debug)]
pub struct PerplexityArgs {
    /// A .gguf file, a model folder, or an org/name in the Hugging Face cache.
    #[arg(short, long)]
    pub model: String,
    /// The text to score (UTF-8).
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// Tokens per window (at least 8, at most the model's context).
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many windows (default: all that fit in the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Tokens per prefill pass.
    #[arg(short = 'b', long, default_value_t = 512)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// The base model for KL divergence (the unquantized original of --model).
    #[arg(long)]
    pub kl_base: Option<String>,
    /// Machine-readable result on stdout (the per-window lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Sums of a series, for its mean and the standard error of that mean.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moments {
    pub sum: f64,
    pub sum2: f64,
    pub n: usize,
}

impl Moments {
    pub fn push(&mut self, v: f64) {
        self.sum += v;
        self.sum2 += v * v;
        self.n += 1;
    }
    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
    /// sqrt(population variance / (n - 1)); 0 for fewer than two values.
    pub fn stderr(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let m = self.mean();
        let var = self.sum2 / self.n as f64 - m * m;
        (var.max(0.0) / (self.n - 1) as f64).sqrt()
    }
}

/// Log of the sum of exp over a logit row, and its first argmax (f64 throughout).
fn logsumexp_argmax(row: &[f32]) -> (f64, usize) {
    let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
    for (i, &v) in row.iter().enumerate() {
        if v > best {
            best = v;
            arg = i;
        }
    }
    let m = best as f64;
    let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
    (m + s.ln(), arg)
}

/// The windows of `tokens`: `tokens.len() / ctx` of them, with BOS (if any) in front.
pub fn windows(tokens: &[u32], ctx: usize, bos: Option<u32>) -> Vec<Vec<u32>> {
    tokens
        .chunks_exact(ctx)
        .map(|w| {
            let mut w = w.to_vec();
            if let Some(b) = bos {
                w[0] = b;
            }
            w
        })
        .collect()
}

/// What the base and the model say about one scored position.
#[derive(Clone, Copy, Debug)]
pub struct Compared {
    pub nll: f64,
    pub nll_base: f64,
    pub kld: f64,
    pub same_top: bool,
    /// p_model(token) - p_base(token).
    pub dp: f64,
}

/// Compares two logit rows at a position whose correct next token is `token`.
pub fn compare(base: &[f32], model: &[f32], token: usize) -> Compared {
    let (lse_b, top_b) = logsumexp_argmax(base);
    let (lse_m, top_m) = logsumexp_argmax(model);
    let kld: f64 = base
        .iter()
        .zip(model)
        .map(|(&b, &m)| {
            let lb = b as f64 - lse_b;
            let lm = m as f64 - lse_m;
            lb.exp() * (lb - lm)
        })
        .sum();
    let nll = lse_m - model[token] as f64;
    let nll_base = lse_b - base[token] as f64;
    Compared {
        nll,
        nll_base,
        kld,
        same_top: top_b == top_m,
        dp: (-nll).exp() - (-nll_base).exp(),
    }
}

/// Everything accumulated while comparing with a base model.
#[derive(Clone, Debug, Default)]
struct KlAcc {
    nll: Moments,
    nll_base: Moments,
    nll_cross: f64,
    kld: Moments,
    dp: Moments,
    dp2: Moments,
    same_top: usize,
    klds: Vec<f64>,
    dps: Vec<f64>,
}

impl KlAcc {
    fn push(&mut self, c: &Compared) {
        self.nll.push(c.nll);
        self.nll_base.push(c.nll_base);
        self.nll_cross += c.nll * c.nll_base;
        self.kld.push(c.kld);
        self.dp.push(c.dp);
        self.dp2.push(c.dp * c.dp);
        self.same_top += c.same_top as usize;
        self.klds.push(c.kld);
        self.dps.push(c.dp);
    }
    /// Covariance of the two mean nll values (not of single values).
    fn mean_cov(&self) -> f64 {
        let n = self.nll.n;
        if n < 2 {
            return 0.0;
        }
        let c = self.nll_cross / n as f64 - self.nll.mean() * self.nll_base.mean();
        c / (n - 1) as f64
    }
    fn ln_ratio(&self) -> (f64, f64) {
        let (a, b) = (self.nll.stderr(), self.nll_base.stderr());
        let var = a * a + b * b - 2.0 * self.mean_cov();
        (self.nll.mean() - self.nll_base.mean(), var.max(0.0).sqrt())
    }
    fn same_top(&self) -> (f64, f64) {
        let n = self.kld.n.max(1) as f64;
        let p = self.same_top as f64 / n;
        (p, (p * (1.0 - p) / (n - 1.0).max(1.0)).sqrt())
    }
    fn dp_rms(&self) -> (f64, f64) {
        let rms = self.dp2.mean().sqrt();
        let unc = if rms > 0.0 {
            0.5 / rms * self.dp2.stderr()
        } else {
            0.0
        };
        (rms, unc)
    }
}

/// Linear interpolation between the sorted values around `fraction * (n - 1)`.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let p = fraction.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = p.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    let t = p - i as f64;
    (1.0 - t) * sorted[i] + t * sorted[j]
}

/// A mean and its standard error.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Estimate {
    pub value: f64,
    pub stderr: f64,
}

fn est(value: f64, stderr: f64) -> Estimate {
    Estimate { value, stderr }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KlReport {
    pub base: String,
    pub ppl_base: Estimate,
    pub ppl_model: Estimate,
    /// Correlation of the two nll means.
    pub cor_ln_ppl: f64,
    pub ln_ppl_ratio: Estimate,
    pub ppl_ratio: Estimate,
    pub ppl_diff: Estimate,
    pub kld_mean: Estimate,
    pub kld_max: f64,
    pub kld_p99_9: f64,
    pub kld_p99: f64,
    pub kld_p95: f64,
    pub kld_p90: f64,
    pub kld_median: f64,
    pub kld_p10: f64,
    pub kld_p5: f64,
    pub kld_p1: f64,
    pub kld_min: f64,
    /// Mean of p_model(token) - p_base(token) over scored tokens (a fraction, not %).
    pub dp_mean: Estimate,
    pub dp_max: f64,
    pub dp_p99: f64,
    pub dp_median: f64,
    pub dp_p1: f64,
    pub dp_min: f64,
    pub dp_rms: Estimate,
    /// Share of scored positions whose top-1 token is the same (a fraction, not %).
    pub same_top: Estimate,
    pub base_tokens_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub model: String,
    pub device: String,
    pub file: String,
    pub text_tokens: usize,
    pub ctx: usize,
    pub windows: usize,
    pub scored_tokens: usize,
    /// PPL after each window, as it accumulates.
    pub running_ppl: Vec<f64>,
    pub ppl: Estimate,
    pub seconds: f64,
    /// Window tokens run through the model per second of its forward passes.
    pub tokens_per_s: f64,
    pub kl: Option<KlReport>,
}

/// The text of `path`, or an error that says what is wrong with it.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Input(format!(
            "cannot read the text file {}: {e}; give a UTF-8 text with -f FILE",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::Input(format!(
            "{} is not UTF-8 text (invalid byte at offset {}); convert it to UTF-8 first",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Error::Input(format!(
            "{} is empty: perplexity needs a text of at least one window of --ctx tokens",
            path.display()
        )));
    }
    Ok(text)
}

/// The ids llama.cpp scores: the text without special tokens, BOS in front where the model
/// adds one (never EOS at the end).
pub fn text_tokens(a: &dyn InferenceAdapter, text: &str) -> Result<Vec<u32>> {
    let tok = a.tokenizer();
    let mut ids = Vec::new();
    if tok.adds_bos() {
        ids.extend(tok.bos_id());
    }
    ids.extend(a.encode(text, false, false)?);
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= a.vocab_size()) {
        return Err(Error::Model(format!(
            "the tokenizer gives id {bad}, outside the model's {} logits",
            a.vocab_size()
        )));
    }
    Ok(ids)
}

/// Refuses a window size the model cannot run or the method cannot use.
pub fn check_ctx(a: &dyn InferenceAdapter, ctx: usize) -> Result<()> {
    let max = a.config().max_position_embeddings;
    if ctx < 8 {
        return Err(Error::Input(format!(
            "--ctx {ctx} is too small: a window needs at least 8 tokens (half of it is context)"
        )));
    }
    if ctx > max {
        return Err(Error::Input(format!(
            "--ctx {ctx} is larger than the model's context of {max} tokens; use --ctx {max} or less"
        )));
    }
    Ok(())
}

/// The logits that score window `w`: positions ctx/2 ..= ctx-2, one row each.
fn window_logits(a: &mut dyn InferenceAdapter, w: &[u32]) -> Result<(Vec<f32>, f64)> {
    let first = w.len() / 2;
    let t0 = Instant::now();
    a.reset();
    let rows = a.prefill_rows(&w[..w.len() - 1], w.len() - 1 - first)?;
    Ok((rows, t0.elapsed().as_secs_f64()))
}

/// Scores `tokens` (from [`text_tokens`]) with `model`, and against `base` where given. Both
/// must be opened with a context of at least `ctx`. `on_line` gets the per-window output.
pub fn evaluate(
    model: &mut dyn InferenceAdapter,
    mut base: Option<&mut dyn InferenceAdapter>,
    tokens: &[u32],
    ctx: usize,
    chunks: Option<usize>,
    on_line: &mut dyn FnMut(&str),
) -> Result<Report> {
    check_ctx(model, ctx)?;
    if chunks == Some(0) {
        return Err(Error::Input(
            "--chunks 0 scores nothing; give 1 or more".into(),
        ));
    }
    if tokens.len() < ctx {
        return Err(Error::Input(format!(
            "the text has {} tokens but one window of --ctx {ctx} needs {ctx}; use a longer \
             text or a smaller --ctx (at least 8)",
            tokens.len()
        )));
    }
    let vocab = model.vocab_size();
    if let Some(b) = base.as_deref() {
        if b.vocab_size() != vocab {
            return Err(Error::Input(format!(
                "the base model has {} logits per token and the model {vocab}: KL divergence \
                 needs the same vocabulary",
                b.vocab_size()
            )));
        }
    }
    let tok = model.tokenizer();
    let bos = tok.adds_bos().then(|| tok.bos_id()).flatten();
    let mut wins = windows(tokens, ctx, bos);
    wins.truncate(chunks.unwrap_or(usize::MAX));
    let first = ctx / 2;
    let per_window = ctx - 1 - first;
    let (mut nll, mut kl) = (Moments::default(), KlAcc::default());
    let (mut secs, mut base_secs, mut running) = (0.0, 0.0, vec![]);
    if base.is_some() {
        on_line(&format!(
            "{:>5} {:>22} {:>24} {:>24} {:>18} {:>18}\n",
            "chunk", "PPL", "ln(PPL(Q)/PPL(base))", "KL divergence", "Δp RMS", "same top p"
        ));
    }
    for (i, w) in wins.iter().enumerate() {
        let (rows, s) = window_logits(model, w)?;
        secs += s;
        let targets = &w[first + 1..];
        match base.as_deref_mut() {
            None => {
                for (row, &t) in rows.chunks_exact(vocab).zip(targets) {
                    let (lse, _) = logsumexp_argmax(row);
                    nll.push(lse - row[t as usize] as f64);
                }
                let ppl = nll.mean().exp();
                running.push(ppl);
                on_line(&format!("[{}]{ppl:.4},", i + 1));
            }
            Some(b) => {
                let (brows, s) = window_logits(b, w)?;
                base_secs += s;
                let it = brows.chunks_exact(vocab).zip(rows.chunks_exact(vocab));
                for ((br, mr), &t) in it.zip(targets) {
                    kl.push(&compare(br, mr, t as usize));
                }
                nll = kl.nll;
                let ppl = nll.mean().exp();
                running.push(ppl);
                let (lr, lr_e) = kl.ln_ratio();
                let (rms, rms_e) = kl.dp_rms();
                let (top, top_e) = kl.same_top();
                on_line(&format!(
                    "{:>5} {:>10.4} ± {:<9.4} {:>11.5} ± {:<10.5} {:>11.5} ± {:<10.5} \
                     {:>6.3} ± {:<6.3} % {:>7.3} ± {:<6.3} %\n",
                    i + 1,
                    ppl,
                    ppl * nll.stderr(),
                    lr,
                    lr_e,
                    kl.kld.mean(),
                    kl.kld.stderr(),
                    100.0 * rms,
                    100.0 * rms_e,
                    100.0 * top,
                    100.0 * top_e
                ));
            }
        }
    }
    if base.is_none() {
        on_line("\n");
    }
    let run_tokens = (wins.len() * (ctx - 1)) as f64;
    let ppl = nll.mean().exp();
    let kl_report = base.map(|b| {
        let mut r = kl_report(&mut kl, b.device());
        r.base_tokens_per_s = run_tokens / base_secs.max(1e-9);
        r
    });
    Ok(Report {
        model: model.model_type(),
        device: model.device(),
        file: String::new(),
        text_tokens: tokens.len(),
        ctx,
        windows: wins.len(),
        scored_tokens: wins.len() * per_window,
        running_ppl: running,
        ppl: est(ppl, ppl * nll.stderr()),
        seconds: secs,
        tokens_per_s: run_tokens / secs.max(1e-9),
        kl: kl_report,
    })
}

fn kl_report(kl: &mut KlAcc, base: String) -> KlReport {
    let (m, b) = (kl.nll, kl.nll_base);
    let (ppl, ppl_b) = (m.mean().exp(), b.mean().exp());
    let (ppl_e, ppl_b_e) = (ppl * m.stderr(), ppl_b * b.stderr());
    let cov = kl.mean_cov();
    let denom = m.stderr() * b.stderr();
    let (lr, lr_e) = kl.ln_ratio();
    let diff_var = ppl_e * ppl_e + ppl_b_e * ppl_b_e - 2.0 * ppl * ppl_b * cov;
    kl.klds.sort_by(f64::total_cmp);
    kl.dps.sort_by(f64::total_cmp);
    let (k, d) = (&kl.klds, &kl.dps);
    let (rms, rms_e) = kl.dp_rms();
    let (top, top_e) = kl.same_top();
    KlReport {
        base,
        ppl_base: est(ppl_b, ppl_b_e),
        ppl_model: est(ppl, ppl_e),
        cor_ln_ppl: if denom > 0.0 { cov / denom } else { 1.0 },
        ln_ppl_ratio: est(lr, lr_e),
        ppl_ratio: est(lr.exp(), lr.exp() * lr_e),
        ppl_diff: est(ppl - ppl_b, diff_var.max(0.0).sqrt()),
        kld_mean: est(kl.kld.mean(), kl.kld.stderr()),
        kld_max: percentile(k, 1.0),
        kld_p99_9: percentile(k, 0.999),
        kld_p99: percentile(k, 0.99),
        kld_p95: percentile(k, 0.95),
        kld_p90: percentile(k, 0.90),
        kld_median: percentile(k, 0.5),
        kld_p10: percentile(k, 0.10),
        kld_p5: percentile(k, 0.05),
        kld_p1: percentile(k, 0.01),
        kld_min: percentile(k, 0.0),
        dp_mean: est(kl.dp.mean(), kl.dp.stderr()),
        dp_max: percentile(d, 1.0),
        dp_p99: percentile(d, 0.99),
        dp_median: percentile(d, 0.5),
        dp_p1: percentile(d, 0.01),
        dp_min: percentile(d, 0.0),
        dp_rms: est(rms, rms_e),
        same_top: est(top, top_e),
        base_tokens_per_s: 0.0,
    }
}

/// The closing lines, llama.cpp's layout.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Final estimate: PPL = {:.4} +/- {:.5}",
        r.ppl.value, r.ppl.stderr
    );
    let _ = writeln!(
        s,
        "{} windows of {} tokens ({} scored of {} in the text); model: {:.2} tokens/s on {}",
        r.windows, r.ctx, r.scored_tokens, r.text_tokens, r.tokens_per_s, r.device
    );
    let Some(k) = &r.kl else {
        return s;
    };
    let pm = |e: &Estimate, w: usize| format!("{:>w$.6} ± {:>w$.6}", e.value, e.stderr);
    let pct = |e: &Estimate| format!("{:>7.3} ± {:>6.3} %", 100.0 * e.value, 100.0 * e.stderr);
    let _ = writeln!(s, "base: {:.2} tokens/s on {}", k.base_tokens_per_s, k.base);
    let _ = writeln!(s, "\n====== Perplexity statistics ======");
    let _ = writeln!(
        s,
        "Mean PPL(Q)                   : {}",
        pm(&k.ppl_model, 10)
    );
    let _ = writeln!(s, "Mean PPL(base)                : {}", pm(&k.ppl_base, 10));
    let _ = writeln!(
        s,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * k.cor_ln_ppl
    );
    let _ = writeln!(
        s,
        "Mean ln(PPL(Q)/PPL(base))     : {}",
        pm(&k.ln_ppl_ratio, 10)
    );
    let _ = writeln!(
        s,
        "Mean PPL(Q)/PPL(base)         : {}",
        pm(&k.ppl_ratio, 10)
    );
    let _ = writeln!(s, "Mean PPL(Q)-PPL(base)         : {}", pm(&k.ppl_diff, 10));
    let _ = writeln!(s, "\n====== KL divergence statistics ======");
    let _ = writeln!(s, "Mean    KLD: {}", pm(&k.kld_mean, 10));
    for (name, v) in [
        ("Maximum KLD", k.kld_max),
        ("99.9%   KLD", k.kld_p99_9),
        ("99.0%   KLD", k.kld_p99),
        ("95.0%   KLD", k.kld_p95),
        ("90.0%   KLD", k.kld_p90),
        ("Median  KLD", k.kld_median),
        ("10.0%   KLD", k.kld_p10),
        (" 5.0%   KLD", k.kld_p5),
        (" 1.0%   KLD", k.kld_p1),
        ("Minimum KLD", k.kld_min),
    ] {
        let _ = writeln!(s, "{name}: {v:10.6}");
    }
    let _ = writeln!(s, "\n====== Token probability statistics ======");
    let _ = writeln!(s, "Mean    Δp: {}", pct(&k.dp_mean));
    for (name, v) in [
        ("Maximum Δp", k.dp_max),
        ("99.0%   Δp", k.dp_p99),
        ("Median  Δp", k.dp_median),
        (" 1.0%   Δp", k.dp_p1),
        ("Minimum Δp", k.dp_min),
    ] {
        let _ = writeln!(s, "{name}: {:7.3}%", 100.0 * v);
    }
    let _ = writeln!(s, "RMS Δp    : {}", pct(&k.dp_rms));
    let _ = writeln!(s, "Same top p: {}", pct(&k.same_top));
    s
}

fn open(model: &str, a: &PerplexityArgs) -> Result<Box<dyn InferenceAdapter>> {
    let opts = EngineOptions {
        ctx_size: a.ctx,
        batch: a.batch,
    };
    select::open(model, a.backend, opts)
}

/// Where two tokenizations first differ, for the error that refuses them.
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (n < a.len().max(b.len())).then_some(n)
}

/// `lamina perplexity`: checks the input before anything is uploaded, then scores.
pub fn run(a: &PerplexityArgs) -> Result<Report> {
    if a.chunks == Some(0) {
        return Err(Error::Input(
            "--chunks 0 scores nothing; give 1 or more".into(),
        ));
    }
    let text = read_text(&a.file)?;
    let mut model = open(&a.model, a)?;
    check_ctx(model.as_ref(), a.ctx)?;
    let tokens = text_tokens(model.as_ref(), &text)?;
    if tokens.len() < a.ctx {
        return Err(Error::Input(format!(
            "{} has {} tokens with this model's tokenizer, but one window of --ctx {} needs {}; \
             use a longer text or a smaller --ctx (at least 8)",
            a.file.display(),
            tokens.len(),
            a.ctx,
            a.ctx
        )));
    }
    let mut base = match &a.kl_base {
        Some(b) => {
            let m = open(b, a)?;
            check_ctx(m.as_ref(), a.ctx)
                .map_err(|e| Error::Input(format!("base model {b}: {e}")))?;
            let bt = text_tokens(m.as_ref(), &text)?;
            if let Some(at) = first_difference(&tokens, &bt) {
                return Err(Error::Input(format!(
                    "the base model {b} tokenizes the text differently from {} ({} and {} \
                     tokens, first difference at token {at}); KL divergence needs the same \
                     tokenizer in both",
                    a.model,
                    bt.len(),
                    tokens.len()
                )));
            }
            Some(m)
        }
        None => None,
    };
    model.load()?;
    if let Some(b) = base.as_mut() {
        b.load()?;
    }
    let n = tokens.len() / a.ctx;
    let n = a.chunks.map_or(n, |c| c.min(n));
    tracing::info!(
        "perplexity of {} on {}: {} tokens, {n} windows of {} (scoring {} tokens each)",
        model.model_type(),
        model.device(),
        tokens.len(),
        a.ctx,
        a.ctx - 1 - a.ctx / 2
    );
    let json = a.json;
    let mut on_line = |s: &str| {
        if json {
            eprint!("{s}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
        }
    };
    let mut r = evaluate(
        model.as_mut(),
        base.as_mut()
            .map(|b| b.as_mut() as &mut dyn InferenceAdapter),
        &tokens,
        a.ctx,
        a.chunks,
        &mut on_line,
    )?;
    r.file = a.file.display().to_string();
    r.model = format!("{} ({})", a.model, r.model);
    if let (Some(k), Some(b)) = (r.kl.as_mut(), &a.kl_base) {
        k.base = format!("{b} on {}", k.base);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_drop_the_remainder_and_start_with_bos() {
        let t: Vec<u32> = (10..31).collect();
        let w = windows(&t, 8, Some(1));
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], vec![1, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(w[1][0], 1);
        assert_eq!(w[1][1], 19);
        assert_eq!(windows(&t, 8, None)[1][0], 18);
    }

    #[test]
    fn identical_rows_have_zero_divergence_and_a_shift_changes_nothing() {
        let a = [0.5f32, -1.0, 2.0, 0.0];
        let c = compare(&a, &a, 2);
        assert_eq!(c.kld, 0.0);
        assert!(c.same_top && c.dp == 0.0 && c.nll == c.nll_base);
        let shifted: Vec<f32> = a.iter().map(|v| v + 3.0).collect();
        assert!(compare(&a, &shifted, 2).kld.abs() < 1e-12);
        let other = [2.0f32, -1.0, 0.5, 0.0];
        let c = compare(&a, &other, 2);
        assert!(c.kld > 0.1 && !c.same_top && c.dp < 0.0);
    }

    #[test]
    fn stderr_and_percentiles() {
        let mut m = Moments::default();
        [1.0, 2.0, 3.0, 4.0].iter().for_each(|&v| m.push(v));
        assert!((m.mean() - 2.5).abs() < 1e-12);
        // Sample std 1.2910 over sqrt(4).
        assert!((m.stderr() - 0.645497).abs() < 1e-6);
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 0.5), 2.5);
        assert_eq!(percentile(&s, 1.0), 4.0);
        assert!((percentile(&s, 0.99) - 3.97).abs() < 1e-12);
    }
}
