//! `lamina quantize IN OUT --type TYPE`: a safetensors model folder or a GGUF file in, a GGUF
//! file out, with metadata, tokenizer and chat template carried over and the tensor types
//! of `mixture`. The output is streamed (`GgufWriter`: `OUT.tmp`, renamed when complete) and
//! the rows of each tensor are quantized on every core.

pub mod hf;
pub mod mixture;
mod run;
mod vocab;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::resolve;
use crate::quant::DEQUANTIZE_DTYPES;
use crate::weights::gguf::{GgufWriter, Metadata, MetadataExt, TensorDesc, Value};
use crate::weights::{names, Format, WeightStore};
use mixture::{ModelFacts, QuantType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// GGML's current block layout version (`general.quantization_version`).
const QUANTIZATION_VERSION: u32 = 2;

/// Keys of split files; the output is one file.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// A tensor of the output and where its values come from.
#[derive(Clone, Debug)]
pub struct Planned {
    /// GGUF name.
    pub name: String,
    /// Outermost first.
    pub shape: Vec<usize>,
    pub src: Source,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// A tensor of the input under its canonical name; `permute_heads` reorders the rows of
    /// each of that many heads from Hugging Face's rope halves to GGUF's adjacent pairs.
    Stored {
        key: String,
        permute_heads: Option<usize>,
    },
    /// Values made by the converter (rope factors).
    Values(Vec<f32>),
}

pub struct Options {
    pub input: PathBuf,
    pub output: PathBuf,
    pub qtype: String,
    /// Worker threads; default: every core.
    pub threads: Option<usize>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub qtype: &'static str,
    /// Output dtype -> number of tensors.
    pub types: BTreeMap<DType, usize>,
    /// Bytes of the input's tensors, and of the output file.
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub secs: f64,
    pub threads: usize,
}

impl Summary {
    pub fn types_line(&self) -> String {
        let parts: Vec<String> = self
            .types
            .iter()
            .map(|(d, n)| format!("{d} x{n}"))
            .collect();
        parts.join(", ")
    }
}

pub fn quantize(o: &Options) -> Result<Summary> {
    let start = Instant::now();
    let qt = mixture::parse_type(&o.qtype)?;
    check_paths(&o.input, &o.output)?;
    let is_gguf = o.input.is_file() && o.input.extension().is_some_and(|e| e == "gguf");
    let (store, mut meta, mut tensors) = if is_gguf {
        open_gguf(&o.input)?
    } else {
        let m = resolve::open_source(resolve::resolve(&o.input.to_string_lossy())?)?;
        if m.store.format != Format::Safetensors {
            return Err(Error::Input(format!(
                "{} is neither a .gguf file nor a safetensors model folder",
                o.input.display()
            )));
        }
        let (meta, tensors) = hf::plan(&m)?;
        (m.store, meta, tensors)
    };
    let facts = facts(&meta, &tensors)?;
    // llama.cpp's order: whole-model tensors first, then layer by layer, by name within each.
    tensors.sort_by(|a, b| {
        let layer = |n: &str| names::layer_of(n).map_or(-1, |l| l as i64);
        (layer(&a.name), &a.name).cmp(&(layer(&b.name), &b.name))
    });

    let mut descs = Vec::with_capacity(tensors.len());
    for t in &tensors {
        if let Source::Stored { key, .. } = &t.src {
            let info = store.require(key)?;
            if !DEQUANTIZE_DTYPES.contains(&info.dtype) {
                return Err(Error::Input(format!(
                    "tensor '{}' of {} is {}, which lamina quantize cannot read (it reads {}); \
                     nothing was written",
                    info.file_name,
                    o.input.display(),
                    info.dtype,
                    DEQUANTIZE_DTYPES
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let dtype = mixture::tensor_type(&qt, &t.name, &t.shape, &facts)?;
        descs.push(TensorDesc {
            name: t.name.clone(),
            dtype,
            shape: t.shape.clone(),
        });
    }
    for k in SPLIT_KEYS {
        meta.remove(k);
    }
    meta.insert("general.file_type".into(), Value::U32(qt.file_type));
    meta.insert(
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    );

    let threads = o
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let in_bytes: u64 = tensors.iter().map(|t| run::source_bytes(&store, t)).sum();
    let bar = crate::progress::bytes_bar("quantize");
    bar.set_length(in_bytes);
    let mut w = GgufWriter::create(&o.output, &meta, &descs)?;
    let mut types = BTreeMap::new();
    for (t, d) in tensors.iter().zip(&descs) {
        run::write_tensor(&store, t, d.dtype, threads, &mut w, &bar)?;
        *types.entry(d.dtype).or_insert(0) += 1;
    }
    let out_bytes = w.finish()?;
    bar.finish_and_clear();
    let s = Summary {
        qtype: qt.name,
        types,
        in_bytes,
        out_bytes,
        secs: start.elapsed().as_secs_f64(),
        threads,
    };
    tracing::info!(
        "wrote {} ({}, {:.1} MiB) from {} ({:.1} MiB of tensors) in {:.2} s ({:.0} MB/s of \
         input, {} threads); tensor types: {}",
        o.output.display(),
        s.qtype,
        s.out_bytes as f64 / (1u64 << 20) as f64,
        o.input.display(),
        s.in_bytes as f64 / (1u64 << 20) as f64,
        s.secs,
        s.in_bytes as f64 / 1e6 / s.secs.max(1e-9),
        s.threads,
        s.types_line()
    );
    Ok(s)
}

/// Input that exists and output whose folder exists, before anything is read or written.
fn check_paths(input: &Path, output: &Path) -> Result<()> {
    if !input.exists() {
        return Err(Error::Input(format!(
            "input {} does not exist (give a .gguf file or a safetensors model folder)",
            input.display()
        )));
    }
    if output.is_dir() {
        return Err(Error::Input(format!(
            "output {} is a folder; give the path of the .gguf file to write",
            output.display()
        )));
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::Input(format!(
            "the folder of output {} does not exist; create it first",
            output.display()
        )));
    }
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(Error::Input(format!(
                "output {} is the input; write to another file",
                output.display()
            )));
        }
    }
    Ok(())
}

/// A GGUF input: all its metadata, its tensors under their file names.
fn open_gguf(path: &Path) -> Result<(WeightStore, Metadata, Vec<Planned>)> {
    let store = WeightStore::open(path)?;
    let meta = store.meta.clone();
    let tensors = store
        .tensors
        .values()
        .map(|t| Planned {
            name: t.file_name.clone(),
            shape: t.shape.clone(),
            src: Source::Stored {
                key: t.name.clone(),
                permute_heads: None,
            },
        })
        .collect();
    Ok((store, meta, tensors))
}

fn facts(meta: &Metadata, tensors: &[Planned]) -> Result<ModelFacts> {
    let arch = meta.get_str("general.architecture")?.to_string();
    let n_layer = match meta.opt_usize(&format!("{arch}.block_count"))? {
        Some(n) => n,
        None => tensors
            .iter()
            .filter_map(|t| names::layer_of(&t.name))
            .max()
            .map_or(0, |l| l + 1),
    };
    Ok(ModelFacts {
        arch,
        n_layer,
        has_output: tensors.iter().any(|t| t.name == "output.weight"),
    })
}

/// The rules of a type, for tests and `--help`: (GGUF name, shape) -> dtype.
pub fn types_for(
    qtype: &str,
    arch: &str,
    n_layer: usize,
    tensors: &[(&str, &[usize])],
) -> Result<Vec<DType>> {
    let qt: QuantType = mixture::parse_type(qtype)?;
    let facts = ModelFacts {
        arch: arch.into(),
        n_layer,
        has_output: tensors.iter().any(|t| t.0 == "output.weight"),
    };
    tensors
        .iter()
        .map(|(n, s)| mixture::tensor_type(&qt, n, s, &facts))
        .collect()
}
