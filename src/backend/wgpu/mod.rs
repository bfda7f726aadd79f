//! The wgpu backend: WGSL compute shaders (`shaders/`) over wgpu, so the same engine runs
//! on Vulkan, Metal, DX12 and GL adapters, and on the CPU through Mesa's lavapipe.
//!
//! - `device`: adapter choice, features (only those checked present), limits, errors.
//! - `buffers`: activations (f32), weights in their file dtype split in pieces at row
//!   boundaries when larger than a binding may be, the KV cache.
//! - `pipelines`: which WGSL files make each shader, and the pipeline cache keyed by
//!   (op, dtype, variant).
//! - `record`: one encoder per step, many dispatches, one submission per `read`.
//! - `ops`: the `Backend` ops: argument checks, then launches.
//! - `matmul_i8`: matmul of int8 weights (W8A8): activations quantized per token, then
//!   int8 products.

mod buffers;
mod device;
mod matmul_i8;
mod ops;
mod pipelines;
mod record;

pub use buffers::{WgpuBuf, WgpuCache, WgpuWeight};
pub use device::{
    list_adapters, AdapterSummary, Description, MatmulKernels, WgpuOptions, ADAPTER_ENV,
};
pub use pipelines::{
    all_variants, op_dtypes, ShaderKey, FORMAT_DTYPES, MATMUL_DTYPES, VECTOR_DTYPES,
};

use crate::backend::{Op, SupportTable};
use crate::dtype::DType;
use crate::error::{Error, Result};
use device::Gpu;
use pipelines::Pipelines;
use record::Recorder;
use std::sync::{Mutex, MutexGuard};

/// The token ids and positions of the current step: on the device for the shaders, and on
/// the host for the checks that keep every shader index in range.
struct Step {
    ids: Vec<u32>,
    positions: Vec<u32>,
    ids_buf: ::wgpu::Buffer,
    pos_buf: ::wgpu::Buffer,
    capacity: usize,
}

/// An open wgpu device with its pipelines and command recorder.
pub struct Wgpu {
    gpu: Gpu,
    pipelines: Pipelines,
    rec: Mutex<Recorder>,
    step: Mutex<Step>,
    i8_scratch: Mutex<Option<matmul_i8::I8Scratch>>,
    max_piece: u64,
}

impl Wgpu {
    /// Opens the adapter `opts` chooses (see `WgpuOptions`), asking for no feature it has
    /// not checked. Fails with `BackendUnavailable` when there is no adapter.
    pub fn new(opts: WgpuOptions) -> Result<Wgpu> {
        let gpu = Gpu::open(&opts)?;
        let limit = buffers::max_binding(&gpu);
        let max_piece = opts.max_piece_bytes.map_or(limit, |m| m.clamp(4, limit));
        let rec = Recorder::new(&gpu)?;
        let capacity = 64;
        let ids_buf = buffers::storage(&gpu, "step ids", capacity as u64 * 4)?;
        let pos_buf = buffers::storage(&gpu, "step positions", capacity as u64 * 4)?;
        Ok(Wgpu {
            gpu,
            pipelines: Pipelines::default(),
            rec: Mutex::new(rec),
            step: Mutex::new(Step {
                ids: Vec::new(),
                positions: Vec::new(),
                ids_buf,
                pos_buf,
                capacity,
            }),
            i8_scratch: Mutex::new(None),
            max_piece,
        })
    }

    /// The adapter, its limits and features, for `lamina inspect`.
    pub fn describe(&self) -> &Description {
        &self.gpu.description
    }

    /// Whether the shaders use subgroup operations on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.gpu.subgroups
    }

    /// Whether matmuls use the kernel for CPU adapters (`MatmulKernels::Cpu`).
    pub fn uses_cpu_kernels(&self) -> bool {
        self.gpu.cpu_kernels
    }

    /// Largest piece a weight is uploaded in.
    pub fn max_piece_bytes(&self) -> u64 {
        self.max_piece
    }

    /// Submits everything recorded and waits for the device to finish it (for timing).
    pub fn sync(&self) -> Result<()> {
        self.recorder()?.submit(&self.gpu)?;
        self.gpu
            .device
            .poll(::wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::backend("wgpu", format!("waiting for the device: {e}")))?;
        self.gpu.check()
    }

    fn recorder(&self) -> Result<MutexGuard<'_, Recorder>> {
        self.rec
            .lock()
            .map_err(|_| Error::backend("wgpu", "recorder poisoned by an earlier panic"))
    }

    fn step(&self) -> Result<MutexGuard<'_, Step>> {
        self.step
            .lock()
            .map_err(|_| Error::backend("wgpu", "step state poisoned by an earlier panic"))
    }

    /// Exactly what the shaders implement: the weight dtypes of each weight-reading op, and
    /// the weightless ops (activations are f32) as (op, F32).
    fn support_table() -> SupportTable {
        let f32_only: &[DType] = &[DType::F32];
        SupportTable::new(&[
            (Op::Embedding, FORMAT_DTYPES),
            (Op::Matmul, MATMUL_DTYPES),
            (Op::RmsNorm, VECTOR_DTYPES),
            (Op::AddBias, VECTOR_DTYPES),
            (Op::Rope, f32_only),
            (Op::KvWrite, f32_only),
            (Op::Attention, f32_only),
            (Op::Swiglu, f32_only),
            (Op::Add, f32_only),
            (Op::Copy, f32_only),
            (Op::Argmax, f32_only),
        ])
    }
}
