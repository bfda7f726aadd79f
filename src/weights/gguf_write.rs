//! Writing GGUF v3. One header writer serves `encode` (a whole file in memory: small models
//! and broken files in tests) and `GgufWriter` (tensor data streamed to disk: `lamina
//! quantize`, whose output can be larger than memory).

use super::gguf::{align_up, Metadata, Value, DEFAULT_ALIGNMENT, MAGIC};
use crate::dtype::DType;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A tensor to write with `encode`: its bytes are written as given.
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dtype: DType,
    /// Outermost first.
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// A tensor of a `GgufWriter`'s file, before its data is written.
#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub name: String,
    pub dtype: DType,
    /// Outermost first.
    pub shape: Vec<usize>,
}

impl TensorDesc {
    /// Bytes of the tensor's data, or an error when its rows are not whole blocks.
    pub fn bytes(&self) -> Result<usize> {
        self.dtype.tensor_bytes(&self.shape).ok_or_else(|| {
            Error::Format(format!(
                "tensor '{}': {} {:?} is not a whole number of {}-element blocks per row",
                self.name,
                self.dtype,
                self.shape,
                self.dtype.block_elems()
            ))
        })
    }
}

fn alignment_of(meta: &Metadata) -> Result<usize> {
    match meta.get("general.alignment") {
        Some(v) => v
            .as_u64()
            .and_then(|a| usize::try_from(a).ok())
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| Error::Format("general.alignment must be a power of two".into())),
        None => Ok(DEFAULT_ALIGNMENT),
    }
}

/// Everything before the data section, padded to the alignment, and the alignment.
fn header(meta: &Metadata, tensors: &[(&str, DType, &[usize], usize)]) -> Result<Vec<u8>> {
    let alignment = alignment_of(meta)?;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (key, value) in meta {
        put_str(&mut out, key);
        out.extend_from_slice(&value.type_id().to_le_bytes());
        put_value(&mut out, value, key)?;
    }
    let mut offset = 0usize;
    for &(name, dtype, shape, len) in tensors {
        let id = dtype
            .ggml_id()
            .ok_or_else(|| Error::Format(format!("tensor '{name}': {dtype} has no GGML id")))?;
        put_str(&mut out, name);
        out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = align_up(offset + len, alignment)
            .ok_or_else(|| Error::Format("tensor offsets overflow".into()))?;
    }
    out.resize(align_up(out.len(), alignment).expect("header fits"), 0);
    Ok(out)
}

/// A GGUF v3 file holding `meta` and `tensors`, in memory.
pub fn encode(meta: &Metadata, tensors: &[TensorData]) -> Result<Vec<u8>> {
    let alignment = alignment_of(meta)?;
    let mut descs = Vec::with_capacity(tensors.len());
    for t in tensors {
        let expect = t.dtype.tensor_bytes(t.shape);
        if expect != Some(t.bytes.len()) {
            return Err(Error::Format(format!(
                "tensor '{}': {} bytes given, {:?} expected for {} {:?}",
                t.name,
                t.bytes.len(),
                expect,
                t.dtype,
                t.shape
            )));
        }
        descs.push((t.name, t.dtype, t.shape, t.bytes.len()));
    }
    let mut out = header(meta, &descs)?;
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 {
            out.resize(align_up(out.len(), alignment).expect("small files"), 0);
        }
        out.extend_from_slice(t.bytes);
    }
    Ok(out)
}

/// Streams a GGUF file to `OUT.tmp`, tensor after tensor in the order given, and renames it
/// to `OUT` once every byte is written: a failure or an early drop never leaves a partial
/// file under the final name.
pub struct GgufWriter {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    out: PathBuf,
    /// (name, bytes) of each tensor, in order.
    tensors: Vec<(String, usize)>,
    alignment: usize,
    /// The tensor being written and how many of its bytes have come.
    current: usize,
    done_in_current: usize,
    written: u64,
    finished: bool,
}

/// `OUT.tmp` beside `OUT`.
pub fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

impl GgufWriter {
    pub fn create(out: &Path, meta: &Metadata, tensors: &[TensorDesc]) -> Result<GgufWriter> {
        let mut descs = Vec::with_capacity(tensors.len());
        for t in tensors {
            descs.push((t.name.as_str(), t.dtype, t.shape.as_slice(), t.bytes()?));
        }
        let head = header(meta, &descs)?;
        let tmp = tmp_path(out);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = GgufWriter {
            file: std::io::BufWriter::with_capacity(8 << 20, file),
            tmp,
            out: out.to_path_buf(),
            tensors: descs.iter().map(|d| (d.0.to_string(), d.3)).collect(),
            alignment: alignment_of(meta)?,
            current: 0,
            done_in_current: 0,
            written: 0,
            finished: false,
        };
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.file
            .write_all(b)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Appends the next bytes of the tensor being written (any number of calls per tensor).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some((name, len)) = self.tensors.get(self.current).cloned() else {
            return Err(Error::Format(format!(
                "{}: {} bytes written after the last tensor",
                self.tmp.display(),
                bytes.len()
            )));
        };
        if self.done_in_current + bytes.len() > len {
            return Err(Error::Format(format!(
                "tensor '{name}': more than its {len} bytes written"
            )));
        }
        self.put(bytes)?;
        self.done_in_current += bytes.len();
        if self.done_in_current == len {
            self.current += 1;
            self.done_in_current = 0;
            if self.current < self.tensors.len() {
                let pad = align_up(len, self.alignment).expect("checked in header") - len;
                self.put(&vec![0u8; pad])?;
            }
        }
        Ok(())
    }

    /// Checks that every tensor is complete, syncs, and renames to the final path; returns
    /// the file's size.
    pub fn finish(mut self) -> Result<u64> {
        if let Some((name, len)) = self.tensors.get(self.current) {
            return Err(Error::Format(format!(
                "tensor '{name}' has {} of its {len} bytes: the file is incomplete",
                self.done_in_current
            )));
        }
        self.file.flush().map_err(|e| Error::io(&self.tmp, e))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
        self.finished = true;
        Ok(self.written)
    }
}

impl Drop for GgufWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value, key: &str) -> Result<()> {
    match v {
        Value::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            let ty = items.first().map_or(0, Value::type_id);
            if items.iter().any(|i| i.type_id() != ty) {
                return Err(Error::Format(format!(
                    "metadata '{key}': GGUF arrays hold one type"
                )));
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item, key)?;
            }
        }
    }
    Ok(())
}
