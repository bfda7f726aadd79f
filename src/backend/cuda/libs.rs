//! Finding and loading the CUDA libraries before cudarc touches them.
//!
//! cudarc (dynamic loading) dlopens bare sonames and panics when one is missing. So we look
//! for each library where users put them (LD_LIBRARY_PATH, CUDA_HOME / CUDA_PATH / CUDA_ROOT,
//! /usr/local/cuda*, pip's `nvidia/cu13/lib`, the system folders), dlopen it by absolute
//! path with RTLD_GLOBAL, and only then ask cudarc (`is_culib_present`): glibc matches its
//! later bare-soname dlopen against the object already loaded. Absence becomes
//! `Error::BackendUnavailable` naming the library and every folder searched.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The CUDA major version the bindings (cudarc feature `cuda-13000`) and kernels target.
pub const CUDA_MAJOR: u32 = 13;

/// Where the libraries were found.
#[derive(Clone, Debug)]
pub struct Libraries {
    pub driver: PathBuf,
    pub nvrtc: PathBuf,
    pub cublaslt: PathBuf,
    /// CUDA version the driver supports, as 1000 * major + 10 * minor (13000 = 13.0).
    pub driver_version: u32,
    /// NVRTC (major, minor).
    pub nvrtc_version: (u32, u32),
}

fn unavailable(reason: String) -> Error {
    Error::BackendUnavailable {
        backend: "cuda".into(),
        reason,
    }
}

/// Why a library cannot be used, in words for `Error::BackendUnavailable`.
type Reason = String;

/// Every folder searched, in order, existing ones only, without duplicates.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let (triple, target) = match std::env::consts::ARCH {
        "aarch64" => ("aarch64-linux-gnu", "sbsa-linux"),
        _ => ("x86_64-linux-gnu", "x86_64-linux"),
    };
    let toolkit = |root: &Path, out: &mut Vec<PathBuf>| {
        out.push(root.join("targets").join(target).join("lib"));
        out.push(root.join("lib64"));
        out.push(root.join("lib"));
    };
    if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(v) = std::env::var_os(var) {
            toolkit(Path::new(&v), &mut dirs);
        }
    }
    toolkit(Path::new("/usr/local/cuda"), &mut dirs);
    for root in versioned_cuda_roots() {
        toolkit(&root, &mut dirs);
    }
    dirs.extend(pip_dirs());
    for d in [
        format!("/usr/lib/{triple}"),
        format!("/lib/{triple}"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
        "/lib64".into(),
        "/usr/lib/wsl/lib".into(),
    ] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        // The toolkit's stub libcuda only answers "stub library": never load it.
        let ok = d.is_dir() && !d.ends_with("stubs") && !seen.contains(d);
        if ok {
            seen.push(d.clone());
        }
        ok
    });
    dirs
}

/// /usr/local/cuda-X.Y folders, the CUDA 13 ones first, newest first within a major.
fn versioned_cuda_roots() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/usr/local") else {
        return Vec::new();
    };
    let mut roots: Vec<(bool, Vec<u32>, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("cuda-")?;
            let nums: Vec<u32> = ver
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let ours = nums.first() == Some(&CUDA_MAJOR);
            Some((ours, nums, e.path()))
        })
        .collect();
    roots.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    roots.into_iter().map(|r| r.2).collect()
}

/// pip's CUDA wheels (`nvidia/cu13/lib`): scripts/fetch_nvrtc.sh's cache, virtualenvs,
/// conda, user and system site-packages.
fn pip_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut prefixes: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    let cu = format!("nvidia/cu{CUDA_MAJOR}/lib");
    if let Some(d) = std::env::var_os("LAMINA_NVRTC_DIR") {
        out.push(PathBuf::from(d).join(&cu));
    }
    if let Some(h) = &home {
        out.push(h.join(".cache/lamina-nvrtc").join(&cu));
        prefixes.push(h.join(".local"));
    }
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            prefixes.push(PathBuf::from(v));
        }
    }
    if let Some(v) = std::env::var_os("CONDA_PREFIX") {
        out.push(PathBuf::from(v).join("lib"));
    }
    prefixes.push("/usr/local".into());
    prefixes.push("/usr".into());
    for p in prefixes {
        let lib = p.join("lib");
        let Ok(rd) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pys: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pys.sort();
        for py in pys {
            for sp in ["site-packages", "dist-packages"] {
                out.push(py.join(sp).join(&cu));
            }
        }
    }
    out
}

fn find(names: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn describe_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no candidate folder exists".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(unix)]
fn dlopen_global(path: &Path) -> std::result::Result<(), String> {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlerror() -> *mut c_char;
    }
    const RTLD_NOW: c_int = 2;
    const RTLD_GLOBAL: c_int = 0x100;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a valid C string; the handle is deliberately never closed, the
    // library stays loaded for the life of the process as cudarc expects.
    let h = unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let msg = unsafe { dlerror() };
        let msg = if msg.is_null() {
            "unknown dlopen error".to_string()
        } else {
            // SAFETY: non-null C string from dlerror.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(msg);
    }
    Ok(())
}

#[cfg(not(unix))]
fn dlopen_global(_path: &Path) -> std::result::Result<(), String> {
    Ok(())
}

fn load(what: &str, names: &[&str], dirs: &[PathBuf], hint: &str) -> Result<PathBuf, Reason> {
    let path = find(names, dirs).ok_or_else(|| {
        format!(
            "{what} ({}) not found; looked in: {}. {hint}",
            names.join(" or "),
            describe_dirs(dirs)
        )
    })?;
    dlopen_global(&path)
        .map_err(|e| format!("{what} at {} cannot be loaded: {e}", path.display()))?;
    Ok(path)
}

/// NVRTC's path and (major, minor) version.
type Nvrtc = (PathBuf, (u32, u32));

static NVRTC_ONCE: OnceLock<Result<Nvrtc, Reason>> = OnceLock::new();

/// Finds, preloads and checks NVRTC (and its builtins library, which NVRTC itself dlopens
/// by bare name at compile time). Enough to compile kernels on a machine without a GPU.
pub fn load_nvrtc() -> Result<Nvrtc> {
    NVRTC_ONCE
        .get_or_init(load_nvrtc_once)
        .clone()
        .map_err(unavailable)
}

fn load_nvrtc_once() -> Result<Nvrtc, Reason> {
    let dirs = search_dirs();
    let soname = format!("libnvrtc.so.{CUDA_MAJOR}");
    let path = load(
        "NVRTC",
        &[&soname],
        &dirs,
        "Install the CUDA 13 toolkit (and set CUDA_HOME), or `pip install \
         nvidia-cuda-nvrtc==13.0.*` (scripts/fetch_nvrtc.sh does it into \
         ~/.cache/lamina-nvrtc; LAMINA_NVRTC_DIR overrides).",
    )?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let builtins = std::fs::read_dir(dir)
        .ok()
        .and_then(|rd| {
            let mut v: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.starts_with(&format!("libnvrtc-builtins.so.{CUDA_MAJOR}"))
                        && !n.contains(".alt.")
                })
                .collect();
            v.sort();
            v.pop()
        })
        .ok_or_else(|| {
            format!(
                "NVRTC at {} has no libnvrtc-builtins.so.{CUDA_MAJOR}.* beside it (a broken \
                 install: reinstall nvidia-cuda-nvrtc or the toolkit)",
                path.display()
            )
        })?;
    dlopen_global(&builtins)
        .map_err(|e| format!("{} cannot be loaded: {e}", builtins.display()))?;
    // SAFETY: the library was loaded above, so cudarc's lookup finds it and cannot panic.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(format!(
            "NVRTC loaded from {} but cudarc cannot open it by soname",
            path.display()
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: valid out-pointers; the symbol exists in every NVRTC.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed: {r:?}"));
    }
    if major as u32 != CUDA_MAJOR {
        return Err(format!(
            "NVRTC at {} is version {major}.{minor}; lamina needs NVRTC {CUDA_MAJOR}.x",
            path.display()
        ));
    }
    Ok((path, (major as u32, minor as u32)))
}

/// Finds and loads the driver, NVRTC and cuBLASLt, and checks their versions. Never panics.
pub fn load_all() -> Result<Libraries> {
    static ALL: OnceLock<Result<Libraries, Reason>> = OnceLock::new();
    ALL.get_or_init(load_all_once).clone().map_err(unavailable)
}

fn load_all_once() -> Result<Libraries, Reason> {
    let dirs = search_dirs();
    let driver = load(
        "the NVIDIA driver library",
        &["libcuda.so.1", "libcuda.so"],
        &dirs,
        "Install the NVIDIA driver (R580 or newer for CUDA 13), or add the folder holding \
         libcuda.so.1 to LD_LIBRARY_PATH.",
    )?;
    // SAFETY: loaded above; see the module comment.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(format!(
            "libcuda loaded from {} but cudarc cannot open it by soname",
            driver.display()
        ));
    }
    let mut v = 0;
    // SAFETY: cuDriverGetVersion exists in every driver and needs no cuInit.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return Err(format!(
            "cuDriverGetVersion failed ({r:?}) for {}",
            driver.display()
        ));
    }
    let driver_version = v as u32;
    // The bindings are CUDA 13.0's: an older driver lacks some of their symbols.
    if driver_version < CUDA_MAJOR * 1000 {
        return Err(format!(
            "the NVIDIA driver at {} supports CUDA {}.{}; lamina's CUDA backend needs a driver \
             for CUDA {CUDA_MAJOR}.0 or newer (R580+). Update the driver or use --backend wgpu.",
            driver.display(),
            driver_version / 1000,
            driver_version % 1000 / 10
        ));
    }
    let (nvrtc, nvrtc_version) = NVRTC_ONCE.get_or_init(load_nvrtc_once).clone()?;
    let nvrtc_num = nvrtc_version.0 * 1000 + nvrtc_version.1 * 10;
    if nvrtc_num > driver_version {
        return Err(format!(
            "NVRTC {}.{} at {} is newer than the driver's CUDA {}.{}: the driver cannot load \
             what it compiles. Install NVRTC {}.{} (pip nvidia-cuda-nvrtc=={}.{}.*) or update the \
             driver.",
            nvrtc_version.0,
            nvrtc_version.1,
            nvrtc.display(),
            driver_version / 1000,
            driver_version % 1000 / 10,
            driver_version / 1000,
            driver_version % 1000 / 10,
            driver_version / 1000,
            driver_version % 1000 / 10
        ));
    }
    let lt_soname = format!("libcublasLt.so.{CUDA_MAJOR}");
    let cublaslt = load(
        "cuBLASLt",
        &[&lt_soname],
        &dirs,
        "Install the CUDA 13 toolkit (and set CUDA_HOME), or `pip install nvidia-cublas==13.0.*`.",
    )?;
    // SAFETY: loaded above.
    if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
        return Err(format!(
            "cuBLASLt loaded from {} but cudarc cannot open it by soname",
            cublaslt.display()
        ));
    }
    // SAFETY: plain query of the loaded library.
    let lt_version = unsafe { cudarc::cublaslt::sys::cublasLtGetVersion() };
    if lt_version / 10000 != CUDA_MAJOR as usize {
        return Err(format!(
            "cuBLASLt at {} is version {lt_version}; lamina needs cuBLASLt {CUDA_MAJOR}.x",
            cublaslt.display()
        ));
    }
    Ok(Libraries {
        driver,
        nvrtc,
        cublaslt,
        driver_version,
        nvrtc_version,
    })
}
