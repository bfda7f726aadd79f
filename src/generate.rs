//! The engine: a model on a backend with its KV cache, the `InferenceAdapter` trait that
//! hides which backend runs it, and the generation loop (prefill, decode, stop, timings).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::{ModelConfig, RopeScaling};
use crate::model::llama::{Model, Scratch};
use crate::model::rope::rope_frequencies;
use crate::sample::{Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;
use crate::weights::WeightStore;
use std::sync::Arc;
use std::time::Instant;

/// A loaded model that can be prompted, whatever backend runs it.
pub trait InferenceAdapter {
    /// Uploads the weights and allocates the KV cache (a no-op when loaded).
    fn load(&mut self) -> Result<()>;
    /// Frees the device memory of weights, cache and activations.
    fn unload(&mut self);
    fn is_loaded(&self) -> bool;
    /// `add_special`: BOS/EOS as the model's settings say; `parse_special`: text such as
    /// `<|im_start|>` becomes its special token (what a rendered chat template needs).
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>>;
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// Runs a prompt as a new sequence (reusing the cache for a shared prefix) and returns
    /// the logits of its last position.
    fn prefill(&mut self, ids: &[u32]) -> Result<Vec<f32>>;
    /// Appends one token to the sequence and returns the logits after it.
    fn decode_token(&mut self, id: u32) -> Result<Vec<f32>>;
    /// `decode_token`, then the most likely next token (`sample::argmax` of the logits),
    /// which a backend may find without reading the logits back.
    fn decode_greedy(&mut self, id: u32) -> Result<u32> {
        Ok(crate::sample::argmax(&self.decode_token(id)?))
    }
    /// Runs `ids` as `prefill` does, returning the logits of its last `rows` positions
    /// (`rows` rows of `vocab_size`), for comparisons with other engines.
    fn prefill_rows(&mut self, ids: &[u32], rows: usize) -> Result<Vec<f32>>;
    /// Forgets the cached sequence: the next prefill starts from an empty cache and shares
    /// no prefix with what ran before (perplexity windows are independent).
    fn reset(&mut self);
    /// Family and variant, e.g. "llama (SmolLM2)".
    fn model_type(&self) -> String;
    fn context_length(&self) -> usize;
    fn vocab_size(&self) -> usize;
    fn config(&self) -> &ModelConfig;
    fn tokenizer(&self) -> Arc<Tokenizer>;
    /// Backend name and device, e.g. "wgpu: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)".
    fn device(&self) -> String;
    /// Device bytes held now.
    fn allocated_bytes(&self) -> u64;
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// KV cache length; clamped to the model's maximum.
    pub ctx_size: usize,
    /// Tokens per prefill pass (longer prompts run in several passes).
    pub batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            ctx_size: 4096,
            batch: 512,
        }
    }
}

struct Loaded<B: Backend> {
    model: Model<B>,
    scratch: Scratch<B>,
    cache: B::Cache,
    /// Activations for all-rows logits (golden comparisons), made on first use.
    all: Option<Scratch<B>>,
    /// inv_freq of rope on the device, and what it holds with its cos/sin factor (changes
    /// only for dynamic and longrope scaling).
    rope_buf: B::Buf,
    rope: (Vec<f32>, f32),
}

/// A model on backend `B`.
pub struct Engine<B: Backend> {
    backend: B,
    store: WeightStore,
    cfg: ModelConfig,
    tokenizer: Arc<Tokenizer>,
    opts: EngineOptions,
    loaded: Option<Loaded<B>>,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
}

impl<B: Backend> Engine<B> {
    pub fn new(
        backend: B,
        store: WeightStore,
        cfg: ModelConfig,
        tokenizer: Tokenizer,
        opts: EngineOptions,
    ) -> Engine<B> {
        let mut opts = opts;
        opts.ctx_size = opts.ctx_size.clamp(1, cfg.max_position_embeddings.max(1));
        opts.batch = opts.batch.clamp(1, opts.ctx_size);
        Engine {
            backend,
            store,
            cfg,
            tokenizer: Arc::new(tokenizer),
            opts,
            loaded: None,
            tokens: vec![],
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Appends `ids` to the cached sequence; the logits of the last one.
    pub fn extend(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.run(self.tokens.len(), ids, false)
    }

    fn load_model(&mut self) -> Result<()> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let b = &self.backend;
        let c = &self.cfg;
        let plan_bytes = crate::model::llama::Plan::new(c, &self.store)?.bytes(&self.store) as u64;
        let cache = b.cache_bytes(c.num_layers, c.num_kv_heads, c.head_dim, self.opts.ctx_size);
        let act = crate::model::diagnose::activation_bytes(c, self.opts.batch);
        b.check_memory(plan_bytes + cache + act)?;
        let t0 = Instant::now();
        let bar = crate::progress::bytes_bar("uploading weights");
        let model = Model::load(b, self.cfg.clone(), &self.store, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        tracing::info!(
            "loaded {} ({:.2} GB) onto {} in {:.2} s ({:.2} GB/s)",
            self.store.describe(),
            model.weight_bytes as f64 / 1e9,
            b.device(),
            secs,
            model.weight_bytes as f64 / 1e9 / secs.max(1e-9)
        );
        let c = &self.cfg;
        let cache = b.alloc_cache(c.num_layers, c.num_kv_heads, c.head_dim, self.opts.ctx_size)?;
        let scratch = model.scratch(b, self.opts.batch, false)?;
        let rope = rope_frequencies(c, 1);
        let rope_buf = b.alloc(rope.0.len())?;
        b.write(&rope_buf, &rope.0)?;
        #[rustfmt::skip]
        let loaded = Loaded { model, scratch, cache, all: None, rope_buf, rope };
        self.loaded = Some(loaded);
        self.tokens.clear();
        Ok(())
    }

    /// Runs `ids` after the first `pos` cached tokens; returns the last row's logits, or
    /// every row's when `all` (then in passes of at most 64 rows, whose logits fit).
    fn run(&mut self, pos: usize, ids: &[u32], all: bool) -> Result<Vec<f32>> {
        let rows = self.step(pos, ids, all)?;
        if all {
            return Ok(rows);
        }
        let l = self.loaded.as_ref().expect("loaded by step");
        self.backend.read(&l.scratch.logits, self.cfg.vocab_size)
    }

    /// `run` up to the logits: every row's when `all`, else none (the last row's are in
    /// the scratch's logits buffer).
    fn step(&mut self, pos: usize, ids: &[u32], all: bool) -> Result<Vec<f32>> {
        let ctx = self.opts.ctx_size;
        if pos + ids.len() > ctx {
            return Err(Error::Input(format!(
                "the sequence needs {} tokens but the context holds {ctx} (model maximum {}); \
                 shorten the prompt or raise --ctx-size",
                pos + ids.len(),
                self.cfg.max_position_embeddings
            )));
        }
        if ids.is_empty() {
            return Err(Error::Input("empty prompt: nothing to run".into()));
        }
        self.tokens.truncate(pos);
        self.load_model()?;
        let (cfg, vocab) = (&self.cfg, self.cfg.vocab_size);
        let l = self.loaded.as_mut().expect("loaded above");
        let b = &self.backend;
        if all && l.all.is_none() {
            l.all = Some(l.model.scratch(b, l.scratch.max_t.min(64), true)?);
        }
        let s = if all {
            l.all.as_ref().expect("made above")
        } else {
            &l.scratch
        };
        // As transformers does, one rope regime for the whole call, chosen by its last
        // position (longrope switches to its long factors for every position of a prompt
        // that ends past the original length; keys cached before keep theirs).
        if matches!(
            cfg.rope_scaling,
            Some(RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. })
        ) {
            let rope = rope_frequencies(cfg, pos + ids.len());
            if rope != l.rope {
                b.write(&l.rope_buf, &rope.0)?;
                l.rope = rope;
            }
        }
        let (mut at, mut out) = (pos, vec![]);
        for chunk in ids.chunks(s.max_t) {
            let end = at + chunk.len();
            let positions: Vec<u32> = (at as u32..end as u32).collect();
            b.set_step(chunk, &positions)?;
            let key = (chunk.len() == 1 && !all).then_some(1);
            let (m, c, rope) = (&l.model, &l.cache, (&l.rope_buf, l.rope.1));
            b.record(key, &mut || m.forward(b, s, c, rope, chunk.len(), all))?;
            if all {
                out.extend(b.read(&s.logits, chunk.len() * vocab)?);
            }
            at = end;
        }
        self.tokens.extend_from_slice(ids);
        Ok(out)
    }
}

impl<B: Backend> InferenceAdapter for Engine<B> {
    fn load(&mut self) -> Result<()> {
        self.load_model()
    }
    fn unload(&mut self) {
        if let Err(e) = self.backend.clear_recordings() {
            tracing::warn!("{e}");
        }
        if self.loaded.take().is_some() {
            tracing::info!(
                "unloaded {} from {}",
                self.store.describe(),
                self.backend.device()
            );
        }
        self.tokens.clear();
    }
    fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, add_special, parse_special)
    }
    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true)
    }
    fn prefill(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        // Reuse the cached prefix, but always run at least the last token for its logits.
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        let pos = common.min(ids.len().saturating_sub(1));
        self.run(pos, &ids[pos..], false)
    }
    fn decode_token(&mut self, id: u32) -> Result<Vec<f32>> {
        let pos = self.tokens.len();
        self.run(pos, &[id], false)
    }
    fn decode_greedy(&mut self, id: u32) -> Result<u32> {
        let pos = self.tokens.len();
        self.step(pos, &[id], false)?;
        let l = self.loaded.as_ref().expect("loaded by step");
        self.backend.argmax(&l.scratch.logits, self.cfg.vocab_size)
    }
    fn prefill_rows(&mut self, ids: &[u32], rows: usize) -> Result<Vec<f32>> {
        let rows = rows.clamp(1, ids.len().max(1));
        let split = ids.len().saturating_sub(rows);
        if split > 0 {
            self.prefill(&ids[..split])?;
        } else {
            self.tokens.clear();
        }
        self.run(split, &ids[split..], true)
    }
    fn reset(&mut self) {
        self.tokens.clear();
    }
    fn model_type(&self) -> String {
        format!("{:?} ({})", self.cfg.family, self.cfg.variant).to_lowercase()
    }
    fn context_length(&self) -> usize {
        self.opts.ctx_size
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    fn tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer.clone()
    }
    fn device(&self) -> String {
        format!("{}: {}", self.backend.name(), self.backend.device())
    }
    fn allocated_bytes(&self) -> u64 {
        self.backend.allocated_bytes()
    }
}

/// What to generate and when to stop.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Text that ends generation (not included in the output).
    pub stop: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    pub prompt_tokens: usize,
    pub prompt_secs: f64,
    pub gen_secs: f64,
}

impl Generation {
    pub fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_secs.max(1e-9)
    }
    /// Tokens after the first, over the time after the first (the first comes from prefill).
    pub fn gen_tok_s(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.gen_secs.max(1e-9)
    }
}

/// Generates after `prompt`, streaming text to `on_text` as it forms whole characters and
/// cannot be the start of a stop string.
pub fn generate(
    a: &mut dyn InferenceAdapter,
    prompt: &[u32],
    p: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    p.sampling.validate()?;
    let eos = a.config().eos_token_ids.clone();
    let mut sampler = Sampler::new(p.sampling.clone());
    let mut history = prompt.to_vec();
    // Greedy: the next token comes from decode_greedy (no logits read back).
    let (greedy, mut next) = (p.sampling.is_greedy(), None);
    let t0 = Instant::now();
    let mut logits = a.prefill(prompt)?;
    let prompt_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let tokenizer = a.tokenizer();
    let mut stream = tokenizer.stream(true);
    let (mut tokens, mut text, mut shown) = (vec![], String::new(), 0);
    let mut stop = StopReason::MaxTokens;
    while tokens.len() < p.max_tokens {
        let id = match next.take() {
            Some(id) => id,
            None => sampler.sample(&logits, &history),
        };
        if eos.contains(&id) {
            stop = StopReason::Eos;
            break;
        }
        tokens.push(id);
        history.push(id);
        if let Some(piece) = stream.push(id)? {
            text.push_str(&piece);
        }
        if let Some(at) = p.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
            stop = StopReason::StopString;
            break;
        }
        // Hold back a tail that could still grow into a stop string.
        let hold = p
            .stop
            .iter()
            .map(|s| partial_suffix(&text, s))
            .max()
            .unwrap_or(0);
        let safe = text.len() - hold;
        if safe > shown {
            on_text(&text[shown..safe]);
            shown = safe;
        }
        if tokens.len() == p.max_tokens {
            break;
        }
        if history.len() >= a.context_length() {
            stop = StopReason::ContextFull;
            break;
        }
        if greedy {
            next = Some(a.decode_greedy(id)?);
        } else {
            logits = a.decode_token(id)?;
        }
    }
    if stop != StopReason::StopString {
        if let Some(piece) = stream.flush()? {
            text.push_str(&piece);
        }
    }
    if text.len() > shown {
        on_text(&text[shown..]);
    }
    Ok(Generation {
        tokens,
        text,
        stop,
        prompt_tokens: prompt.len(),
        prompt_secs,
        gen_secs: t1.elapsed().as_secs_f64(),
    })
}

/// Length of the longest end of `text` that is a proper prefix of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_suffix_finds_the_start_of_a_stop_string() {
        assert_eq!(super::partial_suffix("hello <|e", "<|end|>"), 3);
        assert_eq!(super::partial_suffix("hello", "<|end|>"), 0);
        assert_eq!(super::partial_suffix("a<", "<|end|>"), 1);
    }
}
