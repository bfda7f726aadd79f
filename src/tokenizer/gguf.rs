//! A tokenizer built from GGUF vocabulary metadata (`tokenizer.ggml.*`), splitting text the way
//! llama.cpp does for the same file: SentencePiece vocabularies (`llama`) become a BPE with
//! byte fallback whose merges come from the piece scores, as Hugging Face converts
//! SentencePiece models; byte-level vocabularies (`gpt2`) become a byte-level BPE with the
//! file's merges and the pre-tokenizer that `tokenizer.ggml.pre` names.

use super::Parts;
use crate::error::{Error, Result};
use crate::weights::gguf::{Metadata, MetadataExt};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

// Token types of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE_MARK: &str = "\u{2581}";

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Han, and the blocks DeepSeek's tokenizer keeps together with it.
const CJK_RUN: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";
/// DeepSeek LLM's letters: written as escapes because editors and tools that normalise Unicode
/// would silently change some range ends (U+1F7D becomes U+03CE under NFC).
const DEEPSEEK_LETTERS: &str = "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";
const DEEPSEEK_PUNCT: &str =
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+";

/// How one family of `tokenizer.ggml.pre` values splits text before BPE.
struct Pre {
    names: &'static [&'static str],
    /// Applied in order, each to the pieces the previous one left (matches kept as pieces).
    regexes: &'static [&'static str],
    /// A piece that is a whole vocabulary entry is taken as is, without merging.
    ignore_merges: bool,
    /// The Hugging Face tokenizer normalises to NFC first.
    nfc: bool,
    /// BOS is added when the file has no `tokenizer.ggml.add_bos_token`.
    add_bos: bool,
}

const PRES: &[Pre] = &[
    Pre {
        names: &["default"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3"],
        regexes: &[LLAMA3],
        ignore_merges: true,
        nfc: false,
        add_bos: true,
    },
    Pre {
        names: &["dbrx", "smaug-bpe"],
        regexes: &[LLAMA3],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["qwen2", "deepseek-r1-qwen"],
        regexes: &[QWEN2],
        ignore_merges: false,
        nfc: true,
        add_bos: false,
    },
    Pre {
        names: &["stablelm2", "megrez"],
        regexes: &[QWEN2],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["deepseek-llm"],
        regexes: &[
            "[\r\n]",
            DEEPSEEK_LETTERS,
            DEEPSEEK_PUNCT,
            r"\s+$",
            CJK_RUN,
            r"\p{N}+",
        ],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["deepseek-coder"],
        regexes: &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_RUN, r"\p{N}"],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        // Digits one by one, then GPT-2's split.
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
        ],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["falcon"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
    Pre {
        names: &["gpt-2", "phi-2", "mpt", "olmo", "jais"],
        regexes: &[GPT2],
        ignore_merges: false,
        nfc: false,
        add_bos: false,
    },
];

fn known_pres() -> String {
    let names: Vec<&str> = PRES.iter().flat_map(|p| p.names.iter().copied()).collect();
    names.join(", ")
}

fn pre_for(name: &str) -> Result<&'static Pre> {
    PRES.iter()
        .find(|p| p.names.contains(&name))
        .ok_or_else(|| {
            Error::Tokenizer(format!(
                "unknown tokenizer.ggml.pre '{name}'; lamina knows: {}",
                known_pres()
            ))
        })
}

/// A token id key; -1 (some converters' "none") reads as absent.
fn token_id(meta: &Metadata, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    match v.as_i64() {
        Some(id) if id < 0 => Ok(None),
        Some(id) if id < n_tokens as i64 => Ok(Some(id as u32)),
        Some(id) => Err(Error::Format(format!(
            "{key} = {id} is outside the vocabulary of {n_tokens} tokens"
        ))),
        None => Err(Error::Format(format!(
            "{key} should be an integer, is {}",
            v.brief()
        ))),
    }
}

/// An array key that must have one entry per token when present.
fn per_token<T>(key: &str, values: Option<Vec<T>>, n: usize) -> Result<Option<Vec<T>>> {
    match values {
        Some(v) if v.len() != n => Err(Error::Format(format!(
            "{key} has {} entries for {n} tokens",
            v.len()
        ))),
        v => Ok(v),
    }
}

// ---- the vocabulary ----

struct Vocabulary<'m> {
    tokens: Vec<&'m str>,
    types: Vec<i32>,
}

impl Vocabulary<'_> {
    /// Token string -> id; where a string repeats, the later id wins, as in llama.cpp.
    fn ids(&self) -> Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect()
    }

    /// Control, unknown and user-defined tokens, matched in the text before the model runs.
    /// Control and unknown ones are special: only parsed when asked, skipped by
    /// `decode(skip_special)`. User-defined ones are always parsed, as llama.cpp does.
    fn added_tokens(&self, rstrip: bool) -> Vec<AddedToken> {
        let mut added = Vec::new();
        for (i, &text) in self.tokens.iter().enumerate() {
            let special = match self.types[i] {
                CONTROL | UNKNOWN => true,
                USER_DEFINED => false,
                _ => continue,
            };
            // Phi-3 chat tokens swallow the whitespace after them (llama.cpp sets RSTRIP on
            // them by model name, as the model's tokenizer.json does).
            let strip = rstrip && !matches!(text, "<unk>" | "<s>" | "<|endoftext|>");
            added.push(
                AddedToken::from(text, special)
                    .normalized(false)
                    .rstrip(strip),
            );
        }
        added
    }
}

pub(super) fn build(meta: &Metadata) -> Result<Parts> {
    let model = meta
        .opt_str("tokenizer.ggml.model")?
        .ok_or_else(|| Error::Tokenizer("the GGUF file has no tokenizer.ggml.model".into()))?;
    let tokens = meta
        .opt_str_array("tokenizer.ggml.tokens")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Tokenizer("the GGUF file has no tokenizer.ggml.tokens".into()))?;
    let n = tokens.len();
    let type_key = "tokenizer.ggml.token_type";
    let types =
        per_token(type_key, meta.opt_i32_array(type_key)?, n)?.unwrap_or_else(|| vec![NORMAL; n]);
    let vocab = Vocabulary { tokens, types };

    let name = meta.opt_str("general.name")?.unwrap_or("").to_lowercase();
    let rstrip = name.contains("phi3") || name.contains("phi-3");

    let bos = token_id(meta, "tokenizer.ggml.bos_token_id", n)?;
    let eos = token_id(meta, "tokenizer.ggml.eos_token_id", n)?;
    let unk = token_id(meta, "tokenizer.ggml.unknown_token_id", n)?;
    let add_bos_key = meta.opt_bool("tokenizer.ggml.add_bos_token")?;
    let add_eos = meta
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);

    let (mut hf, add_bos_default, source) = match model {
        "llama" => {
            let prefix = meta
                .opt_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let hf = sentencepiece(meta, &vocab, unk, prefix)?;
            (
                hf,
                true,
                "gguf llama (SentencePiece BPE), pre=default".to_string(),
            )
        }
        "gpt2" => {
            let pre_name = meta.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
            let pre = pre_for(pre_name)?;
            let hf = byte_level(meta, &vocab, pre)?;
            (
                hf,
                pre.add_bos,
                format!("gguf gpt2 (byte-level BPE), pre={pre_name}"),
            )
        }
        other => {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.model '{other}' is not supported (lamina reads 'llama' and 'gpt2')"
            )))
        }
    };
    hf.add_tokens(vocab.added_tokens(rstrip))
        .map_err(|e| Error::Tokenizer(format!("adding special tokens: {e}")))?;

    Ok(Parts {
        hf,
        bos,
        eos,
        add_bos: add_bos_key.unwrap_or(add_bos_default),
        add_eos,
        vocab_size: n,
        source,
    })
}

/// SentencePiece vocabulary as a BPE: a merge `(left, right)` exists for every normal piece
/// that splits into two normal pieces, ranked by the merged piece's score (higher first),
/// then by longer left and right parts, then by vocabulary order: Hugging Face's
/// SentencePiece converter ranks them so.
fn sentencepiece(
    meta: &Metadata,
    vocab: &Vocabulary,
    unk: Option<u32>,
    space_prefix: bool,
) -> Result<tokenizers::Tokenizer> {
    let n = vocab.tokens.len();
    let key = "tokenizer.ggml.scores";
    let scores = per_token(key, meta.opt_f32_array(key)?, n)?
        .ok_or_else(|| Error::Tokenizer(format!("a 'llama' tokenizer needs {key}")))?;

    let ids = vocab.ids();
    let normal = |s: &str| {
        ids.get(s)
            .copied()
            .filter(|&id| vocab.types[id as usize] == NORMAL)
    };
    struct Merge {
        score: f32,
        left_chars: usize,
        right_chars: usize,
        left_id: u32,
        right_id: u32,
    }
    let mut merges = Vec::new();
    for (i, piece) in vocab.tokens.iter().enumerate() {
        if vocab.types[i] != NORMAL {
            continue;
        }
        let start = merges.len();
        for (k, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(k);
            if let (Some(left_id), Some(right_id)) = (normal(l), normal(r)) {
                merges.push(Merge {
                    score: scores[i],
                    left_chars: l.chars().count(),
                    right_chars: r.chars().count(),
                    left_id,
                    right_id,
                });
            }
        }
        merges[start..].sort_by_key(|m| (m.left_id, m.right_id));
    }
    // Stable: ties keep vocabulary order.
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            (
                vocab.tokens[m.left_id as usize].to_string(),
                vocab.tokens[m.right_id as usize].to_string(),
            )
        })
        .collect();

    let mut builder = BPE::builder()
        .vocab_and_merges(ids, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(vocab.tokens[unk as usize].to_string());
    }
    let bpe = builder
        .build()
        .map_err(|e| Error::Tokenizer(format!("building the SentencePiece BPE: {e}")))?;

    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| Error::Tokenizer(format!("replace pattern: {e}")))
    };
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE_MARK.to_string()).into());
    }
    normalizers.push(replace(" ", SPACE_MARK)?.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPACE_MARK, " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_normalizer(Some(tokenizers::normalizers::Sequence::new(normalizers)))
        .map_err(|e| Error::Tokenizer(format!("normalizer: {e}")))?;
    hf.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(hf)
}

/// Byte-level BPE (GPT-2 style) with the file's merges and the named pre-tokenizer.
fn byte_level(meta: &Metadata, vocab: &Vocabulary, pre: &Pre) -> Result<tokenizers::Tokenizer> {
    let key = "tokenizer.ggml.merges";
    let merges = meta
        .opt_str_array(key)?
        .ok_or_else(|| Error::Tokenizer(format!("a 'gpt2' tokenizer needs {key}")))?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            // The first space after the first byte separates the pair (a pair may start
            // with a literal space character in some vocabularies).
            let first = m.chars().next().map_or(0, char::len_utf8);
            m[first..]
                .find(' ')
                .map(|p| (m[..first + p].to_string(), m[first + p + 1..].to_string()))
                .ok_or_else(|| Error::Format(format!("{key}[{i}] = {m:?} is not a pair")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.ids(), merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("building the byte-level BPE: {e}")))?;

    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in pre.regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());

    let mut hf = tokenizers::Tokenizer::new(bpe);
    if pre.nfc {
        hf.with_normalizer(Some(NFC))
            .map_err(|e| Error::Tokenizer(format!("normalizer: {e}")))?;
    }
    hf.with_pre_tokenizer(Some(PreSequence::new(steps)));
    hf.with_decoder(Some(ByteLevel::default()));
    Ok(hf)
}
