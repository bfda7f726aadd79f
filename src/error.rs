//! One error type for the whole crate. Variants carry the facts a person needs to act.

use crate::dtype::DType;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A malformed or truncated file (GGUF, safetensors, config.json, tokenizer).
    #[error("{0}")]
    Format(String),

    /// A model that lamina does not run (architecture, missing tensor, wrong shape).
    #[error("{0}")]
    Model(String),

    /// A tensor whose dtype has no kernel for the op that needs it on the chosen backend.
    #[error("{0}")]
    UnsupportedDtype(Box<Unsupported>),

    /// A backend that is not present on this build or machine.
    #[error("backend {backend} is not available: {reason}")]
    BackendUnavailable { backend: String, reason: String },

    /// A failure inside a backend (device lost, out of memory, kernel launch failure).
    #[error("{backend}: {message}")]
    Backend { backend: String, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    /// Bad arguments or input from the user (prompt too long, bad flag value).
    #[error("{0}")]
    Input(String),
}

/// The facts of an unsupported-dtype refusal (boxed: it is large and rare).
#[derive(Debug, Clone)]
pub struct Unsupported {
    pub tensor: String,
    pub dtype: DType,
    pub op: String,
    pub backend: String,
    pub device: String,
    pub supported: String,
    pub suggestion: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tensor '{}' has dtype {}, which the {} backend ({}) cannot run for op {}; {} \
             supports {} for: {}. {}",
            self.tensor,
            self.dtype,
            self.backend,
            self.device,
            self.op,
            self.backend,
            self.op,
            self.supported,
            self.suggestion
        )
    }
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub fn backend(backend: &str, message: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: backend.to_string(),
            message: message.to_string(),
        }
    }
}
