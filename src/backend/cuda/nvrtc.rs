//! The kernels (`kernels/*.cu`, embedded in the binary) and their compilation by NVRTC for
//! the device's architecture, cached per (kernel file, variant) on the device.
//!
//! A variant is a kernel file plus the `-D` defines that select a weight format or a code
//! path. `all_variants` lists every one the backend can ask for, so tests/cuda_nvrtc.rs
//! compiles exactly what the backend will.

use super::libs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::sys as nv;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

/// Headers the kernels include, handed to NVRTC by name (no include path needed).
pub const HEADERS: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("quant.cuh", include_str!("../../../kernels/quant.cuh")),
];

/// Kernel files, named after their op.
pub const SOURCES: &[(&str, &str)] = &[
    ("add.cu", include_str!("../../../kernels/add.cu")),
    ("argmax.cu", include_str!("../../../kernels/argmax.cu")),
    ("add_bias.cu", include_str!("../../../kernels/add_bias.cu")),
    (
        "attention.cu",
        include_str!("../../../kernels/attention.cu"),
    ),
    (
        "embedding.cu",
        include_str!("../../../kernels/embedding.cu"),
    ),
    ("kv_write.cu", include_str!("../../../kernels/kv_write.cu")),
    ("matmul.cu", include_str!("../../../kernels/matmul.cu")),
    (
        "matmul_i8.cu",
        include_str!("../../../kernels/matmul_i8.cu"),
    ),
    ("rms_norm.cu", include_str!("../../../kernels/rms_norm.cu")),
    ("rope.cu", include_str!("../../../kernels/rope.cu")),
    ("swiglu.cu", include_str!("../../../kernels/swiglu.cu")),
];

/// Weight dtypes with a matmul (and embedding) kernel.
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
];

/// Head sizes with a tensor-core prefill attention kernel (others use the f32 kernel).
pub const MMA_HEAD_DIMS: &[usize] = &[64, 80, 96, 128];

/// Dtypes of vectors read element by element (norm weights, biases).
pub const VECTOR_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::BF16];

/// Units (32 elements) per chunk that matmul_gemv streams through shared memory for a GGUF
/// format (CU in matmul.cu): about 1.5 to 2.5 KB of a row, so that a warp's two rows have
/// 64 to 160 bytes per lane in flight; Q8_0 4.3 KB (128 units: 773 against 707-742 tok/s
/// with 64 on an 8-layer 8B-shape model, H100, scripts/gpu/tune_gguf.sh). Q6_K 1.7 KB (64
/// units): with x as 80-byte digits a 14336-column down projection then fits two blocks per
/// SM (H100, ops_cuda gemv_speed: 26.9 against 29.8 us; its other shapes no slower). A
/// multiple of the warp and of the 8 units of a K-quant block.
pub fn gemv_chunk_units(dtype: DType) -> usize {
    // LAMINA_CUDA_GEMV_CU=32|64|128 overrides, for tuning runs on a GPU machine (read once:
    // this runs at every GGUF GEMV launch).
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let forced = *FORCED.get_or_init(|| {
        std::env::var("LAMINA_CUDA_GEMV_CU")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|c| [32, 64, 128].contains(c))
    });
    let per_unit = dtype.block_bytes() * 32 / dtype.block_elems().max(1);
    let wide = per_unit <= 20 || dtype == DType::Q8_0;
    forced.unwrap_or(if wide { 128 } else { 64 })
}

/// Whether the one-token GEMV of the formats with integer units (IDot in quant.cuh) uses
/// dp4a products on x in two 8-bit digits (the default) rather than f32 products.
/// LAMINA_CUDA_GEMV_IDOT=0 turns it off, for comparisons on a GPU machine (read once).
pub fn gemv_idot() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LAMINA_CUDA_GEMV_IDOT").map_or(true, |v| v != "0"))
}

/// Whether the one-token GEMV of `dtype` holds x as 8-bit digits (XD = 20 floats per unit in
/// shared memory, against XU = 36 for f32): the formats with integer units (IDot in
/// quant.cuh, OK = 1), unless gemv_idot is off.
pub fn gemv_digits(dtype: DType) -> bool {
    gemv_idot()
        && matches!(
            dtype,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q4_K | DType::Q5_K | DType::Q6_K
        )
}

/// Warps per block of attention_decode (DEC_WARPS in attention.cu): 4 by default;
/// LAMINA_CUDA_DECODE_WARPS=8 takes 8 (then one block per SM fits; pair it with
/// LAMINA_CUDA_DECODE_BLOCKS=1), for tuning (read once).
pub fn decode_warps() -> usize {
    static WARPS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WARPS.get_or_init(|| {
        std::env::var("LAMINA_CUDA_DECODE_WARPS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|w| [4, 8].contains(w))
            .unwrap_or(4)
    })
}

/// Chunk slots per warp of the GGUF GEMV (NSLOT in matmul.cu): chunks in flight while one
/// is computed, plus one. LAMINA_CUDA_GEMV_SLOTS=2..8 overrides, for tuning (read once).
pub fn gemv_slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::env::var("LAMINA_CUDA_GEMV_SLOTS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|s| (2..=8).contains(s))
            .unwrap_or(2)
    })
}

/// Most warps per block of the GGUF GEMV (WARPS in matmul.cu, its launch bound): 16, one
/// block an SM where the slots fit (Q4_K_M tg128 376.1 against 370.5 with 8 on an H100,
/// one run: an SM stages x once instead of twice; Q8_0's slots fit only 8, unchanged).
/// Several tokens (matmul_gemv_t8) take at most 8. LAMINA_CUDA_GEMV_WARPS=2|4|8 sets it,
/// for tuning (read once).
pub fn gemv_warps() -> usize {
    static WARPS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WARPS.get_or_init(|| {
        std::env::var("LAMINA_CUDA_GEMV_WARPS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|w| [2, 4, 8].contains(w))
            .unwrap_or(16)
    })
}

/// Bytes of one row's chunk slot in matmul_gemv's shared memory: the chunk's blocks plus the
/// misalignment of their 16-byte aligned span, rounded to 16 (the kernel gets it as an
/// argument).
pub fn gemv_slot_row(dtype: DType) -> usize {
    slot_row_at(dtype, gemv_chunk_units(dtype))
}

fn slot_row_at(dtype: DType, units: usize) -> usize {
    let units_per_block = (dtype.block_elems() / 32).max(1);
    let bytes = units / units_per_block * dtype.block_bytes();
    (bytes + 30).next_multiple_of(16)
}

/// Units per chunk of a launch of two GGUF formats (Variant::matmul_mixed): the smaller of
/// theirs, so that neither format's chunks outgrow what it was tuned for.
pub fn gemv_mixed_units(first: DType, second: DType) -> usize {
    gemv_chunk_units(first).min(gemv_chunk_units(second))
}

/// gemv_slot_row for a launch of two formats: room for a chunk of either.
pub fn gemv_slot_row_mixed(first: DType, second: DType) -> usize {
    let units = gemv_mixed_units(first, second);
    slot_row_at(first, units).max(slot_row_at(second, units))
}

/// The pairs of formats with a launch of their own (matmul_mixed): the K-quant mixtures'
/// attention v beside q and k (Q4_K_M, Q5_K_M: a Q6_K v in some layers).
pub const MIXED_MATMULS: &[(DType, DType)] =
    &[(DType::Q4_K, DType::Q6_K), (DType::Q5_K, DType::Q6_K)];

/// One compilation of a kernel file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub file: &'static str,
    pub defines: Vec<String>,
    /// The `extern "C"` kernels this variant defines.
    pub entries: &'static [&'static str],
}

fn fmt_defines(dtype: DType) -> Vec<String> {
    let mut d = vec![format!("FMT={dtype}")];
    if !dtype.is_quantized() {
        d.push("PLAIN".into());
    }
    d
}

fn check_dtype(dtype: DType, allowed: &[DType], what: &str) -> Result<()> {
    if allowed.contains(&dtype) {
        Ok(())
    } else {
        Err(Error::backend(
            "cuda",
            format!("no {what} kernel for dtype {dtype}"),
        ))
    }
}

impl Variant {
    /// A kernel file without variants.
    pub fn plain(file: &'static str, entries: &'static [&'static str]) -> Variant {
        Variant {
            file,
            defines: Vec::new(),
            entries,
        }
    }

    /// matmul.cu for a weight dtype; `scalar` for plain-type rows that are not a whole
    /// number of 16-byte vectors (or not 16-byte aligned).
    pub fn matmul(dtype: DType, scalar: bool) -> Result<Variant> {
        check_dtype(dtype, MATMUL_DTYPES, "matmul")?;
        let mut defines = fmt_defines(dtype);
        if dtype.is_quantized() {
            defines.push(format!("CU={}", gemv_chunk_units(dtype)));
            defines.push(format!("NSLOT={}", gemv_slots()));
            defines.push(format!("WARPS={}", gemv_warps()));
            if !gemv_idot() {
                defines.push("NO_IDOT".into());
            }
        } else if scalar {
            defines.push("SCALAR".into());
        }
        if dtype == DType::BF16 {
            defines.push("CAST_BF16".into());
        }
        let entries: &'static [&'static str] = if dtype.is_quantized() {
            &[
                "matmul_gemv",
                "matmul_gemv_t8",
                "matmul_gemv_xg",
                "matmul_dequant",
                "matmul_cast",
            ]
        } else {
            &["matmul_gemv", "matmul_gemv_t8", "matmul_cast"]
        };
        Ok(Variant {
            file: "matmul.cu",
            defines,
            entries,
        })
    }

    /// matmul.cu for one launch over weights of two GGUF formats (-DFMT2: the rows of the
    /// launch's third weight are `second`): a pair of MIXED_MATMULS.
    pub fn matmul_mixed(first: DType, second: DType) -> Result<Variant> {
        if !MIXED_MATMULS.contains(&(first, second)) {
            return Err(Error::backend(
                "cuda",
                format!("no matmul kernel for {first} beside {second} in one launch"),
            ));
        }
        let mut v = Variant::matmul(first, false)?;
        for d in &mut v.defines {
            if d.starts_with("CU=") {
                *d = format!("CU={}", gemv_mixed_units(first, second));
            }
        }
        v.defines.push(format!("FMT2={second}"));
        Ok(v)
    }

    /// matmul_i8.cu (W8A8) for the dtype of the per-row scales; `vec16` when weight rows
    /// are whole 16-byte vectors.
    pub fn matmul_i8(scale_dtype: DType, vec16: bool) -> Result<Variant> {
        check_dtype(scale_dtype, VECTOR_DTYPES, "int8 weight scale")?;
        let mut defines = vec![format!("SFMT={scale_dtype}")];
        if vec16 {
            defines.push("VEC16".into());
        }
        Ok(Variant {
            file: "matmul_i8.cu",
            defines,
            entries: &["matmul_i8_quantize", "matmul_i8_gemv", "matmul_i8_scale"],
        })
    }

    pub fn embedding(dtype: DType) -> Result<Variant> {
        check_dtype(dtype, MATMUL_DTYPES, "embedding")?;
        Ok(Variant {
            file: "embedding.cu",
            defines: fmt_defines(dtype),
            entries: &["embedding"],
        })
    }

    pub fn rms_norm(dtype: DType) -> Result<Variant> {
        check_dtype(dtype, VECTOR_DTYPES, "rms_norm")?;
        Ok(Variant {
            file: "rms_norm.cu",
            defines: fmt_defines(dtype),
            entries: &["rms_norm"],
        })
    }

    pub fn add_bias(dtype: DType) -> Result<Variant> {
        check_dtype(dtype, VECTOR_DTYPES, "add_bias")?;
        Ok(Variant {
            file: "add_bias.cu",
            defines: fmt_defines(dtype),
            entries: &["add_bias"],
        })
    }

    pub fn attention() -> Variant {
        Variant::plain("attention.cu", &["attention", "attention_combine"])
    }

    /// attention.cu with the tensor-core prefill kernel for one head size.
    pub fn attention_mma(head_dim: usize) -> Result<Variant> {
        if !MMA_HEAD_DIMS.contains(&head_dim) {
            return Err(Error::backend(
                "cuda",
                format!("no attention_mma for head_dim {head_dim}"),
            ));
        }
        Ok(Variant {
            file: "attention.cu",
            defines: vec![
                format!("HEAD_DIM={head_dim}"),
                format!("DEC_WARPS={}", decode_warps()),
            ],
            entries: &[
                "attention",
                "attention_combine",
                "attention_mma",
                "attention_decode",
                "rope_attention",
            ],
        })
    }

    pub fn describe(&self) -> String {
        if self.defines.is_empty() {
            self.file.to_string()
        } else {
            format!("{} [{}]", self.file, self.defines.join(" "))
        }
    }
}

/// Every variant the backend can launch.
pub fn all_variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for &d in MATMUL_DTYPES {
        v.push(Variant::matmul(d, false).expect("listed dtype"));
        if !d.is_quantized() {
            v.push(Variant::matmul(d, true).expect("listed dtype"));
        }
        v.push(Variant::embedding(d).expect("listed dtype"));
    }
    for &d in VECTOR_DTYPES {
        v.push(Variant::rms_norm(d).expect("listed dtype"));
        v.push(Variant::add_bias(d).expect("listed dtype"));
        v.push(Variant::matmul_i8(d, false).expect("listed dtype"));
        v.push(Variant::matmul_i8(d, true).expect("listed dtype"));
    }
    for &(a, b) in MIXED_MATMULS {
        v.push(Variant::matmul_mixed(a, b).expect("listed pair"));
    }
    v.push(Variant::plain("add.cu", &["add"]));
    v.push(Variant::plain("argmax.cu", &["argmax"]));
    v.push(Variant::plain("swiglu.cu", &["swiglu"]));
    v.push(Variant::plain("rope.cu", &["rope", "rope_kv_write"]));
    v.push(Variant::plain("kv_write.cu", &["kv_write"]));
    v.push(Variant::attention());
    for &d in MMA_HEAD_DIMS {
        v.push(Variant::attention_mma(d).expect("listed head size"));
    }
    v
}

/// What NVRTC produces: machine code for a real architecture, or PTX for the driver to
/// compile when the device is newer than this NVRTC knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `sm_XY`: a CUBIN.
    Sm(u32),
    /// `compute_XY`: PTX.
    Compute(u32),
}

impl Target {
    pub fn option(self) -> String {
        match self {
            Target::Sm(a) => format!("--gpu-architecture=sm_{a}"),
            Target::Compute(a) => format!("--gpu-architecture=compute_{a}"),
        }
    }
}

fn nvrtc_err(r: nv::nvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static C string for any result code.
    let p = unsafe { nv::nvrtcGetErrorString(r) };
    if p.is_null() {
        format!("{r:?}")
    } else {
        // SAFETY: non-null static C string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// The architectures this NVRTC can compile for (compute capability as 10 * major + minor).
pub fn supported_archs() -> Result<Vec<u32>> {
    libs::load_nvrtc()?;
    let mut n = 0;
    // SAFETY: valid out-pointer.
    let r = unsafe { nv::nvrtcGetNumSupportedArchs(&mut n) };
    if r != nv::nvrtcResult::NVRTC_SUCCESS || n <= 0 {
        return Err(Error::backend(
            "cuda",
            format!("nvrtcGetNumSupportedArchs: {}", nvrtc_err(r)),
        ));
    }
    let mut v = vec![0i32; n as usize];
    // SAFETY: v holds n ints as NVRTC requires.
    let r = unsafe { nv::nvrtcGetSupportedArchs(v.as_mut_ptr()) };
    if r != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::backend(
            "cuda",
            format!("nvrtcGetSupportedArchs: {}", nvrtc_err(r)),
        ));
    }
    Ok(v.into_iter().map(|a| a as u32).collect())
}

/// The target for a device of compute capability `cc` (10 * major + minor).
pub fn target_for(cc: u32) -> Result<Target> {
    let archs = supported_archs()?;
    if archs.contains(&cc) {
        return Ok(Target::Sm(cc));
    }
    match archs.iter().copied().filter(|&a| a < cc).max() {
        Some(a) => Ok(Target::Compute(a)),
        None => Err(Error::BackendUnavailable {
            backend: "cuda".into(),
            reason: format!(
                "this NVRTC cannot compile for compute capability {}.{} (it supports {archs:?})",
                cc / 10,
                cc % 10
            ),
        }),
    }
}

/// The output of one compilation.
pub struct Compiled {
    /// CUBIN (Target::Sm) or NUL-terminated PTX (Target::Compute).
    pub image: Vec<u8>,
    /// NVRTC's log (warnings; ptxas resource usage when `verbose`).
    pub log: String,
}

/// Compiles a variant. `verbose` asks ptxas for its resource report (registers, spills).
pub fn compile(v: &Variant, target: Target, verbose: bool) -> Result<Compiled> {
    libs::load_nvrtc()?;
    let src = SOURCES
        .iter()
        .find(|s| s.0 == v.file)
        .ok_or_else(|| Error::backend("cuda", format!("no kernel file {}", v.file)))?
        .1;
    let cstr = |s: &str| CString::new(s).map_err(|e| Error::backend("cuda", e));
    let src_c = cstr(src)?;
    let name_c = cstr(v.file)?;
    let hdr_src: Vec<CString> = HEADERS.iter().map(|h| cstr(h.1)).collect::<Result<_>>()?;
    let hdr_name: Vec<CString> = HEADERS.iter().map(|h| cstr(h.0)).collect::<Result<_>>()?;
    let hdr_src_p: Vec<*const c_char> = hdr_src.iter().map(|c| c.as_ptr()).collect();
    let hdr_name_p: Vec<*const c_char> = hdr_name.iter().map(|c| c.as_ptr()).collect();
    let mut opts = vec![target.option(), "-std=c++17".to_string()];
    opts.extend(v.defines.iter().map(|d| format!("-D{d}")));
    if verbose {
        opts.push("--ptxas-options=-v".into());
    }
    let opts_c: Vec<CString> = opts.iter().map(|o| cstr(o)).collect::<Result<_>>()?;
    let opts_p: Vec<*const c_char> = opts_c.iter().map(|c| c.as_ptr()).collect();

    let mut prog: nv::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the program; counts match.
    let r = unsafe {
        nv::nvrtcCreateProgram(
            &mut prog,
            src_c.as_ptr(),
            name_c.as_ptr(),
            hdr_src_p.len() as i32,
            hdr_src_p.as_ptr(),
            hdr_name_p.as_ptr(),
        )
    };
    if r != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::backend(
            "cuda",
            format!("nvrtcCreateProgram({}): {}", v.describe(), nvrtc_err(r)),
        ));
    }
    let out = (|| {
        // SAFETY: prog is a valid program; options are valid C strings.
        let r = unsafe { nv::nvrtcCompileProgram(prog, opts_p.len() as i32, opts_p.as_ptr()) };
        let log = program_log(prog);
        if r != nv::nvrtcResult::NVRTC_SUCCESS {
            return Err(Error::backend(
                "cuda",
                format!(
                    "NVRTC could not compile {} ({}): {}\n{log}",
                    v.describe(),
                    opts.join(" "),
                    nvrtc_err(r)
                ),
            ));
        }
        let mut size = 0usize;
        let (size_r, image) = match target {
            // SAFETY: valid program and out-pointer.
            Target::Sm(_) => (unsafe { nv::nvrtcGetCUBINSize(prog, &mut size) }, true),
            // SAFETY: as above.
            Target::Compute(_) => (unsafe { nv::nvrtcGetPTXSize(prog, &mut size) }, false),
        };
        if size_r != nv::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return Err(Error::backend(
                "cuda",
                format!(
                    "NVRTC produced no code for {}: {}",
                    v.describe(),
                    nvrtc_err(size_r)
                ),
            ));
        }
        let mut buf = vec![0u8; size];
        // SAFETY: buf holds `size` bytes as NVRTC reported.
        let r = unsafe {
            if image {
                nv::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)
            } else {
                nv::nvrtcGetPTX(prog, buf.as_mut_ptr() as *mut c_char)
            }
        };
        if r != nv::nvrtcResult::NVRTC_SUCCESS {
            return Err(Error::backend(
                "cuda",
                format!("NVRTC output of {}: {}", v.describe(), nvrtc_err(r)),
            ));
        }
        Ok(Compiled { image: buf, log })
    })();
    // SAFETY: prog was created above and is destroyed once.
    unsafe { nv::nvrtcDestroyProgram(&mut prog) };
    out
}

fn program_log(prog: nv::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: valid program and out-pointer.
    if unsafe { nv::nvrtcGetProgramLogSize(prog, &mut size) } != nv::nvrtcResult::NVRTC_SUCCESS
        || size == 0
    {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: buf holds `size` bytes.
    if unsafe { nv::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) }
        != nv::nvrtcResult::NVRTC_SUCCESS
    {
        return String::new();
    }
    String::from_utf8_lossy(&buf)
        .trim_end_matches('\0')
        .trim()
        .to_string()
}

/// Where compiled kernels are kept between runs: $LAMINA_CACHE/cuda-kernels, else
/// $XDG_CACHE_HOME/lamina/cuda-kernels, else ~/.cache/lamina/cuda-kernels.
fn kernel_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("LAMINA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("lamina")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lamina")))?;
    Some(base.join("cuda-kernels"))
}

/// `compile`, through the on-disk cache. The key hashes everything the output depends
/// on (sources, defines, target, NVRTC version), so a stale entry is never hit; a cache
/// that cannot be read or written only costs a compilation.
fn cached_compile(v: &Variant, target: Target) -> Result<Vec<u8>> {
    let (_, version) = libs::load_nvrtc()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (v, format!("{target:?}"), version).hash(&mut h);
    for (name, text) in SOURCES.iter().chain(HEADERS) {
        if *name == v.file || HEADERS.iter().any(|x| x.0 == *name) {
            (name, text).hash(&mut h);
        }
    }
    let stem = v.file.trim_end_matches(".cu");
    let file = kernel_cache_dir().map(|d| d.join(format!("{stem}-{:016x}.bin", h.finish())));
    if let Some(f) = &file {
        if let Ok(bytes) = std::fs::read(f) {
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
    }
    let compiled = compile(v, target, false)?;
    if let Some(f) = &file {
        // Written under a temporary name and renamed, so a reader never sees half a file.
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        let saved = f
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(&tmp, &compiled.image))
            .and_then(|_| std::fs::rename(&tmp, f));
        if let Err(e) = saved {
            tracing::debug!("cuda: not caching {}: {e}", f.display());
            std::fs::remove_file(&tmp).ok();
        }
    }
    Ok(compiled.image)
}

/// Compiled modules and their functions on one device.
pub struct Modules {
    ctx: Arc<CudaContext>,
    target: Target,
    modules: HashMap<Variant, Arc<CudaModule>>,
    functions: HashMap<(Variant, &'static str), CudaFunction>,
}

impl Modules {
    pub fn new(ctx: Arc<CudaContext>, target: Target) -> Modules {
        Modules {
            ctx,
            target,
            modules: HashMap::new(),
            functions: HashMap::new(),
        }
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// Kernel `name` of variant `v`, compiling and loading the variant on first use.
    pub fn function(&mut self, v: &Variant, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.get(&(v.clone(), name)) {
            return Ok(f.clone());
        }
        if !v.entries.contains(&name) {
            return Err(Error::backend(
                "cuda",
                format!("{} has no kernel {name}", v.describe()),
            ));
        }
        let module = match self.modules.get(v) {
            Some(m) => m.clone(),
            None => {
                let t0 = std::time::Instant::now();
                let image = cached_compile(v, self.target)?;
                let image = match self.target {
                    Target::Sm(_) => cudarc::nvrtc::Ptx::from_binary(image),
                    Target::Compute(_) => {
                        let text = CStr::from_bytes_until_nul(&image)
                            .map_err(|e| Error::backend("cuda", e))?
                            .to_string_lossy()
                            .into_owned();
                        cudarc::nvrtc::Ptx::from_src(text)
                    }
                };
                let m = self.ctx.load_module(image).map_err(|e| {
                    Error::backend(
                        "cuda",
                        format!("loading {} on the device: {e}", v.describe()),
                    )
                })?;
                tracing::debug!(
                    "compiled {} for {:?} in {:.0} ms",
                    v.describe(),
                    self.target,
                    t0.elapsed().as_secs_f64() * 1e3
                );
                self.modules.insert(v.clone(), m.clone());
                m
            }
        };
        self.ctx
            .bind_to_thread()
            .map_err(|e| Error::backend("cuda", format!("binding the context: {e}")))?;
        let f = module.load_function(name).map_err(|e| {
            Error::backend("cuda", format!("kernel {name} of {}: {e}", v.describe()))
        })?;
        // Under lazy loading a kernel would load at its first launch, which may be inside a
        // graph capture: load it now.
        // SAFETY: f is a function of a module loaded in this context, bound above.
        unsafe { cudarc::driver::sys::cuFuncLoad(f.cu_function()) }
            .result()
            .map_err(|e| {
                Error::backend(
                    "cuda",
                    format!("loading kernel {name} of {}: {e}", v.describe()),
                )
            })?;
        self.functions.insert((v.clone(), name), f.clone());
        Ok(f)
    }
}
