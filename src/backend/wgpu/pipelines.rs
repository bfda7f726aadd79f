//! WGSL sources and the pipeline cache, keyed by (op, dtype, variant).
//!
//! A shader is the concatenation, in this order, of:
//! - `shaders/common.wgsl` (always: grid indexing);
//! - for ops that read a weight: `shaders/bytes.wgsl` (byte readers over `w: array<u32>`)
//!   and the weight dtype's format file `shaders/matmul_<dtype>.wgsl`, which defines
//!   `dq4`/`dq1` (read 4 or 1 elements of a row in that dtype as f32);
//! - for ops with workgroup reductions (matmul, rms_norm, attention):
//!   `shaders/reduce_subgroup.wgsl` when the device has subgroups, else
//!   `shaders/reduce_shared.wgsl`;
//! - the op's own file `shaders/<op>.wgsl`.
//!
//! Int8 weights (compressed-tensors W8A8) are not dequantized but multiplied as integers, so
//! (matmul, I8) has kernels of its own instead of a format file: common.wgsl, a
//! reduce_*.wgsl variant, `shaders/matmul_i8_quantize.wgsl` (per-token quantization of the
//! activations) and `shaders/matmul_i8.wgsl` (the int8 products).
//!
//! Nothing else is generated or substituted: what runs is what those files say.

use super::device::Gpu;
use crate::backend::Op;
use crate::dtype::DType;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

const COMMON: &str = include_str!("../../../shaders/common.wgsl");
const BYTES: &str = include_str!("../../../shaders/bytes.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../../shaders/reduce_subgroup.wgsl");
const REDUCE_SHARED: &str = include_str!("../../../shaders/reduce_shared.wgsl");
const MATMUL_I8_QUANTIZE: &str = include_str!("../../../shaders/matmul_i8_quantize.wgsl");
const MATMUL_I8: &str = include_str!("../../../shaders/matmul_i8.wgsl");

/// The weight dtypes matmul reads: those with a format file, and I8.
pub const MATMUL_DTYPES: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::I8,
];

/// The dtypes with a format file `shaders/matmul_<dtype>.wgsl`: what matmul.wgsl and
/// embedding read.
pub const FORMAT_DTYPES: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// The dtypes of rms_norm weights and biases.
pub const VECTOR_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::BF16];

/// How one dtype is read: its format file.
fn format_file(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => include_str!("../../../shaders/matmul_f32.wgsl"),
        DType::F16 => include_str!("../../../shaders/matmul_f16.wgsl"),
        DType::BF16 => include_str!("../../../shaders/matmul_bf16.wgsl"),
        DType::Q8_0 => include_str!("../../../shaders/matmul_q8_0.wgsl"),
        DType::Q4_0 => include_str!("../../../shaders/matmul_q4_0.wgsl"),
        DType::Q4_1 => include_str!("../../../shaders/matmul_q4_1.wgsl"),
        DType::Q5_0 => include_str!("../../../shaders/matmul_q5_0.wgsl"),
        DType::Q5_1 => include_str!("../../../shaders/matmul_q5_1.wgsl"),
        DType::Q2_K => include_str!("../../../shaders/matmul_q2_k.wgsl"),
        DType::Q3_K => include_str!("../../../shaders/matmul_q3_k.wgsl"),
        DType::Q4_K => include_str!("../../../shaders/matmul_q4_k.wgsl"),
        DType::Q5_K => include_str!("../../../shaders/matmul_q5_k.wgsl"),
        DType::Q6_K => include_str!("../../../shaders/matmul_q6_k.wgsl"),
        _ => return None,
    })
}

fn op_file(op: Op) -> &'static str {
    match op {
        Op::Embedding => include_str!("../../../shaders/embedding.wgsl"),
        Op::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
        Op::Matmul => include_str!("../../../shaders/matmul.wgsl"),
        Op::AddBias => include_str!("../../../shaders/add_bias.wgsl"),
        Op::Rope => include_str!("../../../shaders/rope.wgsl"),
        Op::KvWrite => include_str!("../../../shaders/kv_write.wgsl"),
        Op::Attention => include_str!("../../../shaders/attention.wgsl"),
        Op::Swiglu => include_str!("../../../shaders/swiglu.wgsl"),
        Op::Add => include_str!("../../../shaders/add.wgsl"),
        Op::Copy => include_str!("../../../shaders/copy.wgsl"),
        Op::Argmax => include_str!("../../../shaders/argmax.wgsl"),
    }
}

/// The weight dtypes an op reads (empty: the op reads no weight).
pub fn op_dtypes(op: Op) -> &'static [DType] {
    match op {
        Op::Matmul => MATMUL_DTYPES,
        Op::Embedding => FORMAT_DTYPES,
        Op::RmsNorm | Op::AddBias => VECTOR_DTYPES,
        _ => &[],
    }
}

/// Whether the op's shader has workgroup reductions, and so a subgroup variant.
fn reduces(op: Op) -> bool {
    matches!(op, Op::Matmul | Op::RmsNorm | Op::Attention)
}

/// One shader module: an op, the weight dtype it reads, and whether it uses subgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderKey {
    pub op: Op,
    pub dtype: Option<DType>,
    pub subgroups: bool,
}

impl ShaderKey {
    /// The entry points of this shader.
    pub fn entries(&self) -> &'static [&'static str] {
        match (self.op, self.dtype) {
            (Op::Matmul, Some(DType::I8)) => &["quantize", "gemv", "tiled", "rows", "rows4"],
            (Op::Matmul, _) => &["gemv", "tiled", "rows", "rows4"],
            _ => &["main"],
        }
    }

    /// A readable name: "matmul_q4_k+subgroup".
    pub fn label(&self) -> String {
        let mut s = self.op.name().to_string();
        if let Some(d) = self.dtype {
            s.push('_');
            s.push_str(&d.to_string().to_lowercase());
        }
        if self.subgroups {
            s.push_str("+subgroup");
        }
        s
    }

    /// Whether this variant needs the SUBGROUP feature (naga: Capabilities::SUBGROUP).
    pub fn needs_subgroups(&self) -> bool {
        self.subgroups
    }

    /// Whether this variant widens f16 with `unpack2x16float` (every shader that reads a
    /// weight: bytes.wgsl reads the f16 scales of the block formats with it, matmul_i8.wgsl
    /// f16 per-row scales). wgpu calls
    /// that downlevel flag SHADER_F16_IN_F32, naga Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    /// it does not need the SHADER_F16 feature.
    pub fn needs_f16_unpack(&self) -> bool {
        !op_dtypes(self.op).is_empty()
    }

    /// The WGSL of this variant, concatenated as the module documentation says.
    pub fn source(&self) -> Result<String> {
        let mut parts = vec![COMMON];
        let wants = op_dtypes(self.op);
        if (self.op, self.dtype) == (Op::Matmul, Some(DType::I8)) {
            parts.push(self.reduce());
            parts.push(MATMUL_I8_QUANTIZE);
            parts.push(MATMUL_I8);
            return Ok(parts.join("\n"));
        }
        match self.dtype {
            Some(d) if wants.contains(&d) => {
                parts.push(BYTES);
                parts.push(format_file(d).ok_or_else(|| no_kernel(self.op, d))?);
            }
            Some(d) => return Err(no_kernel(self.op, d)),
            None if !wants.is_empty() => {
                return Err(Error::backend(
                    "wgpu",
                    format!("op {} needs a weight dtype", self.op),
                ))
            }
            None => {}
        }
        if reduces(self.op) {
            parts.push(self.reduce());
        } else if self.subgroups {
            return Err(Error::backend(
                "wgpu",
                format!("op {} has no subgroup variant", self.op),
            ));
        }
        parts.push(op_file(self.op));
        Ok(parts.join("\n"))
    }

    fn reduce(&self) -> &'static str {
        if self.subgroups {
            REDUCE_SUBGROUP
        } else {
            REDUCE_SHARED
        }
    }
}

fn no_kernel(op: Op, d: DType) -> Error {
    Error::backend("wgpu", format!("no {op} kernel reads {d}"))
}

/// Every shader variant this backend can create: each op, each dtype it reads, with and
/// without subgroups where it reduces. The naga test translates all of them.
pub fn all_variants() -> Vec<ShaderKey> {
    let ops = [
        Op::Embedding,
        Op::RmsNorm,
        Op::Matmul,
        Op::AddBias,
        Op::Rope,
        Op::KvWrite,
        Op::Attention,
        Op::Swiglu,
        Op::Add,
        Op::Copy,
        Op::Argmax,
    ];
    let mut out = Vec::new();
    for op in ops {
        let dts: Vec<Option<DType>> = if op_dtypes(op).is_empty() {
            vec![None]
        } else {
            op_dtypes(op).iter().map(|d| Some(*d)).collect()
        };
        let sgs: &[bool] = if reduces(op) {
            &[false, true]
        } else {
            &[false]
        };
        for dtype in dts {
            for &subgroups in sgs {
                out.push(ShaderKey {
                    op,
                    dtype,
                    subgroups,
                });
            }
        }
    }
    out
}

/// Compiled pipelines, created on first use.
#[derive(Default)]
pub(crate) struct Pipelines {
    cache: Mutex<HashMap<(ShaderKey, &'static str), ::wgpu::ComputePipeline>>,
}

impl Pipelines {
    /// The pipeline of `entry` of the op's shader for this dtype, on this device's variant.
    pub fn get(
        &self,
        gpu: &Gpu,
        op: Op,
        dtype: Option<DType>,
        entry: &'static str,
    ) -> Result<::wgpu::ComputePipeline> {
        let key = ShaderKey {
            op,
            dtype,
            subgroups: gpu.subgroups && reduces(op),
        };
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::backend("wgpu", "pipeline cache poisoned"))?;
        if let Some(p) = cache.get(&(key, entry)) {
            return Ok(p.clone());
        }
        let source = key.source()?;
        let label = key.label();
        let pipeline = gpu.scoped(&format!("creating pipeline {label}.{entry}"), || {
            let module = gpu
                .device
                .create_shader_module(::wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: ::wgpu::ShaderSource::Wgsl(source.into()),
                });
            gpu.device
                .create_compute_pipeline(&::wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    // Every shader writes its workgroup memory before reading it.
                    compilation_options: ::wgpu::PipelineCompilationOptions {
                        constants: &[],
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        tracing::debug!(pipeline = %label, entry, "created");
        cache.insert((key, entry), pipeline.clone());
        Ok(pipeline)
    }
}
