//! Chat templates rendered with minijinja against expected strings that Python Jinja2 produced
//! with transformers' helper semantics (tests/chat_reference.py; not our own output).

use lamina::chat::{template_from_config, template_from_gguf, ChatTemplate, Message};
use lamina::testdata::{self, QWEN_CODER, SMOLLM2, TEMPLATE_DIR};
use lamina::weights::gguf::Metadata;
use lamina::Error;

/// The metadata of a GGUF file, read by the crate's parser.
fn gguf_metadata(path: &std::path::Path) -> Metadata {
    lamina::weights::gguf::open(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .meta
}

/// 2025-03-14 15:09:26 UTC, as FIXED_TIME in tests/chat_reference.py.
const FIXED_TIME: i64 = 1_741_964_966;

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "You are a concise assistant."),
        Message::new("user", "What is the capital of France?"),
        Message::new(
            "assistant",
            "<think>Easy.</think>The capital of France is Paris.",
        ),
        Message::new("user", "And of Japan? Answer in 日本語 too."),
    ]
}

fn render_file(name: &str, bos: Option<&str>, eos: Option<&str>) -> String {
    let path =
        testdata::file(&format!("{TEMPLATE_DIR}/{name}.jinja")).unwrap_or_else(|e| panic!("{e}"));
    let source = std::fs::read_to_string(path).unwrap();
    let t = ChatTemplate::with_fixed_time(&source, bos, eos, FIXED_TIME).unwrap();
    t.render(&conversation(), true).unwrap()
}

/// meta-llama-Llama-3.1-8B-Instruct
const LLAMA_3_1: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a concise assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>Easy.</think>The capital of France is Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd of Japan? Answer in 日本語 too.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

/// meta-llama-Llama-3.2-3B-Instruct
const LLAMA_3_2: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 14 Mar 2025\n\nYou are a concise assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>Easy.</think>The capital of France is Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd of Japan? Answer in 日本語 too.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

/// deepseek-ai-DeepSeek-R1-Distill-Llama-8B
const R1_DISTILL_LLAMA: &str = "<｜begin▁of▁sentence｜>You are a concise assistant.<｜User｜>What is the capital of France?<｜Assistant｜>The capital of France is Paris.<｜end▁of▁sentence｜><｜User｜>And of Japan? Answer in 日本語 too.<｜Assistant｜><think>\n";

/// deepseek-ai-DeepSeek-R1-Distill-Qwen-32B
const R1_DISTILL_QWEN: &str = "<｜begin▁of▁sentence｜>You are a concise assistant.<｜User｜>What is the capital of France?<｜Assistant｜>The capital of France is Paris.<｜end▁of▁sentence｜><｜User｜>And of Japan? Answer in 日本語 too.<｜Assistant｜><think>\n</think>";

/// Qwen-Qwen2.5-7B-Instruct
const QWEN_2_5: &str = "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>Easy.</think>The capital of France is Paris.<|im_end|>\n<|im_start|>user\nAnd of Japan? Answer in 日本語 too.<|im_end|>\n<|im_start|>assistant\n";

/// microsoft-Phi-3.5-mini-instruct
const PHI_3_5: &str = "<|system|>\nYou are a concise assistant.<|end|>\n<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n<think>Easy.</think>The capital of France is Paris.<|end|>\n<|user|>\nAnd of Japan? Answer in 日本語 too.<|end|>\n<|assistant|>\n";

/// SmolLM2-135M-Instruct.Q4_1.gguf
const SMOLLM2_GGUF: &str = "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>Easy.</think>The capital of France is Paris.<|im_end|>\n<|im_start|>user\nAnd of Japan? Answer in 日本語 too.<|im_end|>\n<|im_start|>assistant\n";

/// qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
const QWEN_CODER_GGUF: &str = "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>Easy.</think>The capital of France is Paris.<|im_end|>\n<|im_start|>user\nAnd of Japan? Answer in 日本語 too.<|im_end|>\n<|im_start|>assistant\n";

const LLAMA3_BOS: Option<&str> = Some("<|begin_of_text|>");
const LLAMA3_EOS: Option<&str> = Some("<|eot_id|>");
const DEEPSEEK_BOS: Option<&str> = Some("<｜begin▁of▁sentence｜>");
const DEEPSEEK_EOS: Option<&str> = Some("<｜end▁of▁sentence｜>");

#[test]
fn llama_3_1() {
    let got = render_file("meta-llama-Llama-3.1-8B-Instruct", LLAMA3_BOS, LLAMA3_EOS);
    assert_eq!(got, LLAMA_3_1);
}

#[test]
fn llama_3_2_uses_strftime_now() {
    let got = render_file("meta-llama-Llama-3.2-3B-Instruct", LLAMA3_BOS, LLAMA3_EOS);
    assert_eq!(got, LLAMA_3_2);
    assert!(got.contains("Today Date: 14 Mar 2025"));
}

#[test]
fn r1_distill_llama() {
    let got = render_file(
        "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
        DEEPSEEK_BOS,
        DEEPSEEK_EOS,
    );
    assert_eq!(got, R1_DISTILL_LLAMA);
}

#[test]
fn r1_distill_qwen() {
    let got = render_file(
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
        DEEPSEEK_BOS,
        DEEPSEEK_EOS,
    );
    assert_eq!(got, R1_DISTILL_QWEN);
}

#[test]
fn qwen_2_5() {
    let got = render_file("Qwen-Qwen2.5-7B-Instruct", None, Some("<|im_end|>"));
    assert_eq!(got, QWEN_2_5);
}

#[test]
fn phi_3_5() {
    let got = render_file(
        "microsoft-Phi-3.5-mini-instruct",
        Some("<s>"),
        Some("<|endoftext|>"),
    );
    assert_eq!(got, PHI_3_5);
}

fn render_gguf(file: &str, bos: Option<&str>, eos: Option<&str>) -> String {
    let path = testdata::file(file).unwrap_or_else(|e| panic!("{e}"));
    let meta = gguf_metadata(&path);
    let source = template_from_gguf(&meta)
        .unwrap()
        .expect("the model has a template");
    let t = ChatTemplate::with_fixed_time(&source, bos, eos, FIXED_TIME).unwrap();
    t.render(&conversation(), true).unwrap()
}

#[test]
fn gguf_embedded_templates() {
    let smol = render_gguf(SMOLLM2, Some("<|im_start|>"), Some("<|im_end|>"));
    assert_eq!(smol, SMOLLM2_GGUF);
    let qwen = render_gguf(QWEN_CODER, None, Some("<|im_end|>"));
    assert_eq!(qwen, QWEN_CODER_GGUF);
}

/// Outputs of Python Jinja2 with transformers' helpers for the same source (tests/chat_reference.py).
#[test]
fn helpers_match_python() {
    let src = r#"{{ {"a": [1, 2.5, "ü\n\""], "b": none, "c": true} | tojson }}|{{ {"a": [1, {}], "b": []} | tojson(indent=2) }}|{{ messages[:1] | tojson }}|{{ "x".upper() + " Ab ".strip().lower() }}|{{ strftime_now("%A %-d %B %Y %H:%M") }}"#;
    let want = "{\"a\": [1, 2.5, \"ü\\n\\\"\"], \"b\": null, \"c\": true}|{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}|[{\"role\": \"system\", \"content\": \"You are a concise assistant.\"}]|Xab|Friday 14 March 2025 15:09";
    let t = ChatTemplate::with_fixed_time(src, None, None, FIXED_TIME).unwrap();
    assert_eq!(t.render(&conversation(), false).unwrap(), want);
}

#[test]
fn loop_controls_and_undefined_tokens() {
    let src = "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{% if m.role == 'system' %}{% continue %}{% endif %}[{{ m.role }}]{% endfor %}{{ bos_token }}|{{ eos_token }}";
    let t = ChatTemplate::new(src, None, Some("</s>")).unwrap();
    assert_eq!(t.render(&conversation(), false).unwrap(), "[user]|</s>");
}

#[test]
fn bad_templates_are_template_errors() {
    match ChatTemplate::new("{% if %}oops", None, None) {
        Err(Error::Template(msg)) => assert!(msg.contains("syntax error"), "{msg}"),
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("a broken template compiled"),
    }
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}",
        None,
        None,
    )
    .unwrap();
    match t.render(&conversation(), true) {
        Err(Error::Template(msg)) => {
            assert!(
                msg.contains("Conversations must start with the user"),
                "{msg}"
            )
        }
        other => panic!("expected a template error, got {other:?}"),
    }
    assert!(t.render(&conversation()[1..], true).unwrap().is_empty());
}

#[test]
fn template_sources() {
    let single: serde_json::Value = serde_json::json!({"chat_template": "{{ messages }}"});
    assert_eq!(
        template_from_config(&single).unwrap().as_deref(),
        Some("{{ messages }}")
    );
    let named = serde_json::json!({"chat_template": [
        {"name": "tool_use", "template": "T"},
        {"name": "default", "template": "D"}
    ]});
    assert_eq!(template_from_config(&named).unwrap().as_deref(), Some("D"));
    let no_default = serde_json::json!({"chat_template": [{"name": "rag", "template": "R"}]});
    assert!(matches!(
        template_from_config(&no_default),
        Err(Error::Template(_))
    ));
    assert_eq!(template_from_config(&serde_json::json!({})).unwrap(), None);

    // The npm Llama 3.1 tokenizer_config.json carries its template: it renders.
    let dir = testdata::file("npm/tokenizer-llama3_1/models").unwrap_or_else(|e| panic!("{e}"));
    let source = lamina::chat::template_from_dir(&dir)
        .unwrap()
        .expect("has a template");
    let t = ChatTemplate::with_fixed_time(&source, LLAMA3_BOS, LLAMA3_EOS, FIXED_TIME).unwrap();
    let out = t.render(&conversation(), true).unwrap();
    assert!(
        out.starts_with("<|begin_of_text|><|start_header_id|>system"),
        "{out}"
    );
    assert!(
        out.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{out}"
    );
}
