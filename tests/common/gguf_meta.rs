//! Test support only: reads the metadata section of a GGUF file into `Metadata`, so the
//! tokenizer and chat tests can run before the crate's own GGUF parser lands. Every length is
//! checked against the bytes that remain in the file before anything is allocated.

use lamina::weights::gguf::{Metadata, Value};
use std::io::{BufReader, Read};
use std::path::Path;

struct Reader {
    inner: BufReader<std::fs::File>,
    left: u64,
}

impl Reader {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, String> {
        if n > self.left {
            return Err(format!("needs {n} bytes, {} left", self.left));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|e| e.to_string())?;
        self.left -= n;
        Ok(buf)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.bytes(N as u64)?.try_into().unwrap())
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        String::from_utf8(self.bytes(n)?).map_err(|e| e.to_string())
    }
    fn value(&mut self, ty: u32) -> Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: a count beyond the file is a lie.
                if n > self.left {
                    return Err(format!("array of {n} elements in {} bytes", self.left));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            t => return Err(format!("unknown value type {t}")),
        })
    }
}

/// The metadata of a GGUF file (tensor descriptors are not read).
pub fn read_metadata(path: &Path) -> Metadata {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let left = file.metadata().unwrap().len();
    let mut r = Reader {
        inner: BufReader::new(file),
        left,
    };
    let parse = |r: &mut Reader| -> Result<Metadata, String> {
        if &r.array::<4>()? != b"GGUF" {
            return Err("not a GGUF file".into());
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!("GGUF version {version}"));
        }
        let _tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut meta = Metadata::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            meta.insert(key, r.value(ty)?);
        }
        Ok(meta)
    };
    parse(&mut r).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
