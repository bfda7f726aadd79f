//! Weight upload: bytes from the memory map, unchanged, through two pinned staging buffers
//! (one fills while the other's copy runs), and the load rate.

use super::{cuda_err, Cuda, CudaWeight};
use crate::error::Result;
use crate::weights::TensorInfo;
use cudarc::driver::result as dr;
use cudarc::driver::sys;
use std::time::Instant;

/// Bytes per staging buffer.
const CHUNK: usize = 32 << 20;
/// Zero bytes after each weight: kernels read whole aligned words around a block's last
/// bytes (GGUF blocks are only 2-byte aligned).
pub const PAD: usize = 16;

/// Page-locked host memory and the event marking the end of its last copy.
struct Pinned {
    ptr: *mut u8,
    event: sys::CUevent,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: created once in Staging::buffers, released once; the event is waited on
        // first so no copy still reads the memory.
        unsafe {
            dr::event::synchronize(self.event).ok();
            dr::event::destroy(self.event).ok();
            dr::free_host(self.ptr as *mut std::ffi::c_void).ok();
        }
    }
}

/// Staging buffers and the statistics of the current load.
#[derive(Default)]
pub struct Staging {
    bufs: Vec<Pinned>,
    next: usize,
    bytes: u64,
    started: Option<Instant>,
}

// SAFETY: the raw pointers are owned and used only under the backend's Mutex.
unsafe impl Send for Staging {}

impl Cuda {
    fn staging_buffers(&self, s: &mut Staging) -> Result<()> {
        while s.bufs.len() < 2 {
            // SAFETY: plain pinned allocation; write-combined suits a buffer the host only
            // writes and the device only reads.
            let ptr = unsafe { dr::malloc_host(CHUNK, sys::CU_MEMHOSTALLOC_WRITECOMBINED) }
                .map_err(|e| cuda_err("allocating pinned staging memory", e))?;
            let event = match dr::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING) {
                Ok(ev) => ev,
                Err(e) => {
                    // SAFETY: allocated just above.
                    unsafe { dr::free_host(ptr) }.ok();
                    return Err(cuda_err("creating an event", e));
                }
            };
            s.bufs.push(Pinned {
                ptr: ptr as *mut u8,
                event,
            });
        }
        Ok(())
    }

    /// Copies a tensor's bytes to the device unchanged.
    pub(crate) fn upload(&self, t: &TensorInfo, bytes: &[u8]) -> Result<CudaWeight> {
        let expect = t.dtype.tensor_bytes(&t.shape).ok_or_else(|| {
            self.err(format!(
                "tensor '{}' ({} {:?}) is not a whole number of {} blocks",
                t.name, t.dtype, t.shape, t.dtype
            ))
        })?;
        if bytes.len() != expect {
            return Err(self.err(format!(
                "tensor '{}': {} bytes given, {} {:?} needs {expect}",
                t.name,
                bytes.len(),
                t.dtype,
                t.shape
            )));
        }
        if self.is_capturing() {
            return Err(self.err("weight upload inside a recorded step"));
        }
        let mem = self.dev_mem(bytes.len() + PAD)?;
        let stream = self.stream.cu_stream();
        let mut s = self.lock(&self.staging)?;
        self.staging_buffers(&mut s)?;
        if s.started.is_none() {
            s.started = Some(Instant::now());
        }
        // SAFETY: the padding lies inside the allocation.
        unsafe { dr::memset_d8_async(mem.ptr() + bytes.len() as u64, 0, PAD, stream) }
            .map_err(|e| cuda_err("clearing weight padding", e))?;
        let mut off = 0usize;
        for chunk in bytes.chunks(CHUNK) {
            let i = s.next;
            s.next = (s.next + 1) % s.bufs.len();
            let buf = &s.bufs[i];
            // SAFETY: the event marks the end of the previous copy out of this buffer, so
            // overwriting it after the wait is safe; chunk.len() <= CHUNK; the destination
            // range lies inside `mem`.
            unsafe {
                dr::event::synchronize(buf.event)
                    .map_err(|e| cuda_err("waiting for a staging copy", e))?;
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.ptr, chunk.len());
                let staged = std::slice::from_raw_parts(buf.ptr as *const u8, chunk.len());
                dr::memcpy_htod_async(mem.ptr() + off as u64, staged, stream)
                    .map_err(|e| cuda_err(format!("copying '{}' to the device", t.name), e))?;
                dr::event::record(buf.event, stream)
                    .map_err(|e| cuda_err("recording an event", e))?;
            }
            off += chunk.len();
        }
        s.bytes += bytes.len() as u64;
        Ok(CudaWeight {
            mem,
            dtype: t.dtype,
            shape: t.shape.clone(),
            name: t.name.clone(),
            len: bytes.len(),
        })
    }

    /// Waits for the uploads, logs the load rate at INFO, frees the staging memory and
    /// returns (bytes, seconds) since the first upload of this load.
    pub fn finish_upload(&self) -> Result<(u64, f64)> {
        self.synchronize()?;
        let mut s = self.lock(&self.staging)?;
        let secs = s.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        let bytes = s.bytes;
        if bytes > 0 {
            tracing::info!(
                "cuda: uploaded {:.2} GB of weights in {:.2} s ({:.2} GB/s, pinned staging)",
                bytes as f64 / 1e9,
                secs,
                bytes as f64 / 1e9 / secs.max(1e-9)
            );
        }
        *s = Staging::default();
        Ok((bytes, secs))
    }
}

/// Page-locked memory that logits come back through: a decode step reads a whole
/// vocabulary of logits (0.5 MB for Llama 3) every token, and a copy into pageable memory
/// goes through the driver's own staging at a fraction of the speed.
#[derive(Default)]
pub struct Readback {
    ptr: Option<std::ptr::NonNull<f32>>,
    len: usize,
}

// SAFETY: the pointer is owned and used only under the backend's Mutex.
unsafe impl Send for Readback {}

impl Drop for Readback {
    fn drop(&mut self) {
        if let Some(p) = self.ptr.take() {
            // SAFETY: allocated by malloc_host in `floats`; reads synchronize before they
            // return, so no copy is in flight.
            unsafe { dr::free_host(p.as_ptr() as *mut std::ffi::c_void) }.ok();
        }
    }
}

impl Readback {
    /// Room for `len` floats (grown, never shrunk).
    pub fn floats(&mut self, len: usize) -> Result<&mut [f32]> {
        if self.len < len {
            if let Some(p) = self.ptr.take() {
                // SAFETY: as in drop.
                unsafe { dr::free_host(p.as_ptr() as *mut std::ffi::c_void) }.ok();
            }
            self.len = 0;
            // SAFETY: plain (cached, readable) pinned allocation.
            let p = unsafe { dr::malloc_host(len * 4, 0) }
                .map_err(|e| cuda_err("allocating pinned memory for reads", e))?;
            self.ptr = std::ptr::NonNull::new(p as *mut f32);
            self.len = len;
        }
        let p = self.ptr.map_or(std::ptr::NonNull::dangling(), |p| p);
        // SAFETY: the allocation holds self.len >= len floats (any bytes are valid f32).
        Ok(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }
}
