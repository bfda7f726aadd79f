//! GGUF: header, metadata, tensor descriptors, alignment; tensors as views of a memory map.

use std::collections::BTreeMap;

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
