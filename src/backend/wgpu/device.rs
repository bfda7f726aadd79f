//! Adapter choice, device creation with only the features we checked, and the capture of
//! wgpu's errors (which it would otherwise report by panicking) as `Error::Backend`.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Environment variable choosing the adapter: an index into `list_adapters()` or a
/// case-insensitive part of its name or backend ("llvmpipe", "nvidia", "vulkan", "gl").
pub const ADAPTER_ENV: &str = "LAMINA_WGPU_ADAPTER";

/// How to open the wgpu backend.
#[derive(Clone, Debug)]
pub struct WgpuOptions {
    /// The adapter, as in `ADAPTER_ENV` (which is read when this is None). Default: the best
    /// adapter: a discrete GPU, then an integrated one, ..., then a CPU (lavapipe); Vulkan,
    /// Metal or DX12 before GL.
    pub adapter: Option<String>,
    /// Use subgroup operations when the adapter has them (default true; false tests the
    /// workgroup-memory path on an adapter that has them).
    pub subgroups: bool,
    /// Which matmul kernels to use; default `Auto`.
    pub matmul: MatmulKernels,
    /// Largest buffer for one piece of a weight; default (None) the adapter's limits
    /// (storage binding size and buffer size). Tests set a small one to exercise the
    /// splitting of large tensors.
    pub max_piece_bytes: Option<u64>,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions {
            adapter: None,
            subgroups: true,
            matmul: MatmulKernels::Auto,
            max_piece_bytes: None,
        }
    }
}

/// Which matmul kernels to use (matmul.wgsl). They compute the same thing; they suit
/// different hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernels {
    /// `Cpu` on CPU adapters (lavapipe, SwiftShader, WARP), `Gpu` on GPUs.
    Auto,
    /// `gemv` for one or two tokens (invocations split k, then reduce: neighbouring
    /// invocations read neighbouring bytes) and `tiled` for more (weights dequantized once
    /// per tile into workgroup memory).
    Gpu,
    /// `rows` for any number of tokens: each invocation several rows and tokens over all
    /// of k, no reduction and no workgroup memory; a CPU runs the loads of its SIMD lanes
    /// one by one, so this loads each weight and x chunk once for many products.
    Cpu,
}

/// One adapter wgpu can open here, in words.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    /// Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver {} {})",
            self.name, self.backend, self.device_type, self.driver, self.driver_info
        )
    }
}

/// What `lamina inspect` shows of the chosen adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Description {
    pub adapter: AdapterSummary,
    /// The limits that decide what fits: (name, value).
    pub limits: Vec<(&'static str, u64)>,
    /// Adapter features that matter to us, present or not: (name, present).
    pub features: Vec<(&'static str, bool)>,
    /// The features this backend requested and uses.
    pub used_features: Vec<&'static str>,
    /// Subgroup sizes the adapter may use (0 when it has no subgroups).
    pub subgroup_sizes: (u32, u32),
}

impl std::fmt::Display for Description {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "adapter: {}", self.adapter)?;
        let feats: Vec<String> = self
            .features
            .iter()
            .map(|(n, on)| format!("{n}: {}", if *on { "yes" } else { "no" }))
            .collect();
        writeln!(f, "features: {}", feats.join(", "))?;
        let used = if self.used_features.is_empty() {
            "none".to_string()
        } else {
            self.used_features.join(", ")
        };
        writeln!(f, "used: {used}")?;
        if self.subgroup_sizes.1 > 0 {
            writeln!(
                f,
                "subgroup size: {}..{}",
                self.subgroup_sizes.0, self.subgroup_sizes.1
            )?;
        }
        for (name, v) in &self.limits {
            writeln!(f, "{name}: {v}")?;
        }
        Ok(())
    }
}

/// Features we look for and what they are called in reports.
const FEATURES: &[(&str, ::wgpu::Features)] = &[
    ("SUBGROUP", ::wgpu::Features::SUBGROUP),
    ("SHADER_F16", ::wgpu::Features::SHADER_F16),
    ("SHADER_INT64", ::wgpu::Features::SHADER_INT64),
    ("TIMESTAMP_QUERY", ::wgpu::Features::TIMESTAMP_QUERY),
];

fn instance(backends: ::wgpu::Backends) -> ::wgpu::Instance {
    let mut desc = ::wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // WGPU_BACKEND, when set, wins (from_env read it).
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = backends;
    }
    ::wgpu::Instance::new(desc)
}

fn summary(index: usize, info: &::wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
    }
}

/// The adapters wgpu finds on this machine, best first. GL is only probed when no
/// Vulkan, Metal or DX12 adapter answers (or when `with_gl`): probing it prints EGL
/// complaints on machines without a display, and it lacks subgroups anyway.
fn ranked(with_gl: bool) -> Vec<::wgpu::Adapter> {
    let find = |b: ::wgpu::Backends| pollster::block_on(instance(b).enumerate_adapters(b));
    let mut adapters = find(::wgpu::Backends::PRIMARY);
    if with_gl || adapters.is_empty() {
        adapters.extend(find(::wgpu::Backends::GL));
    }
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

/// Lower is better: real GPUs before software ones, native APIs before GL.
fn rank(info: &::wgpu::AdapterInfo) -> (u32, u32) {
    use ::wgpu::{Backend as B, DeviceType as D};
    let device = match info.device_type {
        D::DiscreteGpu => 0,
        D::IntegratedGpu => 1,
        D::VirtualGpu => 2,
        D::Other => 3,
        D::Cpu => 4,
    };
    let api = match info.backend {
        B::Vulkan | B::Metal | B::Dx12 => 0,
        _ => 1,
    };
    (device, api)
}

/// Every adapter wgpu can open here, best first (the index `ADAPTER_ENV` takes).
pub fn list_adapters() -> Vec<AdapterSummary> {
    ranked(true)
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, &a.get_info()))
        .collect()
}

/// The open device and everything the ops need to know about it.
pub(crate) struct Gpu {
    pub device: ::wgpu::Device,
    pub queue: ::wgpu::Queue,
    pub limits: ::wgpu::Limits,
    pub subgroups: bool,
    /// Use matmul.wgsl's `rows` kernel for every matmul (else `gemv` and `tiled`).
    pub cpu_kernels: bool,
    pub description: Description,
    /// Bytes held by live activation buffers, weights and caches.
    pub live: Arc<std::sync::atomic::AtomicU64>,
    /// Errors wgpu reported outside an error scope, oldest first.
    errors: Arc<Mutex<Vec<String>>>,
    /// Set once when the device is lost; every later call fails with it.
    lost: Arc<Mutex<Option<String>>>,
}

fn unavailable(reason: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        backend: "wgpu".into(),
        reason: reason.to_string(),
    }
}

impl Gpu {
    pub fn open(opts: &WgpuOptions) -> Result<Gpu> {
        let choice = opts
            .adapter
            .clone()
            .or_else(|| std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty()));
        // A choice by index or name sees the same list as `list_adapters`.
        let adapters = ranked(choice.is_some());
        if adapters.is_empty() {
            return Err(unavailable(
                "no adapter found (no Vulkan, Metal, DX12 or GL driver answered; on Linux \
                 without a GPU install Mesa's lavapipe: mesa-vulkan-drivers)",
            ));
        }
        let index = match &choice {
            None => 0,
            Some(want) => pick(&adapters, want)?,
        };
        let adapter = &adapters[index];
        let info = adapter.get_info();
        let present = adapter.features();
        let limits = adapter.limits();

        // unpack2x16float reads every f16 scale; all Vulkan, Metal, DX12 and GL adapters
        // have it (lavapipe only with SHADER_F16), but it is a flag, so check it.
        let downlevel = adapter.get_downlevel_capabilities();
        if !downlevel
            .flags
            .contains(::wgpu::DownlevelFlags::SHADER_F16_IN_F32)
        {
            return Err(unavailable(format!(
                "adapter {} cannot widen f16 in shaders (no SHADER_F16_IN_F32), which every \
                 weight read needs; choose another adapter with {ADAPTER_ENV}",
                info.name
            )));
        }
        let subgroups = opts.subgroups && present.contains(::wgpu::Features::SUBGROUP);
        let mut required = ::wgpu::Features::empty();
        if subgroups {
            required |= ::wgpu::Features::SUBGROUP;
        }
        let (device, queue) =
            pollster::block_on(adapter.request_device(&::wgpu::DeviceDescriptor {
                label: Some("lamina"),
                required_features: required,
                required_limits: limits.clone(),
                experimental_features: ::wgpu::ExperimentalFeatures::disabled(),
                memory_hints: ::wgpu::MemoryHints::Performance,
                trace: ::wgpu::Trace::Off,
            }))
            .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;

        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: ::wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut l) = lost_sink.lock() {
                *l = Some(format!("device lost ({reason:?}): {msg}"));
            }
        });

        let description = Description {
            adapter: summary(index, &info),
            limits: vec![
                ("max_buffer_size", limits.max_buffer_size),
                (
                    "max_storage_buffer_binding_size",
                    limits.max_storage_buffer_binding_size,
                ),
                (
                    "max_storage_buffers_per_shader_stage",
                    limits.max_storage_buffers_per_shader_stage as u64,
                ),
                (
                    "max_compute_workgroup_storage_size",
                    limits.max_compute_workgroup_storage_size as u64,
                ),
                (
                    "max_compute_invocations_per_workgroup",
                    limits.max_compute_invocations_per_workgroup as u64,
                ),
                (
                    "max_compute_workgroups_per_dimension",
                    limits.max_compute_workgroups_per_dimension as u64,
                ),
            ],
            features: FEATURES
                .iter()
                .map(|(n, f)| (*n, present.contains(*f)))
                .collect(),
            used_features: if subgroups { vec!["SUBGROUP"] } else { vec![] },
            subgroup_sizes: if present.contains(::wgpu::Features::SUBGROUP) {
                (info.subgroup_min_size, info.subgroup_max_size)
            } else {
                (0, 0)
            },
        };
        let cpu_kernels = match opts.matmul {
            MatmulKernels::Cpu => true,
            MatmulKernels::Gpu => false,
            MatmulKernels::Auto => info.device_type == ::wgpu::DeviceType::Cpu,
        };
        tracing::info!(
            adapter = %description.adapter,
            subgroups,
            cpu_kernels,
            "wgpu device opened"
        );
        Ok(Gpu {
            device,
            queue,
            limits,
            subgroups,
            cpu_kernels,
            description,
            live: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            errors,
            lost,
        })
    }

    /// The first error wgpu reported since the last check, or a lost device.
    pub fn check(&self) -> Result<()> {
        if let Some(l) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::backend("wgpu", l));
        }
        let mut errs = self
            .errors
            .lock()
            .map_err(|_| Error::backend("wgpu", "error log poisoned"))?;
        if errs.is_empty() {
            return Ok(());
        }
        let first = errs.remove(0);
        let more = errs.len();
        errs.clear();
        Err(Error::backend(
            "wgpu",
            if more > 0 {
                format!("{first} (and {more} more errors)")
            } else {
                first
            },
        ))
    }

    /// Runs `f` (which creates resources) under error scopes for out-of-memory and
    /// validation, so a failed allocation or a rejected shader is an error here and now.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check()?;
        let oom = self
            .device
            .push_error_scope(::wgpu::ErrorFilter::OutOfMemory);
        let val = self
            .device
            .push_error_scope(::wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        match o.or(v) {
            None => Ok(r),
            Some(e) => Err(Error::backend("wgpu", format!("{what}: {e}"))),
        }
    }
}

fn pick(adapters: &[::wgpu::Adapter], want: &str) -> Result<usize> {
    let names: Vec<String> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{i}: {}", summary(i, &a.get_info())))
        .collect();
    if let Ok(i) = want.trim().parse::<usize>() {
        if i < adapters.len() {
            return Ok(i);
        }
    } else {
        let w = want.to_lowercase();
        if let Some(i) = adapters.iter().position(|a| {
            let info = a.get_info();
            info.name.to_lowercase().contains(&w)
                || format!("{:?}", info.backend).to_lowercase() == w
        }) {
            return Ok(i);
        }
    }
    Err(unavailable(format!(
        "no adapter matches '{want}' (set by {ADAPTER_ENV} or --adapter); adapters here: {}",
        names.join("; ")
    )))
}
