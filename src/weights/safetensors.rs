//! safetensors: one file, or shards listed by `model.safetensors.index.json`; tensors are
//! views of the memory maps.
//!
//! The header is read here rather than by the safetensors crate so that every refusal names
//! the tensor and the file: the crate's own deserializer stops at an unknown dtype string
//! with a serde message that names neither. A header is a u64 length and that many bytes of
//! JSON; the length is checked against the file before the JSON is read.

use super::{map_file, names, Format, TensorInfo, WeightStore};
use crate::dtype::DType;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";

/// The dtypes lamina loads, by their safetensors spelling.
const LOADED: [(&str, DType); 5] = [
    ("F32", DType::F32),
    ("F16", DType::F16),
    ("BF16", DType::BF16),
    ("I8", DType::I8),
    ("F8_E4M3", DType::F8_E4M3),
];

/// A tensor of one safetensors file, its range absolute and checked.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// The weights of a model folder: sharded when it has an index, else `model.safetensors`,
/// else every `*.safetensors` file in it.
pub fn open_dir(dir: &Path) -> Result<WeightStore> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        return open_sharded(&index);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return open_files(&[single], None);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Model(format!(
            "{} has no {INDEX_FILE}, no {SINGLE_FILE} and no other *.safetensors file",
            dir.display()
        )));
    }
    open_files(&files, None)
}

/// The shards named by an index file's `weight_map`, each checked to hold what the index
/// says it holds.
pub fn open_sharded(index: &Path) -> Result<WeightStore> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Format(format!("{}: not valid JSON: {e}", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            Error::Format(format!(
                "{}: no \"weight_map\" object naming each tensor's shard",
                index.display()
            ))
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::Format(format!(
                "{}: shard of '{tensor}' is not a string",
                index.display()
            ))
        })?;
        // A shard is a file of this folder, nothing else.
        if file.contains(['/', '\\']) || file == ".." || file.is_empty() {
            return Err(Error::Format(format!(
                "{}: shard name {file:?} of '{tensor}' is not a file name in this folder",
                index.display()
            )));
        }
        wanted.insert(tensor.clone(), file.to_string());
    }
    let mut shards: Vec<&String> = wanted.values().collect();
    shards.sort();
    shards.dedup();
    let paths: Vec<PathBuf> = shards.iter().map(|f| dir.join(f)).collect();
    open_files(&paths, Some(&wanted))
}

/// Maps the given files; with `wanted` (tensor -> shard file name) checks each listed
/// tensor is in its shard.
pub fn open_files(
    paths: &[PathBuf],
    wanted: Option<&BTreeMap<String, String>>,
) -> Result<WeightStore> {
    let mut maps = Vec::with_capacity(paths.len());
    let mut tensors: BTreeMap<String, TensorInfo> = BTreeMap::new();
    for (file, path) in paths.iter().enumerate() {
        let map = map_file(path)?;
        let raw = parse(&map, &path.display().to_string())?;
        tracing::debug!("{}: {} tensors", path.display(), raw.len());
        for t in raw {
            let name = names::hf_to_canonical(&t.name);
            if let Some(prev) = tensors.get(&name) {
                return Err(Error::Format(format!(
                    "tensor '{}' in {} and '{}' in {} both map to '{name}'",
                    t.name,
                    path.display(),
                    prev.file_name,
                    paths[prev.file].display()
                )));
            }
            let info = TensorInfo {
                name: name.clone(),
                file_name: t.name,
                dtype: t.dtype,
                shape: t.shape,
                file,
                offset: t.offset,
                len: t.len,
            };
            tensors.insert(name, info);
        }
        maps.push(map);
    }
    if let Some(wanted) = wanted {
        for (tensor, shard) in wanted {
            let found = tensors.get(&names::hf_to_canonical(tensor));
            let in_shard = found.is_some_and(|t| {
                &t.file_name == tensor && paths[t.file].file_name() == Some(shard.as_ref())
            });
            if !in_shard {
                return Err(Error::Format(format!(
                    "{INDEX_FILE} places tensor '{tensor}' in {shard}, which does not hold it"
                )));
            }
        }
    }
    Ok(WeightStore {
        format: Format::Safetensors,
        paths: paths.to_vec(),
        maps,
        tensors,
        meta: Default::default(),
    })
}

/// The tensors of one safetensors file held in `bytes`; `file` names it in messages.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<RawTensor>> {
    let err = |m: String| Error::Format(format!("{file}: {m}"));
    let Some(head) = bytes.get(..8) else {
        return Err(err(format!(
            "truncated safetensors file: {} bytes, not even the 8-byte header length",
            bytes.len()
        )));
    };
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    let available = bytes.len() - 8;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= available)
        .ok_or_else(|| {
            err(format!(
                "safetensors header length {n} is larger than the {available} bytes after it: \
                 the file is truncated or not safetensors"
            ))
        })?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n])
            .map_err(|e| err(format!("safetensors header is not a JSON object: {e}")))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;

    let mut out = Vec::with_capacity(header.len());
    for (name, desc) in &header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |m: &str| err(format!("tensor '{name}': {m}"));
        let dtype_name = desc
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?;
        let dtype = LOADED
            .iter()
            .find(|(s, _)| *s == dtype_name)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                bad(&format!(
                    "dtype {dtype_name} is not one lamina loads (it loads {})",
                    LOADED.map(|(s, _)| s).join(", ")
                ))
            })?;
        let shape = desc
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let (begin, end) = desc
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| match o.as_slice() {
                [b, e] => Some((
                    usize::try_from(b.as_u64()?).ok()?,
                    usize::try_from(e.as_u64()?).ok()?,
                )),
                _ => None,
            })
            .ok_or_else(|| bad("data_offsets is not [begin, end]"))?;
        let len = dtype
            .tensor_bytes(&shape)
            .ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
        if begin > end || end > data_len {
            return Err(bad(&format!(
                "data [{begin}, {end}) lies outside the {data_len} bytes of data: the file is \
                 truncated or corrupt"
            )));
        }
        if end - begin != len {
            return Err(bad(&format!(
                "{dtype} {shape:?} needs {len} bytes but its data_offsets span {}",
                end - begin
            )));
        }
        out.push(RawTensor {
            name: name.clone(),
            dtype,
            shape,
            offset: data_start + begin,
            len,
        });
    }
    Ok(out)
}
