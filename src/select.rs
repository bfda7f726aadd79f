//! From a model reference and a backend choice to a ready `InferenceAdapter`: the model's
//! files, its tokenizer and chat template, and the backend that will run it.

use crate::backend::reference::Reference;
use crate::backend::wgpu::{Wgpu, WgpuOptions};
use crate::backend::Backend;
use crate::backend::SupportTable;
use crate::chat::{self, ChatTemplate};
use crate::error::{Error, Result};
use crate::generate::{Engine, EngineOptions, InferenceAdapter};
use crate::model::diagnose::BackendReport;
use crate::model::llama::Plan;
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
        BackendChoice::Wgpu => engine(Wgpu::new(Default::default())?, m, opts),
        BackendChoice::Cuda | BackendChoice::Auto => {
            tracing::info!("backend auto: cuda is not part of this build; chose wgpu");
            engine(Wgpu::new(Default::default())?, m, opts)
        }
    }
}

/// For each backend on this machine: its device, and whether it can run `m` (every tensor's
/// dtype against its support table), and if not, which tensors and why.
pub fn backend_reports(m: &LoadedModel) -> Vec<BackendReport> {
    let plan = match Plan::new(&m.config, &m.store) {
        Ok(p) => p,
        Err(e) => {
            return vec![BackendReport {
                backend: "any".into(),
                device: String::new(),
                details: vec![],
                can_run: false,
                problems: vec![e.to_string()],
            }]
        }
    };
    let report = |name: &str, device: String, details: Vec<String>, table: &SupportTable| {
        let problems = plan.problems(table, &m.store);
        BackendReport {
            backend: name.into(),
            device,
            details,
            can_run: problems.is_empty(),
            problems,
        }
    };
    let mut out = vec![];
    for a in crate::backend::wgpu::list_adapters() {
        let opts = WgpuOptions {
            adapter: Some(a.index.to_string()),
            ..Default::default()
        };
        match Wgpu::new(opts) {
            Ok(w) => {
                let details = w
                    .describe()
                    .to_string()
                    .lines()
                    .map(str::to_string)
                    .collect();
                out.push(report("wgpu", w.device(), details, &w.support()));
            }
            Err(e) => out.push(BackendReport {
                backend: "wgpu".into(),
                device: a.to_string(),
                details: vec![],
                can_run: false,
                problems: vec![e.to_string()],
            }),
        }
    }
    let r = Reference::new();
    out.push(report(
        "reference",
        r.device(),
        vec!["plain Rust on the CPU: the test oracle, slow".into()],
        &r.support(),
    ));
    out
}
