//! What `-m MODEL` names: a `.gguf` file, a model folder (config.json + safetensors, or one
//! .gguf), or a reference `org/name` (or `org/name/file.gguf`) found in the local Hugging
//! Face cache. `open` then maps the weights and reads and validates the config.

use super::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::{safetensors, Format, WeightStore};
use std::path::{Path, PathBuf};

/// Where a model's files are.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelSource {
    /// What the user gave.
    pub reference: String,
    /// A `.gguf` file, or a folder holding safetensors.
    pub weights: PathBuf,
    pub format: Format,
    pub config_json: Option<PathBuf>,
    pub tokenizer_json: Option<PathBuf>,
    pub tokenizer_config_json: Option<PathBuf>,
    /// `chat_template.jinja` or `chat_template.json` beside the weights.
    pub chat_template: Option<PathBuf>,
}

/// Resolves a reference, looking `org/name` up in the caches of `hf_cache_roots()`.
pub fn resolve(reference: &str) -> Result<ModelSource> {
    resolve_in(reference, &hf_cache_roots())
}

/// The Hugging Face hub caches to search, in order: `$HF_HOME/hub`, `$HF_HUB_CACHE`,
/// `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub` (those that are set).
pub fn hf_cache_roots() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut roots = Vec::new();
    roots.extend(env("HF_HOME").map(|h| h.join("hub")));
    roots.extend(env("HF_HUB_CACHE"));
    roots.extend(env("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")));
    roots.extend(env("HOME").map(|h| h.join(".cache/huggingface/hub")));
    roots.dedup();
    roots
}

/// Resolves a reference: an existing path first, else `org/name[/file]` in `cache_roots`.
pub fn resolve_in(reference: &str, cache_roots: &[PathBuf]) -> Result<ModelSource> {
    let path = Path::new(reference);
    if path.exists() {
        return from_path(path, reference);
    }
    let parts: Vec<&str> = reference.split('/').collect();
    let looks_like_repo = matches!(parts.len(), 2 | 3)
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..")
        && !reference.starts_with(['.', '~']);
    if !looks_like_repo {
        return Err(Error::Input(format!(
            "model '{reference}' does not exist (give a .gguf file, a model folder, or a \
             Hugging Face reference org/name)"
        )));
    }
    let (org, name, file) = (parts[0], parts[1], parts.get(2).copied());
    let mut looked = Vec::new();
    for root in cache_roots {
        let repo = root.join(format!("models--{org}--{name}"));
        let Some(snapshot) = snapshot_of(&repo) else {
            looked.push(format!("{} (no snapshot)", repo.display()));
            continue;
        };
        let found = match file {
            Some(f) => snapshot.join(f),
            None => snapshot,
        };
        if !found.exists() {
            looked.push(format!("{} (absent)", found.display()));
            continue;
        }
        tracing::info!("model '{reference}' is {}", found.display());
        return from_path(&found, reference);
    }
    Err(Error::Input(format!(
        "model '{reference}' is neither a path nor in the local Hugging Face cache; looked \
         in:\n  {}\n(download it, e.g. `hf download {org}/{name}`, or give a path)",
        if looked.is_empty() {
            "no cache folder (HOME, HF_HOME and HF_HUB_CACHE are unset)".to_string()
        } else {
            looked.join("\n  ")
        }
    )))
}

/// The snapshot `refs/main` names, else the newest one.
fn snapshot_of(repo: &Path) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn from_path(path: &Path, reference: &str) -> Result<ModelSource> {
    if path.is_dir() {
        return from_folder(path, reference);
    }
    let is = |ext: &str| path.extension().is_some_and(|e| e == ext);
    let format = if is("gguf") {
        Format::Gguf
    } else if is("safetensors") {
        Format::Safetensors
    } else {
        return Err(Error::Input(format!(
            "{} is not a .gguf or .safetensors file nor a model folder",
            path.display()
        )));
    };
    if format == Format::Gguf {
        // A GGUF carries its own config, vocabulary and chat template.
        return Ok(ModelSource {
            reference: reference.to_string(),
            weights: path.to_path_buf(),
            format,
            config_json: None,
            tokenizer_json: None,
            tokenizer_config_json: None,
            chat_template: None,
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(with_side_files(dir, reference, path.to_path_buf(), format))
}

fn from_folder(dir: &Path, reference: &str) -> Result<ModelSource> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let with_ext = |ext: &str| {
        let mut v: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    };
    let has_config = dir.join("config.json").is_file();
    let has_safetensors =
        dir.join(safetensors::INDEX_FILE).is_file() || !with_ext("safetensors").is_empty();
    if has_config && has_safetensors {
        return Ok(with_side_files(
            dir,
            reference,
            dir.to_path_buf(),
            Format::Safetensors,
        ));
    }
    match with_ext("gguf").as_slice() {
        [one] => return from_path(one, reference),
        [] => {}
        many => {
            return Err(Error::Input(format!(
                "{} holds {} GGUF files; name one of them:\n  {}",
                dir.display(),
                many.len(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )))
        }
    }
    let why = match (has_config, has_safetensors) {
        (true, false) => {
            "has config.json but no *.safetensors weights (other weight formats \
                          such as pytorch_model.bin are not read)"
        }
        (false, true) => "has safetensors weights but no config.json",
        _ => "has neither config.json + *.safetensors nor a .gguf file",
    };
    Err(Error::Input(format!(
        "model folder {} {why}",
        dir.display()
    )))
}

fn with_side_files(dir: &Path, reference: &str, weights: PathBuf, format: Format) -> ModelSource {
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    ModelSource {
        reference: reference.to_string(),
        weights,
        format,
        config_json: file("config.json"),
        tokenizer_json: file("tokenizer.json"),
        tokenizer_config_json: file("tokenizer_config.json"),
        chat_template: file("chat_template.jinja").or_else(|| file("chat_template.json")),
    }
}

/// A model's files mapped, its config read and checked against its tensors.
pub struct LoadedModel {
    pub source: ModelSource,
    pub store: WeightStore,
    pub config: ModelConfig,
}

/// Resolves `reference`, maps its weights, reads its config and validates it.
pub fn open(reference: &str) -> Result<LoadedModel> {
    open_source(resolve(reference)?)
}

pub fn open_source(source: ModelSource) -> Result<LoadedModel> {
    let store = WeightStore::open(&source.weights)?;
    let mut config = match source.format {
        Format::Gguf => ModelConfig::from_gguf(&store)
            .map_err(|e| prefix_path(e, &source.weights.display().to_string()))?,
        Format::Safetensors => {
            let path = source.config_json.as_ref().ok_or_else(|| {
                Error::Input(format!(
                    "{}: safetensors weights need a config.json beside them",
                    source.weights.display()
                ))
            })?;
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            ModelConfig::from_hf_config(&text, &store)
                .map_err(|e| prefix_path(e, &path.display().to_string()))?
        }
    };
    let template = template_text(&source);
    config.detect_variant(
        &[&source.reference, &source.weights.display().to_string()],
        template.as_deref(),
    );
    config.validate(&store)?;
    tracing::info!(
        "loaded {} ({}, {} layers, hidden {}) from {}: {} {:?} file(s), {} tensors, {:.1} MiB",
        config.variant,
        config.architecture,
        config.num_layers,
        config.hidden_size,
        store.describe(),
        store.paths.len(),
        store.format,
        store.tensors.len(),
        store.total_bytes() as f64 / (1 << 20) as f64
    );
    Ok(LoadedModel {
        source,
        store,
        config,
    })
}

/// config.json errors name the file they come from.
fn prefix_path(e: Error, path: &str) -> Error {
    match e {
        Error::Format(m) => Error::Format(format!("{path}: {m}")),
        Error::Model(m) => Error::Model(format!("{path}: {m}")),
        other => other,
    }
}

/// The folder's chat template text, if it has one (only used to label the variant here;
/// the chat module reads templates for real).
fn template_text(source: &ModelSource) -> Option<String> {
    if let Some(p) = &source.chat_template {
        return std::fs::read_to_string(p).ok();
    }
    let text = std::fs::read_to_string(source.tokenizer_config_json.as_ref()?).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(json.get("chat_template")?.to_string())
}
