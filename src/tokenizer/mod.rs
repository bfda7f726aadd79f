//! Tokenizers: from `tokenizer.json` (+ `tokenizer_config.json`) or built from GGUF vocabulary
//! metadata, all run by the `tokenizers` crate. Special tokens (BOS/EOS) are added here, not by
//! the crate's post-processor, so both sources follow one rule: the model's `add_bos`/`add_eos`.

mod gguf;
mod stream;

pub use stream::StreamDecoder;

use crate::error::{Error, Result};
use crate::weights::gguf::Metadata;
use std::path::Path;
use std::sync::OnceLock;

/// Texts of end-of-turn tokens that stop generation besides EOS (the ones llama.cpp also
/// recognises by text, since many files do not name them in metadata).
const END_OF_TURN: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<｜end▁of▁sentence｜>",
];

pub struct Tokenizer {
    /// Splits special tokens out of the text (`parse_special = true`).
    hf: tokenizers::Tokenizer,
    /// The same tokenizer with special tokens read as plain text; made on first use.
    literal: OnceLock<tokenizers::Tokenizer>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    vocab_size: usize,
    /// Where the vocabulary came from and how it splits text, for `inspect`.
    source: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .finish()
    }
}

/// The parts both loaders produce.
struct Parts {
    hf: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    vocab_size: usize,
    source: String,
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

impl Tokenizer {
    fn from_parts(p: Parts, log: bool) -> Result<Tokenizer> {
        let n = p.vocab_size as u32;
        for (what, id) in [("bos", p.bos), ("eos", p.eos)] {
            if let Some(id) = id.filter(|&id| id >= n) {
                return Err(Error::Tokenizer(format!(
                    "{what} id {id} is outside the vocabulary of {n} tokens"
                )));
            }
        }
        if p.add_bos && p.bos.is_none() {
            return Err(Error::Tokenizer(
                "the model asks for a BOS token but names none".into(),
            ));
        }
        if p.add_eos && p.eos.is_none() {
            return Err(Error::Tokenizer(
                "the model asks for an EOS token but names none".into(),
            ));
        }
        let t = Tokenizer {
            hf: p.hf,
            literal: OnceLock::new(),
            bos: p.bos,
            eos: p.eos,
            add_bos: p.add_bos,
            add_eos: p.add_eos,
            vocab_size: p.vocab_size,
            source: p.source,
        };
        if log {
            tracing::info!("tokenizer: {}", t.kind());
        }
        Ok(t)
    }

    /// Built from the `tokenizer.ggml.*` keys of a GGUF file.
    pub fn from_gguf(meta: &Metadata) -> Result<Tokenizer> {
        Tokenizer::from_parts(gguf::build(meta)?, true)
    }

    /// `from_gguf` without the INFO line: for trying candidate vocabularies (`lamina
    /// quantize` picks the `tokenizer.ggml.pre` that reproduces a tokenizer.json).
    pub fn from_gguf_quiet(meta: &Metadata) -> Result<Tokenizer> {
        Tokenizer::from_parts(gguf::build(meta)?, false)
    }

    /// `tokenizer.json`, with `tokenizer_config.json` beside it when there is one.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let json = dir.join("tokenizer.json");
        if !json.is_file() {
            return Err(Error::Tokenizer(format!(
                "no tokenizer.json in {} (lamina reads tokenizers from tokenizer.json or GGUF)",
                dir.display()
            )));
        }
        let config = dir.join("tokenizer_config.json");
        Tokenizer::from_files(&json, config.is_file().then_some(config.as_path()))
    }

    /// A `tokenizer.json`, and optionally the `tokenizer_config.json` that says which tokens
    /// are BOS/EOS and whether they are added.
    pub fn from_files(json: &Path, config: Option<&Path>) -> Result<Tokenizer> {
        let hf = tokenizers::Tokenizer::from_file(json)
            .map_err(|e| tok_err(&json.display().to_string(), e))?;
        let config = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?
            }
            None => serde_json::Value::Null,
        };
        Tokenizer::from_parts(json_parts(hf, &config, json)?, true)
    }

    /// Token ids of `text`. `add_special` adds BOS/EOS where the model asks for them;
    /// `parse_special` turns special-token texts such as `<|im_start|>` into their ids (a
    /// rendered chat template needs this; user text usually should not have it).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let hf = if parse_special {
            &self.hf
        } else {
            self.literal.get_or_init(|| {
                let mut t = self.hf.clone();
                t.set_encode_special_tokens(true);
                t
            })
        };
        let enc = hf
            .encode_fast(text, false)
            .map_err(|e| tok_err("encode", e))?;
        let mut ids = Vec::with_capacity(enc.len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The text of `ids`; `skip_special` leaves out control tokens such as BOS.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        self.hf
            .decode(ids, skip_special)
            .map_err(|e| tok_err("decode", e))
    }

    /// A decoder that takes ids one at a time and gives back text once it is whole UTF-8.
    pub fn stream(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` puts BOS first.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` puts EOS last.
    pub fn adds_eos(&self) -> bool {
        self.add_eos
    }

    /// Ids that end a generated turn: EOS and the end-of-turn tokens the vocabulary has.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos.into_iter().collect();
        for text in END_OF_TURN {
            if let Some(id) = self.hf.token_to_id(text) {
                let special = self.hf.get_added_vocabulary().is_special_token(text);
                if special && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Number of token ids (the embedding table's row count, for a consistent model).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.hf.token_to_id(token)
    }

    /// The vocabulary entry of `id` as stored (byte-level BPE shows `Ġ` for a space).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.hf.id_to_token(id)
    }

    /// One line for `inspect`: source, model, pre-tokenizer, size and special tokens.
    pub fn kind(&self) -> String {
        let name = |id: Option<u32>| match id {
            Some(id) => format!("{id} {}", self.id_to_token(id).unwrap_or_default()),
            None => "none".to_string(),
        };
        format!(
            "{}, {} tokens, bos={}{}, eos={}{}",
            self.source,
            self.vocab_size,
            name(self.bos),
            if self.add_bos { "" } else { " (not added)" },
            name(self.eos),
            if self.add_eos { " (added)" } else { "" },
        )
    }

    /// `lamina tokenize`: one line per token, its id and the text it adds to the decoded
    /// text after the token before it (so a word keeps its leading space; a byte of a
    /// character split over several tokens shows as U+FFFD).
    pub fn format_ids(&self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for (i, &id) in ids.iter().enumerate() {
            let before = &ids[i.saturating_sub(1)..i];
            let text = self.decode(&ids[i.saturating_sub(1)..=i], false)?;
            let prev = self.decode(before, false)?;
            let piece = text.strip_prefix(prev.as_str()).unwrap_or(&text);
            out.push_str(&format!("{id:>7} -> {piece:?}\n"));
        }
        Ok(out)
    }
}

/// `[1, 15043, 3186]`: ids as one line.
pub fn format_id_list(ids: &[u32]) -> String {
    let parts: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A token named in tokenizer_config.json: a plain string or `{"content": ...}`.
fn config_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn json_parts(hf: tokenizers::Tokenizer, config: &serde_json::Value, path: &Path) -> Result<Parts> {
    let lookup = |key: &str| -> Result<Option<u32>> {
        match config_token(config, key) {
            None => Ok(None),
            Some(text) => hf.token_to_id(&text).map(Some).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "{key} '{text}' of tokenizer_config.json is not in {}",
                    path.display()
                ))
            }),
        }
    };
    // What the file's post-processor adds around a text tells the defaults when
    // tokenizer_config.json does not say.
    let plain = hf
        .encode_fast("a", false)
        .map_err(|e| tok_err("probe", e))?;
    let full = hf.encode_fast("a", true).map_err(|e| tok_err("probe", e))?;
    let (plain, full) = (plain.get_ids(), full.get_ids());
    let post_first = (full.len() > plain.len() && !full.starts_with(plain)).then(|| full[0]);
    let post_last =
        (full.len() > plain.len() && !full.ends_with(plain)).then(|| full[full.len() - 1]);

    let bos = lookup("bos_token")?.or(post_first);
    let eos = lookup("eos_token")?.or(post_last);
    let flag = |key: &str| config.get(key).and_then(serde_json::Value::as_bool);
    let add_bos = flag("add_bos_token").unwrap_or(post_first.is_some() && post_first == bos);
    let add_eos = flag("add_eos_token").unwrap_or(post_last.is_some() && post_last == eos);

    let model = match hf.get_model() {
        tokenizers::ModelWrapper::BPE(_) => "BPE",
        tokenizers::ModelWrapper::Unigram(_) => "Unigram",
        tokenizers::ModelWrapper::WordPiece(_) => "WordPiece",
        tokenizers::ModelWrapper::WordLevel(_) => "WordLevel",
    };
    let byte_level = matches!(
        hf.get_decoder(),
        Some(tokenizers::DecoderWrapper::ByteLevel(_))
    );
    // Ids run to the largest one in the model or the added tokens.
    let max_added = hf
        .get_added_tokens_decoder()
        .keys()
        .max()
        .map(|&m| m as usize + 1);
    let vocab_size = hf.get_vocab_size(false).max(max_added.unwrap_or(0));
    Ok(Parts {
        source: format!(
            "tokenizer.json {model}{}",
            if byte_level { " (byte-level)" } else { "" }
        ),
        hf,
        bos,
        eos,
        add_bos,
        add_eos,
        vocab_size,
    })
}
