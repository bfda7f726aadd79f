//! The CUDA backend: kernels of ours (`kernels/*.cu`, compiled at run time by NVRTC for the
//! device's architecture) and cuBLASLt for prefill products, launched through cudarc on one
//! stream.
//!
//! - Start-up (`Cuda::new`) finds and loads the libraries first (libs.rs) and turns anything
//!   missing into `Error::BackendUnavailable`; it never panics when CUDA is absent.
//! - Weights stay in their file dtype (`upload_weight` copies the bytes unchanged through
//!   pinned staging); matmul kernels dequantize in registers (ops.rs, matmul.rs).
//! - KV cache: f16 storage (`CudaCache`), half the bytes of f32 for decode attention to read;
//!   f16 rather than bf16 for its 3 extra mantissa bits (keys and values stay well inside
//!   f16's range in these models). Layout per layer [kv_heads][max_ctx][head_dim].
//! - `set_step` places ids and positions on the device; every op reads them from there, so a
//!   decode step is the same launches each time and `record` replays it as a CUDA graph.
//! - matmul: `matmul_gemv` for up to 8 tokens (decode; its launch in gemv.rs), cuBLASLt for
//!   more (matmul.rs); `matmul_group` (q/k/v, gate/up) is one launch in decode. W8A8:
//!   matmul_i8.rs.
//!   Attention: tensor cores for prefill (head sizes 64/80/96/128), an f32 flash kernel
//!   otherwise; decode rows split over the keys (attention_decode on tensor cores for those
//!   head sizes), with a split count fixed by the device, not the cache (attention.rs,
//!   kernels/attention.cu).
//! - Decode fusions (each launch saved is a kernel boundary saved, about 4 us on an H100):
//!   SwiGLU in the gate/up GEMV's store; the residual add in the o and down GEMVs' store
//!   (`matmul_add`; cuBLASLt's beta for prefill); for GGUF weights the RMSNorm in the next
//!   GEMV's staging of x (`norm_matmul_group`, `norm_matmul_swiglu`); rope, the KV-cache
//!   store and decode attention in one launch (`rope_attention`; `rope_kv_write` where the
//!   step is not one decode row); split decode attention merged in its own last block.
//! - Environment: LAMINA_CUDA_SYNC=1 synchronizes after every launch and names a kernel that
//!   faults; LAMINA_CUDA_ATTN=f32 keeps prefill attention off tensor cores;
//!   LAMINA_CUDA_MATMUL=exact gives cuBLASLt x as two 16-bit halves (f32-accurate prefill,
//!   twice the product work); compiled kernels are cached in $LAMINA_CACHE/cuda-kernels
//!   (default ~/.cache/lamina/cuda-kernels);
//!   LAMINA_NVRTC_DIR names a pip install of NVRTC (libs.rs lists every folder searched).

pub mod attention;
mod backend;
pub mod blas;
mod gemv;
pub mod graph;
pub mod libs;
pub mod matmul;
pub mod matmul_i8;
pub mod nvrtc;
pub mod ops;
pub mod upload;

use crate::backend::{Backend, Op, SupportTable};
use crate::dtype::DType;
use crate::error::{Error, Result};
use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{result as dr, CudaContext, CudaStream, DriverError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) fn drv(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

pub(crate) fn cuda_err(what: impl std::fmt::Display, e: DriverError) -> Error {
    Error::backend("cuda", format!("{what}: {}", drv(e)))
}

/// Device memory owned by the backend (cuMemAlloc). Drop waits for the device before the
/// free, so no kernel still in flight can touch freed memory.
pub struct DevMem {
    ptr: u64,
    bytes: usize,
    ctx: Arc<CudaContext>,
    /// The backend's count of live bytes (`allocated_bytes`).
    live: Arc<AtomicU64>,
}

impl DevMem {
    pub(crate) fn new(
        ctx: &Arc<CudaContext>,
        live: &Arc<AtomicU64>,
        bytes: usize,
    ) -> Result<DevMem> {
        ctx.bind_to_thread()
            .map_err(|e| cuda_err("binding the context", e))?;
        // SAFETY: plain allocation; a zero-byte request is made one byte.
        let ptr = unsafe { dr::malloc_sync(bytes.max(1)) }.map_err(|e| {
            let (free, total) = dr::mem_get_info().unwrap_or((0, 0));
            Error::backend(
                "cuda",
                format!(
                    "cannot allocate {:.3} GiB of device memory ({:.2} GiB free of {:.2} GiB): {}",
                    gib(bytes as u64),
                    gib(free as u64),
                    gib(total as u64),
                    drv(e)
                ),
            )
        })?;
        live.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(DevMem {
            ptr,
            bytes,
            ctx: ctx.clone(),
            live: live.clone(),
        })
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DevMem {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::warn!("cuda: freeing device memory: {}", drv(e));
            return;
        }
        if let Err(e) = self.ctx.synchronize() {
            tracing::warn!("cuda: waiting for the device before a free: {}", drv(e));
        }
        // SAFETY: ptr came from malloc_sync and is freed once.
        if let Err(e) = unsafe { dr::free_sync(self.ptr) } {
            tracing::warn!("cuda: freeing device memory: {}", drv(e));
        }
    }
}

pub(crate) fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// A device buffer of f32.
pub struct CudaBuf {
    mem: DevMem,
    len: usize,
}

impl CudaBuf {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn ptr(&self) -> u64 {
        self.mem.ptr
    }
}

/// A weight tensor on the device, bytes exactly as in the file (plus 16 zero bytes of
/// padding, so kernels may read whole aligned words around a block's last bytes).
pub struct CudaWeight {
    mem: DevMem,
    pub dtype: DType,
    /// Outermost first, as in `TensorInfo`.
    pub shape: Vec<usize>,
    pub name: String,
    /// Bytes of the tensor itself (without padding).
    pub len: usize,
}

impl CudaWeight {
    pub fn ptr(&self) -> u64 {
        self.mem.ptr
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

/// The KV cache of all layers, f16: K and V each [layers][kv_heads][max_ctx][head_dim].
/// Also holds the scratch of split decode attention (partial results per key slice).
pub struct CudaCache {
    k: DevMem,
    v: DevMem,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub max_ctx: usize,
    /// Key slices of decode attention: fixed per cache so decode launches never change.
    pub nsplit: usize,
    part: DevMem,
    /// Floats `part` holds.
    part_len: usize,
    /// Per kv head, the slices attention_decode has finished in the running launch (zero
    /// between launches).
    done: DevMem,
}

impl CudaCache {
    fn layer_offset(&self, layer: usize) -> u64 {
        (layer * self.kv_heads * self.max_ctx * self.head_dim * 2) as u64
    }
    /// Bytes of K and V together.
    pub fn bytes(&self) -> usize {
        self.k.bytes + self.v.bytes
    }
}

/// The device, as `inspect` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor).
    pub compute: (u32, u32),
    pub total_memory: u64,
    pub multiprocessors: u32,
    /// Largest shared memory a block can opt into.
    pub smem_optin: u32,
    pub l2_bytes: u32,
    /// CUDA version the driver supports (13000 = 13.0).
    pub driver_version: u32,
    pub nvrtc_version: (u32, u32),
}

impl DeviceInfo {
    pub fn describe(&self) -> String {
        format!(
            "{} (compute {}.{}, {:.1} GiB, {} SMs, driver CUDA {}.{}, NVRTC {}.{})",
            self.name,
            self.compute.0,
            self.compute.1,
            gib(self.total_memory),
            self.multiprocessors,
            self.driver_version / 1000,
            self.driver_version % 1000 / 10,
            self.nvrtc_version.0,
            self.nvrtc_version.1
        )
    }
}

/// Ids and positions of the current step, on the device.
struct Step {
    ids: DevMem,
    pos: DevMem,
    /// argmax's result (one u32).
    argmax: DevMem,
    cap: usize,
    host_ids: Vec<u32>,
    host_pos: Vec<u32>,
}

/// (variant, kernel, threads per block, dynamic shared memory bytes).
type OccupancyKey = (nvrtc::Variant, &'static str, u32, u32);

/// The CUDA backend on one device.
pub struct Cuda {
    // Field order is drop order: everything holding device resources goes before `ctx`.
    graphs: Mutex<graph::Graphs>,
    modules: Mutex<nvrtc::Modules>,
    blas: Mutex<blas::Blas>,
    scratch: Mutex<matmul::Scratch>,
    step: Mutex<Step>,
    staging: Mutex<upload::Staging>,
    readback: Mutex<upload::Readback>,
    /// The largest max_ctx of the caches allocated so far: set_step refuses positions past
    /// it. Ops check positions against their own cache on direct launches; in a replayed
    /// graph kv_write skips a position past its cache and attention writes NaN for it.
    ctx_max: Mutex<Option<usize>>,
    capturing: AtomicBool,
    /// Blocks per SM of (variant, kernel, threads, dynamic shared memory), asked once.
    occupancy: Mutex<HashMap<OccupancyKey, u32>>,
    /// LAMINA_CUDA_SYNC=1: synchronize after every launch and name the kernel that failed.
    sync_each: bool,
    /// LAMINA_CUDA_GRAPHS=0: decode steps launch kernel by kernel, unrecorded (profilers
    /// then see every kernel on its own).
    graphs_off: bool,
    /// LAMINA_CUDA_ATTN=f32: prefill attention by the f32 kernel instead of tensor cores.
    f32_attention: bool,
    /// Programmatic dependent launch: compute capability 9.0 or later, unless
    /// LAMINA_CUDA_PDL=0 (every launch then waits for the one ahead, as plain launches do).
    pdl: bool,
    /// LAMINA_CUDA_SWIGLU=parts: gate/up and SwiGLU as separate launches (comparisons).
    swiglu_parts: bool,
    /// LAMINA_CUDA_MATMUL=exact: cuBLASLt products take x as two f16/bf16 halves (x
    /// rounded, then what the rounding dropped), two products summed: f32-accurate
    /// activations for prefill at twice the tensor-core work.
    exact_products: bool,
    info: DeviceInfo,
    /// Bytes of every live DevMem of this backend.
    live: Arc<AtomicU64>,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
}

fn attr(ctx: &CudaContext, a: Attr) -> Result<u32> {
    ctx.attribute(a)
        .map(|v| v.max(0) as u32)
        .map_err(|e| cuda_err(format!("querying {a:?}"), e))
}

const STEP_CAP0: usize = 4096;

impl Cuda {
    /// Opens device `ordinal`. Every missing piece (driver, GPU, NVRTC, cuBLASLt, a device
    /// too old) is an `Error::BackendUnavailable` saying what and where it looked.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        let libs = libs::load_all()?;
        let unavailable = |reason: String| Error::BackendUnavailable {
            backend: "cuda".into(),
            reason,
        };
        let count = CudaContext::device_count().map_err(|e| {
            unavailable(format!(
                "no usable NVIDIA GPU: cuInit/cuDeviceGetCount: {}",
                drv(e)
            ))
        })?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(format!(
                "device {ordinal} requested but the driver sees {count} NVIDIA GPU(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            unavailable(format!(
                "cannot create a context on device {ordinal}: {}",
                drv(e)
            ))
        })?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| cuda_err("compute capability", e))?;
        let name = ctx.name().map_err(|e| cuda_err("device name", e))?;
        if major < 8 {
            return Err(unavailable(format!(
                "{name} has compute capability {major}.{minor}; lamina's CUDA kernels need 8.0 or \
                 newer (Ampere+): use --backend wgpu"
            )));
        }
        let info = DeviceInfo {
            ordinal,
            name,
            compute: (major as u32, minor as u32),
            total_memory: ctx.total_mem().map_err(|e| cuda_err("total memory", e))? as u64,
            multiprocessors: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            smem_optin: attr(
                &ctx,
                Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )?,
            l2_bytes: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
            driver_version: libs.driver_version,
            nvrtc_version: libs.nvrtc_version,
        };
        let target = nvrtc::target_for(info.compute.0 * 10 + info.compute.1)?;
        // We track no per-buffer events: everything runs on one stream, and graph capture
        // must not meet events recorded outside it.
        // SAFETY: no CudaSlice is used by this backend.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err("creating a stream", e))?;
        let live = Arc::new(AtomicU64::new(0));
        let blas = blas::Blas::new(&ctx, &live, &stream, info.compute.0)?;
        let step = Step {
            ids: DevMem::new(&ctx, &live, STEP_CAP0 * 4)?,
            pos: DevMem::new(&ctx, &live, STEP_CAP0 * 4)?,
            argmax: DevMem::new(&ctx, &live, 4)?,
            cap: STEP_CAP0,
            host_ids: Vec::new(),
            host_pos: Vec::new(),
        };
        tracing::info!(
            "cuda: {} (driver {}, NVRTC {}, cuBLASLt {}), kernels for {:?}",
            info.describe(),
            libs.driver.display(),
            libs.nvrtc.display(),
            libs.cublaslt.display(),
            target
        );
        Ok(Cuda {
            graphs: Mutex::new(graph::Graphs::default()),
            modules: Mutex::new(nvrtc::Modules::new(ctx.clone(), target)),
            blas: Mutex::new(blas),
            scratch: Mutex::new(matmul::Scratch::default()),
            step: Mutex::new(step),
            staging: Mutex::new(upload::Staging::default()),
            readback: Mutex::new(upload::Readback::default()),
            ctx_max: Mutex::new(None),
            capturing: AtomicBool::new(false),
            occupancy: Mutex::new(HashMap::new()),
            sync_each: std::env::var("LAMINA_CUDA_SYNC").is_ok_and(|v| v == "1"),
            graphs_off: std::env::var("LAMINA_CUDA_GRAPHS").is_ok_and(|v| v == "0"),
            f32_attention: std::env::var("LAMINA_CUDA_ATTN").is_ok_and(|v| v == "f32"),
            pdl: info.compute.0 >= 9 && std::env::var("LAMINA_CUDA_PDL").map_or(true, |v| v != "0"),
            swiglu_parts: std::env::var("LAMINA_CUDA_SWIGLU").is_ok_and(|v| v == "parts"),
            exact_products: std::env::var("LAMINA_CUDA_MATMUL").is_ok_and(|v| v == "exact"),
            info,
            live,
            stream,
            ctx,
        })
    }

    /// Turns exact products (LAMINA_CUDA_MATMUL=exact) on or off for this backend.
    pub fn set_exact_products(&mut self, on: bool) {
        self.exact_products = on;
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The device in words, for `inspect` and messages.
    pub fn describe(&self) -> String {
        self.info.describe()
    }

    /// Device memory counted in `allocated_bytes`.
    pub(crate) fn dev_mem(&self, bytes: usize) -> Result<DevMem> {
        DevMem::new(&self.ctx, &self.live, bytes)
    }

    pub(crate) fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::backend("cuda", msg)
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("binding the context", e))
    }

    pub(crate) fn lock<'a, T>(&self, m: &'a Mutex<T>) -> Result<std::sync::MutexGuard<'a, T>> {
        m.lock()
            .map_err(|_| self.err("internal lock poisoned by an earlier panic"))
    }

    /// Waits for everything enqueued; a kernel fault surfaces here.
    pub fn synchronize(&self) -> Result<()> {
        self.bind()?;
        self.stream.synchronize().map_err(|e| {
            self.err(format!(
                "a kernel failed: {} (run with LAMINA_CUDA_SYNC=1 to name it)",
                drv(e)
            ))
        })
    }

    /// Device milliseconds of the work `f` enqueues, between two events on the stream (for
    /// benches: warm up first, repeat, take the median).
    pub fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f32> {
        use cudarc::driver::sys::CUevent_flags;
        self.bind()?;
        let start = self
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_err("creating an event", e))?;
        let end = self
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_err("creating an event", e))?;
        start
            .record(&self.stream)
            .map_err(|e| cuda_err("recording an event", e))?;
        f()?;
        end.record(&self.stream)
            .map_err(|e| cuda_err("recording an event", e))?;
        end.synchronize().map_err(|e| {
            self.err(format!(
                "a kernel failed: {} (run with LAMINA_CUDA_SYNC=1 to name it)",
                drv(e)
            ))
        })?;
        start
            .elapsed_ms(&end)
            .map_err(|e| cuda_err("reading event times", e))
    }

    /// Fails, with the numbers and what to change, when `need_bytes` more device memory
    /// (weights + KV cache for the context + workspace) would not fit.
    pub fn check_memory(&self, need_bytes: u64) -> Result<()> {
        let m = self
            .memory()
            .ok_or_else(|| self.err("cannot query device memory"))?;
        // cuBLASLt kernels, graphs and the driver take some memory beyond our allocations.
        let reserve = 512u64 << 20;
        if need_bytes + reserve <= m.free {
            return Ok(());
        }
        Err(Error::Input(format!(
            "the model needs {:.2} GiB of device memory (weights, KV cache for the requested \
             context, workspace) plus {:.1} GiB of headroom, but {} has {:.2} GiB free of {:.2} \
             GiB. Use a smaller --ctx-size (the KV cache grows with it) or a smaller \
             quantization (e.g. Q4_K_M instead of Q8_0 or BF16).",
            gib(need_bytes),
            gib(reserve),
            self.info.name,
            gib(m.free),
            gib(m.total)
        )))
    }

    fn check_buf(&self, what: &str, b: &CudaBuf, need: usize) -> Result<()> {
        if b.len < need {
            return Err(self.err(format!("{what}: buffer of {} floats, {need} needed", b.len)));
        }
        Ok(())
    }

    /// Forgets every recorded graph (call after freeing buffers a recording used).
    pub fn clear_graphs(&self) -> Result<()> {
        self.lock(&self.graphs)?.clear();
        Ok(())
    }
}

/// What the CUDA backend runs: weight dtypes per weight-reading op. Also answers `inspect`
/// on a machine without a GPU (it needs no device).
/// Weightless ops are listed with F32 (their activations), as the case table expects.
pub fn support_table() -> SupportTable {
    let mut matmul = nvrtc::MATMUL_DTYPES.to_vec();
    matmul.push(DType::I8);
    let f32_only: &[DType] = &[DType::F32];
    SupportTable::new(&[
        (Op::Embedding, nvrtc::MATMUL_DTYPES),
        (Op::Matmul, &matmul),
        (Op::RmsNorm, nvrtc::VECTOR_DTYPES),
        (Op::AddBias, nvrtc::VECTOR_DTYPES),
        (Op::Rope, f32_only),
        (Op::KvWrite, f32_only),
        (Op::Attention, f32_only),
        (Op::Swiglu, f32_only),
        (Op::Add, f32_only),
        (Op::Copy, f32_only),
        (Op::Argmax, f32_only),
    ])
}
