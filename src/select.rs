//! From a model reference and a backend choice to a ready `InferenceAdapter`: the model's
//! files, its tokenizer and chat template, and the backend that will run it.

use crate::backend::reference::Reference;
use crate::backend::Backend;
use crate::chat::{self, ChatTemplate};
use crate::error::{Error, Result};
use crate::generate::{Engine, EngineOptions, InferenceAdapter};
use crate::model::resolve::{self, LoadedModel};
use crate::tokenizer::Tokenizer;
use crate::weights::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum BackendChoice {
    /// cuda where an NVIDIA driver answers, else wgpu.
    Auto,
    Wgpu,
    Cuda,
    /// The plain-Rust oracle (slow; for tests and comparisons).
    Reference,
}

/// The model's tokenizer: from the GGUF vocabulary, or tokenizer.json beside safetensors.
pub fn tokenizer_for(m: &LoadedModel) -> Result<Tokenizer> {
    match m.source.format {
        Format::Gguf => Tokenizer::from_gguf(&m.store.meta),
        Format::Safetensors => match &m.source.tokenizer_json {
            Some(json) => Tokenizer::from_files(json, m.source.tokenizer_config_json.as_deref()),
            None => Err(Error::Tokenizer(format!(
                "{} has no tokenizer.json; lamina needs the model's tokenizer.json (and \
                 tokenizer_config.json) beside its weights",
                m.source.weights.display()
            ))),
        },
    }
}

/// The model's chat template, if it has one.
pub fn chat_template_for(m: &LoadedModel, tok: &Tokenizer) -> Result<Option<ChatTemplate>> {
    let source = match m.source.format {
        Format::Gguf => chat::template_from_gguf(&m.store.meta)?,
        Format::Safetensors => chat::template_from_dir(&m.source.weights)?,
    };
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    source
        .map(|s| {
            ChatTemplate::new(
                &s,
                name(tok.bos_id()).as_deref(),
                name(tok.eos_id()).as_deref(),
            )
        })
        .transpose()
}

/// An engine for `m` on backend `b` (boxed: callers do not care which backend it is).
pub fn engine<B: Backend + 'static>(
    b: B,
    m: LoadedModel,
    opts: EngineOptions,
) -> Result<Box<dyn InferenceAdapter>> {
    let tok = tokenizer_for(&m)?;
    Ok(Box::new(Engine::new(b, m.store, m.config, tok, opts)))
}

/// Opens `reference` on the chosen backend (not yet loaded onto the device).
pub fn open(
    reference: &str,
    choice: BackendChoice,
    opts: EngineOptions,
) -> Result<Box<dyn InferenceAdapter>> {
    let m = resolve::open(reference)?;
    match choice {
        BackendChoice::Reference => engine(Reference::new(), m, opts),
        other => Err(Error::BackendUnavailable {
            backend: format!("{other:?}"),
            reason: "not merged yet".into(),
        }),
    }
}
