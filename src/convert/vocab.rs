//! A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) as GGUF `tokenizer.ggml.*`
//! metadata, in the two forms llama.cpp and lamina read:
//!
//! - byte-level BPE (Llama 3, Qwen2, SmolLM, GPT-2 style) -> model `gpt2`: tokens, token
//!   types, merges, and a `pre` name. The pre name is the first of lamina's known
//!   pre-tokenizers whose GGUF tokenizer splits a probe text exactly as the tokenizer.json does
//!   (llama.cpp's converter decides the same question by hashing such a tokenization).
//! - SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral, Phi-3) ->
//!   model `llama`: tokens, token types and scores. GGUF keeps no merges for it; readers
//!   rebuild them from the scores, so each merged piece scores minus the rank of the merge
//!   that makes it, which orders the rebuilt merges as the file's merges.
//!
//! Ids the tokenizer does not use up to the model's vocabulary size become `[PADn]` tokens of
//! type unused, as llama.cpp's converter writes them.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::gguf::{Metadata, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;

// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Pre-tokenizer names tried in order (most common first).
const PRE_CANDIDATES: &[&str] = &[
    "llama-bpe",
    "qwen2",
    "smollm",
    "gpt-2",
    "dbrx",
    "stablelm2",
    "deepseek-llm",
    "deepseek-coder",
    "falcon",
    "default",
];

/// Text that tells the known pre-tokenizers apart: digit runs, contractions, runs of spaces
/// and newlines, punctuation, accents, CJK and emoji.
const PROBE: &str = "Hello world! I'm   fine, you'LL see: 3333333 12 1.5e10\n\n\t tabs\r\n \
    ÀÉÎõü naïve café 你好世界 こんにちは 🦙🦙 ____ === ``` <|x|> don't\n   x";

fn err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{}: {msg}", path.display()))
}

/// The `tokenizer.*` keys for the tokenizer of `dir` and a model of `vocab_size` ids.
pub fn metadata(
    json_path: &Path,
    config_path: Option<&Path>,
    vocab_size: usize,
    pad_from_config: Option<u32>,
) -> Result<Metadata> {
    let text = std::fs::read_to_string(json_path).map_err(|e| Error::io(json_path, e))?;
    let j: Json = serde_json::from_str(&text).map_err(|e| err(json_path, e))?;
    let model = &j["model"];
    let kind = model["type"].as_str().unwrap_or("");
    if kind != "BPE" {
        return Err(err(
            json_path,
            format!(
                "a '{kind}' tokenizer has no GGUF form; lamina quantize converts BPE tokenizers \
                 (byte-level, as Llama 3 and Qwen2 have, or SentencePiece-style with byte \
                 fallback, as Llama 2 and Phi-3 have)"
            ),
        ));
    }
    let ours = Tokenizer::from_files(json_path, config_path)?;
    let byte_level = mentions_type(&j["pre_tokenizer"], "ByteLevel")
        || mentions_type(&j["decoder"], "ByteLevel");
    let byte_fallback = model["byte_fallback"].as_bool() == Some(true);
    if !byte_level && !byte_fallback {
        return Err(err(
            json_path,
            "a BPE tokenizer that is neither byte-level nor byte-fallback has no GGUF form",
        ));
    }

    // Ids -> (text, type): the model's vocabulary, then the added tokens.
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut put = |id: u64, text: &str, ty: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            err(
                json_path,
                format!("token id {id} ({text:?}) is outside the model's {vocab_size} ids"),
            )
        })?;
        *slot = Some((text.to_string(), ty));
        Ok(())
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err(json_path, "model.vocab is not an object"))?;
    let unk = model["unk_token"].as_str();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(json_path, format!("vocab id of {text:?}")))?;
        let ty = if Some(text.as_str()) == unk {
            UNKNOWN
        } else if !byte_level && is_byte_token(text) {
            BYTE
        } else {
            NORMAL
        };
        put(id, text, ty)?;
    }
    for t in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (t["id"].as_u64(), t["content"].as_str()) else {
            return Err(err(json_path, "an added token without id or content"));
        };
        let ty = match (Some(text) == unk, t["special"].as_bool() == Some(true)) {
            (true, _) => UNKNOWN,
            (false, true) => CONTROL,
            (false, false) => USER_DEFINED,
        };
        put(id, text, ty)?;
    }
    let merges = merges(json_path, model)?;

    let mut meta = Metadata::new();
    let mut texts = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for (i, t) in tokens.iter().enumerate() {
        let (text, ty) = t.clone().unwrap_or((format!("[PAD{i}]"), UNUSED));
        texts.push(Value::String(text));
        types.push(Value::I32(ty));
    }
    let s = |x: &str| Value::String(x.to_string());
    meta.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    if byte_level {
        meta.insert("tokenizer.ggml.model".into(), s("gpt2"));
        let list = merges.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect();
        meta.insert("tokenizer.ggml.merges".into(), Value::Array(list));
    } else {
        meta.insert("tokenizer.ggml.model".into(), s("llama"));
        meta.insert(
            "tokenizer.ggml.scores".into(),
            Value::Array(scores(&texts, &merges)),
        );
        meta.insert(
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(adds_space_prefix(&j)),
        );
    }
    meta.insert("tokenizer.ggml.tokens".into(), Value::Array(texts));

    let id = |x: u32| Value::U32(x);
    if let Some(b) = ours.bos_id() {
        meta.insert("tokenizer.ggml.bos_token_id".into(), id(b));
    }
    if let Some(e) = ours.eos_id() {
        meta.insert("tokenizer.ggml.eos_token_id".into(), id(e));
    }
    if let Some(u) = unk.and_then(|u| ours.token_to_id(u)) {
        meta.insert("tokenizer.ggml.unknown_token_id".into(), id(u));
    }
    let pad = config_token(config_path, "pad_token")?
        .and_then(|p| ours.token_to_id(&p))
        .or(pad_from_config);
    if let Some(p) = pad {
        meta.insert("tokenizer.ggml.padding_token_id".into(), id(p));
    }
    meta.insert(
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(ours.adds_bos()),
    );
    meta.insert(
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(ours.adds_eos()),
    );
    if byte_level {
        let pre = find_pre(&meta, json_path)?;
        meta.insert("tokenizer.ggml.pre".into(), s(pre));
    }
    if let Some(dir) = json_path.parent() {
        if let Some(t) = crate::chat::template_from_dir(dir)? {
            meta.insert("tokenizer.chat_template".into(), s(&t));
        }
    }
    Ok(meta)
}

fn mentions_type(v: &Json, ty: &str) -> bool {
    match v {
        Json::Object(o) => {
            o.get("type").and_then(Json::as_str) == Some(ty)
                || o.values().any(|x| mentions_type(x, ty))
        }
        Json::Array(a) => a.iter().any(|x| mentions_type(x, ty)),
        _ => false,
    }
}

/// `<0x0A>`: SentencePiece's byte pieces.
fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].chars().all(|c| c.is_ascii_hexdigit())
}

/// The merges as pairs, whether the file writes them as "a b" strings or [a, b] lists.
fn merges(path: &Path, model: &Json) -> Result<Vec<(String, String)>> {
    let list = model["merges"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let pair = |m: &Json| match m {
        Json::String(s) => s
            .split_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string())),
        Json::Array(p) => match p.as_slice() {
            [Json::String(a), Json::String(b)] => Some((a.clone(), b.clone())),
            _ => None,
        },
        _ => None,
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| pair(m).ok_or_else(|| err(path, format!("model.merges[{i}] is not a pair"))))
        .collect()
}

/// SentencePiece scores that rank each merged piece by its merge (first merge highest).
fn scores(texts: &[Value], merges: &[(String, String)]) -> Vec<Value> {
    let mut rank: HashMap<String, usize> = HashMap::new();
    for (r, (a, b)) in merges.iter().enumerate() {
        rank.entry(format!("{a}{b}")).or_insert(r);
    }
    texts
        .iter()
        .map(|t| {
            let r = t.as_str().and_then(|s| rank.get(s));
            Value::F32(r.map_or(0.0, |&r| -(r as f32) - 1.0))
        })
        .collect()
}

/// Whether the SentencePiece normalizer or pre-tokenizer puts `▁` before the text.
fn adds_space_prefix(j: &Json) -> bool {
    let prepends = |v: &Json| -> bool {
        fn walk(v: &Json) -> bool {
            match v {
                Json::Object(o) => {
                    let ty = o.get("type").and_then(Json::as_str);
                    (ty == Some("Prepend") && o.get("prepend").and_then(Json::as_str) == Some("▁"))
                        || (ty == Some("Metaspace")
                            && (o.get("add_prefix_space").and_then(Json::as_bool) == Some(true)
                                || matches!(
                                    o.get("prepend_scheme").and_then(Json::as_str),
                                    Some("first" | "always")
                                )))
                        || o.values().any(walk)
                }
                Json::Array(a) => a.iter().any(walk),
                _ => false,
            }
        }
        walk(v)
    };
    prepends(&j["normalizer"]) || prepends(&j["pre_tokenizer"])
}

fn config_token(config: Option<&Path>, key: &str) -> Result<Option<String>> {
    let Some(path) = config else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let j: Json = serde_json::from_str(&text).map_err(|e| err(path, e))?;
    Ok(match &j[key] {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    })
}

/// The first known pre-tokenizer name whose GGUF tokenizer splits `PROBE` as tokenizer.json.
fn find_pre(meta: &Metadata, json_path: &Path) -> Result<&'static str> {
    let hf = tokenizers::Tokenizer::from_file(json_path).map_err(|e| err(json_path, e))?;
    let want = hf
        .encode_fast(PROBE, false)
        .map_err(|e| err(json_path, e))?
        .get_ids()
        .to_vec();
    let mut probe = meta.clone();
    for &pre in PRE_CANDIDATES {
        probe.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        let tok = Tokenizer::from_gguf_quiet(&probe)?;
        if tok.encode(PROBE, false, true)? == want {
            return Ok(pre);
        }
    }
    Err(err(
        json_path,
        format!(
            "its pre-tokenizer splits text unlike every one lamina knows ({}); the GGUF would \
             tokenize differently, so none is written",
            PRE_CANDIDATES.join(", ")
        ),
    ))
}
