//! Device memory: f32 activation buffers, weights in their file dtype (in pieces when a
//! tensor is larger than one binding may be), and the KV cache.

use super::device::Gpu;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::TensorInfo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts device bytes into the backend's total while alive (for `allocated_bytes`).
pub(crate) struct Held {
    live: Arc<AtomicU64>,
    bytes: u64,
}

impl Held {
    pub fn new(gpu: &Gpu, bytes: u64) -> Held {
        gpu.live.fetch_add(bytes, Ordering::Relaxed);
        Held {
            live: gpu.live.clone(),
            bytes,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A device buffer of f32 activations.
pub struct WgpuBuf {
    pub(crate) buffer: ::wgpu::Buffer,
    pub(crate) len: usize,
    pub(crate) _held: Held,
}

impl WgpuBuf {
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Rows `row0 .. row0 + rows` of a weight, in one buffer of their own.
pub(crate) struct Piece {
    pub buffer: ::wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

/// A weight tensor uploaded byte for byte in its file dtype, as `rows` x `cols` (the last
/// dimension is `cols`; all others are rows). A tensor larger than the biggest buffer the
/// device can bind is split at row boundaries into pieces; every op that reads a weight
/// walks the pieces its rows fall in.
pub struct WgpuWeight {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_bytes: usize,
    pub(crate) pieces: Vec<Piece>,
    _held: Held,
}

impl WgpuWeight {
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Number of buffers the tensor was uploaded in.
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }
    /// The piece that holds `row`, with its row range.
    pub(crate) fn piece_of(&self, row: usize) -> Option<&Piece> {
        self.pieces
            .iter()
            .find(|p| row >= p.row0 && row < p.row0 + p.rows)
    }
}

/// The KV cache: per layer a K and a V buffer laid out [kv_heads][max_ctx][head_dim], f32.
pub struct WgpuCache {
    pub(crate) k: Vec<::wgpu::Buffer>,
    pub(crate) v: Vec<::wgpu::Buffer>,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) max_ctx: usize,
    _held: Held,
}

impl WgpuCache {
    pub fn layers(&self) -> usize {
        self.k.len()
    }
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }
    /// Bytes of device memory held.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(|b| b.size()).sum()
    }
}

/// Largest buffer one binding can see: the smaller of the storage binding limit and the
/// buffer size limit, kept under 2^31 so that byte offsets fit the shaders' u32.
pub(crate) fn max_binding(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
        .min(1 << 31)
}

fn round4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

/// A buffer with `bytes` in it (zero padded to 4 bytes), written at creation.
pub(crate) fn buffer_with(
    gpu: &Gpu,
    label: &str,
    bytes: &[u8],
    usage: ::wgpu::BufferUsages,
) -> Result<::wgpu::Buffer> {
    let size = round4(bytes.len().max(4) as u64);
    let buffer = gpu.scoped(&format!("allocating {size} bytes for {label}"), || {
        gpu.device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: true,
        })
    })?;
    {
        let mut view = buffer
            .get_mapped_range_mut(..)
            .map_err(|e| Error::backend("wgpu", format!("mapping {label}: {e}")))?;
        view.slice(..bytes.len()).copy_from_slice(bytes);
    }
    buffer.unmap();
    Ok(buffer)
}

/// An uninitialized storage buffer of `size` bytes.
pub(crate) fn storage(gpu: &Gpu, label: &str, size: u64) -> Result<::wgpu::Buffer> {
    if size > gpu.limits.max_buffer_size {
        return Err(Error::backend(
            "wgpu",
            format!(
                "{label}: {size} bytes is more than the device's largest buffer ({} bytes)",
                gpu.limits.max_buffer_size
            ),
        ));
    }
    gpu.scoped(&format!("allocating {size} bytes for {label}"), || {
        gpu.device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some(label),
            size: round4(size.max(4)),
            usage: ::wgpu::BufferUsages::STORAGE
                | ::wgpu::BufferUsages::COPY_SRC
                | ::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

pub(crate) fn upload_weight(
    gpu: &Gpu,
    t: &TensorInfo,
    bytes: &[u8],
    max_piece: u64,
) -> Result<WgpuWeight> {
    let cols = t.cols();
    let rows = t.rows();
    let expected = t.dtype.tensor_bytes(&t.shape).ok_or_else(|| {
        Error::Format(format!(
            "tensor '{}' of shape {:?} is not a whole number of {} blocks",
            t.name, t.shape, t.dtype
        ))
    })?;
    if bytes.len() != expected {
        return Err(Error::Format(format!(
            "tensor '{}' ({} {:?}) should have {expected} bytes, has {}",
            t.name,
            t.dtype,
            t.shape,
            bytes.len()
        )));
    }
    let row_bytes = t.dtype.row_bytes(cols).unwrap_or(0);
    if rows == 0 || row_bytes == 0 {
        return Err(Error::Model(format!(
            "tensor '{}' of shape {:?} is empty",
            t.name, t.shape
        )));
    }
    let rows_per_piece = (max_piece / row_bytes as u64) as usize;
    if rows_per_piece == 0 {
        return Err(Error::backend(
            "wgpu",
            format!(
                "one row of tensor '{}' ({row_bytes} bytes) is larger than the largest \
                 buffer the device can bind ({max_piece} bytes)",
                t.name
            ),
        ));
    }
    let mut pieces = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        let n = rows_per_piece.min(rows - row0);
        let chunk = &bytes[row0 * row_bytes..(row0 + n) * row_bytes];
        let buffer = buffer_with(
            gpu,
            &t.name,
            chunk,
            ::wgpu::BufferUsages::STORAGE | ::wgpu::BufferUsages::COPY_DST,
        )?;
        pieces.push(Piece {
            buffer,
            row0,
            rows: n,
        });
        row0 += n;
    }
    if pieces.len() > 1 {
        tracing::debug!(tensor = %t.name, pieces = pieces.len(), "weight split at rows");
    }
    let bytes = pieces.iter().map(|p| p.buffer.size()).sum();
    Ok(WgpuWeight {
        name: t.name.clone(),
        dtype: t.dtype,
        rows,
        cols,
        row_bytes,
        pieces,
        _held: Held::new(gpu, bytes),
    })
}

pub(crate) fn alloc_cache(
    gpu: &Gpu,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    max_ctx: usize,
) -> Result<WgpuCache> {
    if head_dim == 0 || head_dim > 256 || kv_heads == 0 || max_ctx == 0 {
        return Err(Error::backend(
            "wgpu",
            format!(
                "KV cache of {kv_heads} heads x {head_dim} dims x {max_ctx} positions: the \
                 attention shader needs 1..=256 dims per head and at least one head and position"
            ),
        ));
    }
    let bytes = (kv_heads * head_dim * max_ctx * 4) as u64;
    if bytes > max_binding(gpu) {
        return Err(Error::backend(
            "wgpu",
            format!(
                "one layer of the KV cache for {max_ctx} positions needs {bytes} bytes, more \
                 than the device can bind ({} bytes); use a shorter context",
                max_binding(gpu)
            ),
        ));
    }
    let mut k = Vec::with_capacity(layers);
    let mut v = Vec::with_capacity(layers);
    for l in 0..layers {
        k.push(storage(gpu, &format!("k cache {l}"), bytes)?);
        v.push(storage(gpu, &format!("v cache {l}"), bytes)?);
    }
    tracing::info!(
        layers,
        kv_heads,
        head_dim,
        max_ctx,
        mib = (2 * layers) as u64 * bytes / (1 << 20),
        "KV cache allocated"
    );
    let held = Held::new(gpu, k.iter().chain(&v).map(|b| b.size()).sum());
    Ok(WgpuCache {
        k,
        v,
        kv_heads,
        head_dim,
        max_ctx,
        _held: held,
    })
}
