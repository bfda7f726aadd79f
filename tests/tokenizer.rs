//! Tokenizer conformance: llama.cpp's reference tokenizations of its vocabulary files, agreement
//! of tokenizer.json and GGUF-built tokenizers, reference ids of the real models' tokenizers,
//! and streaming detokenisation.

use lamina::testdata::{self, QWEN_CODER, SMOLLM2, VOCAB_DIR};
use lamina::tokenizer::{format_id_list, Tokenizer};
use lamina::weights::gguf::{Metadata, Value};
use std::path::PathBuf;

/// The metadata of a GGUF file, read by the crate's parser.
fn gguf_metadata(path: &std::path::Path) -> Metadata {
    lamina::weights::gguf::open(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .meta
}

fn data(rel: &str) -> PathBuf {
    testdata::file(rel).unwrap_or_else(|e| panic!("{e}"))
}

fn vocab_meta(name: &str) -> Metadata {
    gguf_metadata(&data(&format!("{VOCAB_DIR}/ggml-vocab-{name}.gguf")))
}

fn vocab(name: &str) -> Tokenizer {
    Tokenizer::from_gguf(&vocab_meta(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn npm(name: &str) -> Tokenizer {
    Tokenizer::from_dir(&data(&format!("npm/{name}/models"))).unwrap_or_else(|e| panic!("{e}"))
}

fn model(file: &str) -> Tokenizer {
    Tokenizer::from_gguf(&gguf_metadata(&data(file))).unwrap()
}

/// The cases of `ggml-vocab-NAME.gguf.inp/.out`, split as llama.cpp's test-tokenizer-0 does:
/// texts separated by "\n__ggml_vocab_test__\n", one line of space-separated ids per text.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = format!("{VOCAB_DIR}/ggml-vocab-{name}.gguf");
    let inp = std::fs::read_to_string(data(&format!("{base}.inp"))).unwrap();
    let out = std::fs::read_to_string(data(&format!("{base}.out"))).unwrap();
    let mut texts: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    // The file ends with a separator, which leaves no case after it.
    if texts.last().is_some_and(String::is_empty) {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{base}: .inp and .out disagree");
    texts.into_iter().zip(ids).collect()
}

/// llama.cpp made the .out files with add_special = false, parse_special = false.
fn conformance(name: &str) {
    let tok = vocab(name);
    let cases = cases(name);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false, false).unwrap();
        if &got != want {
            failures.push(format!(
                "  {text:?}\n    want {}\n    got  {}",
                format_id_list(want),
                format_id_list(&got)
            ));
        }
    }
    let passed = cases.len() - failures.len();
    println!("ggml-vocab-{name}: passed {passed} of {}", cases.len());
    assert!(
        failures.is_empty(),
        "ggml-vocab-{name}: {} of {} cases differ; first ones:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    assert!(cases.len() >= 40, "only {} cases found", cases.len());
}

#[test]
fn conformance_llama_spm() {
    conformance("llama-spm");
}

#[test]
fn conformance_llama_bpe() {
    conformance("llama-bpe");
}

#[test]
fn conformance_qwen2() {
    conformance("qwen2");
}

#[test]
fn conformance_phi_3() {
    conformance("phi-3");
}

#[test]
fn conformance_deepseek_llm() {
    conformance("deepseek-llm");
}

/// Vocabularies beyond the required five whose pre-tokenizers lamina also knows.
#[test]
fn conformance_other_vocabularies() {
    for name in [
        "deepseek-coder",
        "gpt-2",
        "starcoder",
        "refact",
        "command-r",
        "falcon",
        "mpt",
    ] {
        conformance(name);
    }
}

/// Code, emoji, numbers, whitespace runs, special-token texts.
const EXTRA: &[&str] = &[
    "fn main() {\n    println!(\"hello, {}\", 42);\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n\n\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 3.14159f; }",
    "👩‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 ❤️‍🔥 🫠🫡",
    "中文字符与English混合，标点符号！「引号」",
    "日本語のテキスト、カタカナとひらがな。한국어 텍스트",
    "1234567890 3.14159 -42 1e10 0x1F 1,000,000 ١٢٣",
    "   leading\t\ttabs   and    spaces      \n\n\n   \r\n trailing   ",
    "I'm you're they've we'll she'd IT'S DON'T",
    "<|im_start|>user\nHi<|im_end|> <|begin_of_text|> <s> </s>",
    "ſtraße Ǆ ǅ ǆ ﬁ ẞ İstanbul",
    "",
    " ",
    "\u{00A0}non-breaking\u{2003}em space\u{200B}zero width",
];

fn inp_texts() -> Vec<String> {
    cases("llama-bpe").into_iter().map(|(t, _)| t).collect()
}

fn agree(json: &Tokenizer, gguf: &Tokenizer, what: &str) {
    let texts: Vec<String> = inp_texts()
        .into_iter()
        .chain(EXTRA.iter().map(|s| s.to_string()))
        .collect();
    let mut compared = 0;
    for text in &texts {
        for parse_special in [false, true] {
            let a = json.encode(text, false, parse_special).unwrap();
            let b = gguf.encode(text, false, parse_special).unwrap();
            assert_eq!(a, b, "{what}: {text:?} (parse_special={parse_special})");
            compared += 1;
        }
    }
    println!("{what}: {compared} encodings identical");
}

#[test]
fn llama3_json_and_gguf_agree() {
    agree(&npm("tokenizer-llama3"), &vocab("llama-bpe"), "llama3");
}

#[test]
fn qwen_json_and_gguf_agree() {
    agree(&npm("tokenizer-qwen3"), &vocab("qwen2"), "qwen");
}

/// Reference ids from the real tokenizers, made by tests/tokenizer_reference.py:
/// llama.cpp (llama-cpp-python 0.3.36, vocab_only) on the GGUF files, and for Qwen also
/// the Hugging Face `tokenizers` library on Qwen's tokenizer.json.
const REFERENCE_TEXTS: &[&str] = &[
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; 12345 + 678 = 13023.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Emoji 🦙🚀 and 中文 and Ünïcödé.",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
];

#[test]
fn smollm2_matches_reference_ids() {
    let tok = model(SMOLLM2);
    let want: &[&[u32]] = &[
        &[19556, 28, 905, 17, 1073, 359, 346, 1834, 47],
        &[
            504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 43, 216, 33, 34, 35, 36, 37,
            1232, 216, 38, 39, 40, 446, 216, 33, 35, 32, 34, 35, 30,
        ],
        &[
            1604, 3987, 24, 94, 727, 472, 1003, 304, 585, 304, 2067, 216, 34, 1745, 3987, 24, 94,
            731, 216, 33, 25, 1232, 3987, 24, 94, 731, 216, 34, 25, 198,
        ],
        &[
            10809, 33777, 15107, 116, 243, 10813, 244, 218, 284, 216, 28589, 29184, 284, 5549, 246,
            94, 25972, 83, 7466, 84, 2756, 30,
        ],
        &[
            1, 9690, 198, 2683, 359, 5356, 30, 2, 198, 1, 4093, 198, 26843, 2, 198,
        ],
    ];
    check_reference(&tok, want, "SmolLM2");
}

#[test]
fn qwen_coder_matches_reference_ids() {
    let tok = model(QWEN_CODER);
    let want: &[&[u32]] = &[
        &[9707, 11, 1879, 0, 2585, 525, 498, 3351, 30],
        &[
            785, 1042, 220, 17, 15, 17, 19, 1030, 220, 18, 21, 21, 2849, 26, 220, 16, 17, 18, 19,
            20, 488, 220, 21, 22, 23, 284, 220, 16, 18, 15, 17, 18, 13,
        ],
        &[
            750, 15801, 1445, 982, 262, 470, 308, 421, 308, 366, 220, 17, 770, 15801, 1445, 481,
            220, 16, 8, 488, 15801, 1445, 481, 220, 17, 340,
        ],
        &[
            92731, 11162, 99, 247, 145836, 323, 72858, 16744, 323, 30512, 77, 37572, 66, 2956,
            128505, 13,
        ],
        &[
            151644, 8948, 198, 2610, 525, 10950, 13, 151645, 198, 151644, 872, 198, 13048, 151645,
            198,
        ],
    ];
    check_reference(&tok, want, "Qwen2.5-Coder");
}

/// Texts parsed with special tokens (the chat-prompt case) and without BOS: both models
/// have add_bos_token = false.
fn check_reference(tok: &Tokenizer, want: &[&[u32]], what: &str) {
    assert_eq!(want.len(), REFERENCE_TEXTS.len());
    for (text, want) in REFERENCE_TEXTS.iter().zip(want) {
        let got = tok.encode(text, true, true).unwrap();
        assert_eq!(&got, want, "{what}: {text:?}");
        assert_eq!(
            tok.decode(&got, false).unwrap(),
            *text,
            "{what}: round trip"
        );
    }
}

#[test]
fn special_tokens_and_bos() {
    let spm = vocab("llama-spm");
    assert_eq!(
        spm.kind(),
        "gguf llama (SentencePiece BPE), pre=default, 32000 tokens, bos=1 <s>, eos=2 </s>"
    );
    assert_eq!(spm.encode("Hello", true, false).unwrap(), [1, 15043]);
    assert_eq!(spm.encode("Hello", false, false).unwrap(), [15043]);
    // "<s>" is a control token: text unless special tokens are parsed.
    assert_ne!(spm.encode("<s>", false, false).unwrap(), [1]);
    assert_eq!(spm.encode("<s>Hello", false, true).unwrap(), [1, 15043]);
    assert_eq!(spm.decode(&[1, 15043, 3186], true).unwrap(), "Hello world");
    assert_eq!(
        spm.decode(&[1, 15043, 3186], false).unwrap(),
        "<s> Hello world"
    );

    let bpe = vocab("llama-bpe");
    assert!(
        bpe.adds_bos(),
        "llama-bpe adds BOS by default, as llama.cpp does"
    );
    assert_eq!(bpe.encode("Hello", true, false).unwrap(), [128000, 9906]);
    assert!(bpe.stop_ids().contains(&128001));
    assert!(
        bpe.stop_ids().contains(&128009),
        "<|eot_id|> stops generation"
    );

    let qwen = model(QWEN_CODER);
    assert!(!qwen.adds_bos());
    assert_eq!(
        qwen.kind(),
        "gguf gpt2 (byte-level BPE), pre=qwen2, 151936 tokens, \
         bos=151643 <|endoftext|> (not added), eos=151645 <|im_end|>"
    );
    assert_eq!(
        qwen.encode("<|im_start|>user", true, true).unwrap(),
        [151644, 872]
    );
    let literal = qwen.encode("<|im_start|>user", true, false).unwrap();
    assert!(!literal.contains(&151644), "{literal:?}");
    assert_eq!(qwen.token_to_id("<|im_end|>"), Some(151645));
    assert_eq!(qwen.id_to_token(151645).as_deref(), Some("<|im_end|>"));
    assert_eq!(qwen.vocab_size(), 151936);
    assert!(qwen.decode(&[151936], false).is_err());

    let smol = model(SMOLLM2);
    assert!(!smol.adds_bos());
    assert!(smol
        .kind()
        .starts_with("gguf gpt2 (byte-level BPE), pre=smollm, 49152 tokens"));
    // Digits one by one.
    let ids = smol.encode("12345", false, false).unwrap();
    assert_eq!(ids.len(), 5, "{ids:?}");
}

#[test]
fn json_tokenizer_settings() {
    let l31 = npm("tokenizer-llama3_1");
    assert_eq!(l31.bos_id(), Some(128000));
    assert_eq!(l31.eos_id(), Some(128009));
    assert!(l31.adds_bos(), "its post-processor adds <|begin_of_text|>");
    assert_eq!(l31.encode("Hello", true, false).unwrap(), [128000, 9906]);
    assert_eq!(l31.vocab_size(), 128256);
    let qwen = npm("tokenizer-qwen3");
    assert!(!qwen.adds_bos());
    assert_eq!(qwen.eos_id(), Some(151645));
    assert!(
        qwen.kind().starts_with("tokenizer.json BPE (byte-level)"),
        "{}",
        qwen.kind()
    );
    assert!(Tokenizer::from_dir(std::path::Path::new("/nonexistent")).is_err());
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let mut meta = vocab_meta("qwen2");
    meta.insert("tokenizer.ggml.pre".into(), Value::String("wobbly".into()));
    let err = Tokenizer::from_gguf(&meta)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("'wobbly'"), "{err}");
    for known in [
        "llama-bpe",
        "qwen2",
        "deepseek-llm",
        "smollm",
        "gpt-2",
        "default",
    ] {
        assert!(err.contains(known), "{err}");
    }
    meta.insert("tokenizer.ggml.model".into(), Value::String("t5".into()));
    let err = Tokenizer::from_gguf(&meta)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("'t5'"), "{err}");
}

#[test]
fn format_ids_lists_pieces() {
    let spm = vocab("llama-spm");
    let ids = spm.encode("Hello world", true, false).unwrap();
    assert_eq!(format_id_list(&ids), "[1, 15043, 3186]");
    let text = spm.format_ids(&ids).unwrap();
    assert_eq!(
        text,
        "      1 -> \"<s>\"\n  15043 -> \" Hello\"\n   3186 -> \" world\"\n"
    );
}

const STREAM_TEXTS: &[&str] = &[
    "Hello 🦙 world! 😶‍🌫️ and 🇯🇵 flags",
    "中文，日本語の文、한국어 텍스트 mixed with English",
    " leading space, then  two, then\nnewline and\ttab",
    "ünïcödé çàfé ñandú 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFD}",
];

/// Feeding ids one at a time gives, concatenated, exactly decode(all ids); no chunk is
/// emitted with a broken character.
fn stream_round_trip(tok: &Tokenizer, what: &str) {
    for text in STREAM_TEXTS {
        for skip_special in [false, true] {
            let mut ids = tok.encode(text, true, false).unwrap();
            // A special token in the middle, then more text.
            ids.extend(tok.stop_ids().first());
            ids.extend(tok.encode(" after 🎉", false, false).unwrap());
            let whole = tok.decode(&ids, skip_special).unwrap();
            let mut stream = tok.stream(skip_special);
            let mut out = String::new();
            for &id in &ids {
                if let Some(chunk) = stream.push(id).unwrap() {
                    assert!(
                        !chunk.contains('\u{FFFD}'),
                        "{what}: partial char in {chunk:?}"
                    );
                    out.push_str(&chunk);
                }
            }
            if let Some(rest) = stream.flush().unwrap() {
                out.push_str(&rest);
            }
            assert_eq!(out, whole, "{what}: {text:?} skip_special={skip_special}");
        }
    }
}

#[test]
fn stream_decoder_spm() {
    let tok = vocab("llama-spm");
    // The llama emoji is four byte-fallback tokens in this vocabulary.
    let ids = tok.encode("🦙", false, false).unwrap();
    assert_eq!(ids, [29871, 243, 162, 169, 156]);
    let mut stream = tok.stream(false);
    let chunks: Vec<Option<String>> = ids.iter().map(|&i| stream.push(i).unwrap()).collect();
    assert_eq!(chunks, [None, None, None, None, Some("🦙".to_string())]);
    assert!(stream.push(32000).is_err(), "id beyond the vocabulary");
    assert_eq!(stream.push(3186).unwrap().as_deref(), Some(" world"));
    stream_round_trip(&tok, "llama-spm");
    stream_round_trip(&vocab("phi-3"), "phi-3");
}

#[test]
fn stream_decoder_byte_level() {
    stream_round_trip(&vocab("llama-bpe"), "llama-bpe");
    stream_round_trip(&model(QWEN_CODER), "qwen2.5-coder");
    stream_round_trip(&npm("tokenizer-llama3_1"), "llama3.1 tokenizer.json");
}
