//! GGUF: header, metadata, tensor descriptors, alignment; tensors as views of a memory map.
//!
//! The parser is ours: gguf-rs-lib 0.3.3 refuses real files (version-2 files such as
//! ggml-vocab-aquila.gguf; keys with a hyphen such as `command-r.context_length`), and its
//! mmap reader only checks the magic. Every count and length read from the file is checked
//! against the bytes that remain before anything is allocated for it, and every tensor's
//! range against the file length, with checked arithmetic.

pub use super::gguf_write::{encode, GgufWriter, TensorData, TensorDesc};
use super::{map_file, names, Format, TensorInfo, WeightStore};
use crate::dtype::DType;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

/// A GGUF metadata value (all the value types of the format, arrays included).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

/// Metadata by key, in file order of keys sorted.
pub type Metadata = BTreeMap<String, Value>;

pub(super) const MAGIC: &[u8; 4] = b"GGUF";
pub(super) const DEFAULT_ALIGNMENT: usize = 32;
/// GGML tensors have at most 4 dimensions.
const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal; deeper nesting than this is only a way to exhaust the stack.
const MAX_ARRAY_DEPTH: usize = 8;

/// Value type ids of the format, with the fewest bytes a value of the type occupies
/// (a string is at least its length field; an array its type and length fields).
const VALUE_TYPES: [(&str, usize); 13] = [
    ("u8", 1),
    ("i8", 1),
    ("u16", 2),
    ("i16", 2),
    ("u32", 4),
    ("i32", 4),
    ("f32", 4),
    ("bool", 1),
    ("string", 8),
    ("array", 12),
    ("u64", 8),
    ("i64", 8),
    ("f64", 8),
];

impl Value {
    /// The format's name of the type ("u32", "string", "array of string", ...).
    pub fn type_name(&self) -> String {
        let id = self.type_id() as usize;
        match self {
            Value::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".into(),
            },
            _ => VALUE_TYPES[id].0.into(),
        }
    }

    pub(super) fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// Any integer type holding a value >= 0.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// Any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(x) => Some(x.into()),
            Value::I16(x) => Some(x.into()),
            Value::I32(x) => Some(x.into()),
            Value::I64(x) => Some(x),
            _ => self.as_u64().and_then(|x| i64::try_from(x).ok()),
        }
    }

    /// Any number (files written by different converters disagree on f32 vs int).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x.into()),
            Value::F64(x) => Some(x),
            _ => self.as_i64().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A short rendering for messages (long arrays abbreviated).
    pub fn brief(&self) -> String {
        match self {
            Value::String(s) if s.chars().count() > 60 => {
                format!("{:?}...", s.chars().take(60).collect::<String>())
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(items) => format!("[{} x {}]", items.len(), self.type_name()),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// Typed reads of metadata. `opt_*` gives None for an absent key; `get_*` makes absence an
/// error. A present key of another type is always an error naming the key and both types.
pub trait MetadataExt {
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>>;

    fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an unsigned 32-bit integer", |v| {
            v.as_u64().and_then(|x| u32::try_from(x).ok())
        })
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "an unsigned integer", |v| {
            v.as_u64().and_then(|x| usize::try_from(x).ok())
        })
    }
    fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }
    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", Value::as_bool)
    }
    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", Value::as_str)
    }
    fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?.iter().map(Value::as_str).collect()
        })
    }
    fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.typed(key, "an array of numbers", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect()
        })
    }
    fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.typed(key, "an array of 32-bit integers", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_i64().and_then(|i| i32::try_from(i).ok()))
                .collect()
        })
    }

    fn get_u32(&self, key: &str) -> Result<u32> {
        self.opt_u32(key)?.ok_or_else(|| missing(key))
    }
    fn get_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| missing(key))
    }
    fn get_f32(&self, key: &str) -> Result<f32> {
        self.opt_f32(key)?.ok_or_else(|| missing(key))
    }
    fn get_str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| missing(key))
    }
    fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.opt_str_array(key)?.ok_or_else(|| missing(key))
    }
    fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.opt_f32_array(key)?.ok_or_else(|| missing(key))
    }
}

fn missing(key: &str) -> Error {
    Error::Format(format!("GGUF metadata key '{key}' is missing"))
}

impl MetadataExt for Metadata {
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => conv(v).map(Some).ok_or_else(|| {
                Error::Format(format!(
                    "GGUF metadata key '{key}' should be {expected}, but is {} {}",
                    v.type_name(),
                    v.brief()
                ))
            }),
        }
    }
}

/// A tensor descriptor as the file gives it, its range made absolute and checked.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    pub name: String,
    pub dtype: DType,
    /// Outermost first (GGUF's ne[] reversed).
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file, and length.
    pub offset: usize,
    pub len: usize,
}

/// Everything in a GGUF file but the tensor data.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub meta: Metadata,
    /// In file order.
    pub tensors: Vec<GgufTensor>,
    pub alignment: usize,
    /// Where the data section starts.
    pub data_offset: usize,
}

/// Maps a GGUF file and describes its tensors under canonical names.
pub fn open(path: &Path) -> Result<WeightStore> {
    let map = map_file(path)?;
    let header = parse(&map, &path.display().to_string())?;
    let arch = header
        .meta
        .opt_str("general.architecture")?
        .unwrap_or_default()
        .to_string();
    let mut tensors = BTreeMap::new();
    for t in header.tensors {
        let name = names::gguf_to_canonical(&t.name, &arch);
        let info = TensorInfo {
            name: name.clone(),
            file_name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            file: 0,
            offset: t.offset,
            len: t.len,
        };
        tensors.insert(name, info);
    }
    tracing::debug!(
        "{}: GGUF v{}, {} metadata keys, {} tensors",
        path.display(),
        header.version,
        header.meta.len(),
        tensors.len()
    );
    Ok(WeightStore {
        format: Format::Gguf,
        paths: vec![path.to_path_buf()],
        maps: vec![map],
        tensors,
        meta: header.meta,
    })
}

/// Parses the header, metadata and tensor descriptors of a GGUF file held in `bytes`.
/// `file` names the file in messages.
pub fn parse(bytes: &[u8], file: &str) -> Result<GgufHeader> {
    let mut r = Reader {
        b: bytes,
        pos: 0,
        file,
    };
    let magic = r.take(4, &"the magic number")?;
    if magic != MAGIC {
        let mut rev = magic.to_vec();
        rev.reverse();
        if rev == MAGIC {
            return Err(r.err("big-endian GGUF file; lamina reads little-endian files only"));
        }
        return Err(r.err(&format!(
            "not a GGUF file (magic {:?}, expected \"GGUF\")",
            String::from_utf8_lossy(magic)
        )));
    }
    let version = r.u32(&"the version")?;
    if version & 0xFFFF == 0 && (1..=3).contains(&version.swap_bytes()) {
        return Err(r.err(&format!(
            "big-endian GGUF v{} file; lamina reads little-endian files only",
            version.swap_bytes()
        )));
    }
    match version {
        2 | 3 => {}
        1 => {
            return Err(r.err(
                "GGUF version 1 (the 2023 draft with 32-bit counts), which lamina does not \
                 read; convert it again with a current llama.cpp",
            ))
        }
        v => return Err(r.err(&format!("GGUF version {v}; lamina reads versions 2 and 3"))),
    }

    // The smallest descriptor is a name length, n_dims, a type and an offset.
    let n_tensors = r.count(&"tensor count", 8 + 4 + 4 + 8)?;
    // The smallest key/value is a key length, a type and a one-byte value.
    let n_kv = r.count(&"metadata key/value count", 8 + 4 + 1)?;

    let mut meta = Metadata::new();
    for _ in 0..n_kv {
        let key = r.string(&"a metadata key")?;
        let ty = r.u32(&"a value type")?;
        let value = r.value(ty, &key, 0)?;
        if meta.insert(key.clone(), value).is_some() {
            return Err(r.err(&format!("metadata key '{key}' appears twice")));
        }
    }

    let alignment = match meta.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64().and_then(|a| usize::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(r.err(&format!(
                    "general.alignment {} is not a power of two",
                    v.brief()
                )))
            }
        },
    };

    // Grows with the descriptors actually read; the count was bounded above.
    let mut raw = Vec::with_capacity(n_tensors.min(1 << 12));
    for _ in 0..n_tensors {
        raw.push(r.tensor_descriptor()?);
    }
    let data_offset = align_up(r.pos, alignment).ok_or_else(|| r.err("data offset overflows"))?;

    let mut seen = std::collections::HashSet::new();
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dtype, shape, rel) in raw {
        if !seen.insert(name.clone()) {
            return Err(r.err(&format!("tensor '{name}' appears twice")));
        }
        let len = tensor_len(&name, dtype, &shape).map_err(|m| r.err(&m))?;
        if !rel.is_multiple_of(alignment as u64) {
            return Err(r.err(&format!(
                "tensor '{name}': data offset {rel} is not a multiple of the alignment {alignment}"
            )));
        }
        let range = usize::try_from(rel)
            .ok()
            .and_then(|rel| rel.checked_add(data_offset))
            .and_then(|start| Some((start, start.checked_add(len)?)));
        match range {
            Some((start, end)) if end <= bytes.len() => tensors.push(GgufTensor {
                name,
                dtype,
                shape,
                offset: start,
                len,
            }),
            _ => {
                return Err(r.err(&format!(
                    "tensor '{name}' ({dtype} {shape:?}, {len} bytes at data offset {rel}) \
                     extends past the end of the file ({} bytes): the file is truncated or \
                     corrupt",
                    bytes.len()
                )))
            }
        }
    }
    Ok(GgufHeader {
        version,
        meta,
        tensors,
        alignment,
        data_offset,
    })
}

/// Bytes of a tensor, or a message saying why its shape is impossible.
fn tensor_len(name: &str, dtype: DType, shape: &[usize]) -> std::result::Result<usize, String> {
    let inner = *shape.last().unwrap_or(&1);
    if dtype.row_bytes(inner).is_none() {
        return Err(format!(
            "tensor '{name}': {dtype} stores blocks of {} elements, but its rows have {inner}",
            dtype.block_elems()
        ));
    }
    dtype
        .tensor_bytes(shape)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| format!("tensor '{name}': dimensions {shape:?} overflow"))
}

pub(super) fn align_up(x: usize, a: usize) -> Option<usize> {
    x.checked_add(a - 1).map(|y| y / a * a)
}

/// "the value of 'key'", formatted only for a message.
struct ValueOf<'k>(&'k str);

impl Display for ValueOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the value of '{}'", self.0)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: &str) -> Error {
        Error::Format(format!("{}: {msg} (GGUF byte {})", self.file, self.pos))
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Display) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(&format!(
                "truncated: {what} needs {n} bytes but only {} remain",
                self.remaining()
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Display) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &dyn Display) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Display) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count (`noun`: "tensor count", ...) of items of at least `min_bytes` each, refused
    /// when the rest of the file cannot hold that many.
    fn count(&mut self, noun: &dyn Display, min_bytes: usize) -> Result<usize> {
        let n = self.u64(&format_args!("the {noun}"))?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_bytes))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(self.err(&format!(
                "{noun} {n} is more than the {} bytes left in the file can hold: the file is \
                 truncated or corrupt",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &dyn Display) -> Result<String> {
        let len = self.count(&format_args!("string length (in {what})"), 1)?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            Error::Format(format!(
                "{}: {what} is not valid UTF-8 (GGUF byte {}: {e})",
                self.file, at
            ))
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        // Messages are only formatted when something fails: this runs for every token.
        let what = &ValueOf(key);
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(&format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(&format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let item_ty = self.u32(what)?;
                let min = VALUE_TYPES
                    .get(item_ty as usize)
                    .map(|t| t.1)
                    .ok_or_else(|| {
                        self.err(&format!("{what}: unknown array item type {item_ty}"))
                    })?;
                let n = self.count(&format_args!("array length (in {what})"), min)?;
                // Grows with the items actually read; the bound above keeps it finite.
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(item_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(self.err(&format!("{what}: unknown value type {t}"))),
        })
    }

    /// Name, dtype, shape (outermost first) and offset relative to the data section.
    fn tensor_descriptor(&mut self) -> Result<(String, DType, Vec<usize>, u64)> {
        let name = self.string(&"a tensor name")?;
        let n_dims = self.u32(&format!("tensor '{name}': dimension count"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.err(&format!(
                "tensor '{name}' has {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            let d = self.u64(&format!("tensor '{name}': a dimension"))?;
            let d = usize::try_from(d)
                .map_err(|_| self.err(&format!("tensor '{name}': dimension {d} overflows")))?;
            ne.push(d);
        }
        ne.reverse();
        let id = self.u32(&format!("tensor '{name}': type"))?;
        let dtype = DType::from_ggml(id).map_err(|e| self.err(&format!("tensor '{name}': {e}")))?;
        let offset = self.u64(&format!("tensor '{name}': offset"))?;
        Ok((name, dtype, ne, offset))
    }
}
