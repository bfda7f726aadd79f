//! Where the test models and vocabularies fetched by `scripts/fetch_testdata.sh` live.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// `$LAMINA_TESTDATA`, else `~/.cache/lamina-testdata`.
pub fn dir() -> PathBuf {
    match std::env::var_os("LAMINA_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/lamina-testdata"),
    }
}

/// A file of the test data, or an error saying how to fetch it.
pub fn file(rel: &str) -> Result<PathBuf> {
    let p = dir().join(rel);
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Input(format!(
            "test data {} is missing: run scripts/fetch_testdata.sh",
            p.display()
        )))
    }
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const QWEN_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const VOCAB_DIR: &str = "llama.cpp/vendor/llama.cpp/models";
pub const TEMPLATE_DIR: &str = "llama.cpp/vendor/llama.cpp/models/templates";
