//! Weight files: GGUF and safetensors (single or sharded), zero-copy over memory maps.
//! Tensors get canonical names (GGUF's naming: `blk.N.attn_q.weight`) whatever the file used.

pub mod gguf;
mod gguf_write;
pub mod names;
pub mod safetensors;

use crate::dtype::DType;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    Gguf,
    Safetensors,
}

/// One tensor of a weight file: where its bytes are, never the bytes themselves.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Canonical name (GGUF naming).
    pub name: String,
    /// The name in the file, for messages.
    pub file_name: String,
    pub dtype: DType,
    /// Outermost dimension first (a linear weight is [out_features, in_features]).
    pub shape: Vec<usize>,
    /// Index into `WeightStore::files`.
    pub file: usize,
    /// Byte offset of the data in that file, and its length.
    pub offset: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }
    pub fn cols(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }
}

/// The memory maps of a model's weight files and the tensors in them.
pub struct WeightStore {
    pub format: Format,
    pub paths: Vec<PathBuf>,
    pub maps: Vec<memmap2::Mmap>,
    /// By canonical name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// GGUF metadata (empty for safetensors).
    pub meta: gguf::Metadata,
}

impl WeightStore {
    /// A `.gguf` file, a `.safetensors` file, or a folder of safetensors (single or sharded).
    pub fn open(path: &Path) -> Result<WeightStore> {
        if path.is_dir() {
            return safetensors::open_dir(path);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("gguf") => gguf::open(path),
            Some("safetensors") => safetensors::open_files(&[path.to_path_buf()], None),
            Some("json") if path.ends_with(safetensors::INDEX_FILE) => {
                safetensors::open_sharded(path)
            }
            _ if !path.exists() => Err(Error::Input(format!("{} does not exist", path.display()))),
            _ => Err(Error::Input(format!(
                "{} is not a .gguf or .safetensors file nor a model folder",
                path.display()
            ))),
        }
    }

    /// The bytes of a tensor, borrowed from the memory map.
    pub fn bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.maps[t.file][t.offset..t.offset + t.len]
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// A tensor that must exist, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&TensorInfo> {
        self.get(name)
            .ok_or_else(|| Error::Model(format!("missing tensor '{name}' in {}", self.describe())))
    }

    pub fn total_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.len).sum()
    }

    pub fn describe(&self) -> String {
        match self.paths.as_slice() {
            [one] => one.display().to_string(),
            many => format!("{} shards in {}", many.len(), parent_of(&many[0])),
        }
    }
}

fn parent_of(p: &Path) -> String {
    p.parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

/// Maps a file read-only. The map is only valid while nobody truncates the file; that is
/// the usual contract of every engine that maps weights.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map of a file we do not write; see above.
    unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))
}
