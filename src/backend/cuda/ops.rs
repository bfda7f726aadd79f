//! Launches of every op but matmul (matmul.rs, gemv.rs) and attention (attention.rs):
//! argument checks on the host, then one kernel of `kernels/<op>.cu`. A check that fails is
//! an error before anything is enqueued.

pub use super::attention::{decode_splits, AttnPath, ATTN_MAX_D, SPLIT_GROUP, SPLIT_ROWS};
use super::nvrtc::Variant;
use super::{cuda_err, drv, Cuda, CudaBuf, CudaCache, CudaWeight};
use crate::backend::RopeLayout;
use crate::error::{Error, Result};
use cudarc::driver::result as dr;
use cudarc::driver::sys::CUfunction_attribute as FnAttr;
use std::ffi::c_void;

/// A kernel argument: the address of a value that lives until the launch returns.
pub(crate) fn arg<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// Dynamic shared memory a kernel may use without opting in.
pub(super) const SMEM_DEFAULT: u32 = 48 << 10;

pub(super) fn i32_of(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::backend(
            "cuda",
            format!("{what} = {v} exceeds the kernels' 32-bit range"),
        )
    })
}

impl Cuda {
    /// cuLaunchKernelEx on the stream, allowing programmatic dependent launch where the
    /// device has it (see pdl_begin in kernels/common.cuh): the kernel may start while the
    /// one ahead finishes, and waits for it on the device. Captured into a graph, the
    /// attribute becomes a programmatic edge, so replayed decode steps keep the overlap.
    ///
    /// # Safety
    /// `args` must be the kernel's exact parameter list.
    unsafe fn launch_raw(
        &self,
        f: cudarc::driver::sys::CUfunction,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        args: &mut [*mut c_void],
    ) -> std::result::Result<(), cudarc::driver::DriverError> {
        use cudarc::driver::sys;
        let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let cfg = sys::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block.0,
            blockDimY: block.1,
            blockDimZ: block.2,
            sharedMemBytes: smem,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(self.pdl),
        };
        sys::cuLaunchKernelEx(&cfg, f, args.as_mut_ptr(), std::ptr::null_mut()).result()
    }

    /// Launches kernel `name` of variant `v` on the stream. With LAMINA_CUDA_SYNC=1 it
    /// also waits and names the kernel if it faulted.
    pub(crate) fn launch(
        &self,
        v: &Variant,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        if grid.1 > 65535 || grid.2 > 65535 || grid.0 > i32::MAX as u32 {
            return Err(self.err(format!("{name}: grid {grid:?} exceeds CUDA's limits")));
        }
        let f = self.lock(&self.modules)?.function(v, name)?;
        self.bind()?;
        if smem > SMEM_DEFAULT {
            if smem > self.info.smem_optin {
                return Err(self.err(format!(
                    "{name} needs {smem} bytes of shared memory; {} allows {}",
                    self.info.name, self.info.smem_optin
                )));
            }
            f.set_attribute(
                FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| {
                cuda_err(
                    format!("{name}: raising its shared memory to {smem} bytes"),
                    e,
                )
            })?;
        }
        // SAFETY: every caller passes the kernel's exact parameter list (types and order of
        // its `extern "C"` signature) and has checked the buffers' sizes.
        unsafe { self.launch_raw(f.cu_function(), grid, block, smem, args) }.map_err(|e| {
            self.err(format!(
                "launching {name} of {} (grid {grid:?}, block {block:?}, {smem} B shared): {}",
                v.describe(),
                drv(e)
            ))
        })?;
        if self.sync_each && !self.is_capturing() {
            self.stream.synchronize().map_err(|e| {
                self.err(format!(
                    "kernel {name} of {} failed: {}",
                    v.describe(),
                    drv(e)
                ))
            })?;
        }
        Ok(())
    }

    /// How many blocks of `threads` threads and `smem` bytes of dynamic shared memory of
    /// kernel `name` fit on one SM (the driver's answer, asked once per shape).
    pub(crate) fn blocks_per_sm(
        &self,
        v: &Variant,
        name: &'static str,
        threads: u32,
        smem: u32,
    ) -> Result<u32> {
        let key = (v.clone(), name, threads, smem);
        if let Some(&n) = self.lock(&self.occupancy)?.get(&key) {
            return Ok(n);
        }
        let f = self.lock(&self.modules)?.function(v, name)?;
        self.bind()?;
        if smem > SMEM_DEFAULT {
            f.set_attribute(
                FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| cuda_err(format!("{name}: raising its shared memory to {smem}"), e))?;
        }
        let n = f
            .occupancy_max_active_blocks_per_multiprocessor(threads, smem as usize, None)
            .map_err(|e| cuda_err(format!("{name}: occupancy"), e))?;
        if n == 0 {
            return Err(self.err(format!(
                "{name} of {}: no block of {threads} threads and {smem} bytes of shared memory \
                 fits on {}",
                v.describe(),
                self.info.name
            )));
        }
        self.lock(&self.occupancy)?.insert(key, n);
        Ok(n)
    }

    /// Blocks for a grid-stride loop over n elements.
    pub(super) fn blocks_for(&self, n: usize, threads: usize) -> u32 {
        let want = n.div_ceil(threads).max(1);
        want.min(self.info.multiprocessors as usize * 16) as u32
    }

    pub(super) fn need(&self, what: &str, b: &CudaBuf, n: usize) -> Result<()> {
        if b.len() < n {
            return Err(self.err(format!(
                "{what}: buffer holds {} floats, {n} needed",
                b.len()
            )));
        }
        Ok(())
    }

    /// The step's rows must cover `t` (kernels read ids/positions of rows 0..t).
    pub(super) fn step_rows(&self, op: &str, t: usize) -> Result<()> {
        let s = self.lock(&self.step)?;
        if t > s.host_pos.len() {
            return Err(self.err(format!(
                "{op} of {t} rows but set_step gave {} rows",
                s.host_pos.len()
            )));
        }
        Ok(())
    }

    pub(crate) fn set_step_rows(&self, ids: &[u32], positions: &[u32]) -> Result<()> {
        if ids.len() != positions.len() {
            return Err(Error::Input(format!(
                "set_step: {} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        if let Some(limit) = *self.lock(&self.ctx_max)? {
            if let Some(&p) = positions.iter().find(|&&p| p as usize >= limit) {
                return Err(Error::Input(format!(
                    "position {p} is past the KV cache ({limit} positions): raise --ctx-size or \
                     shorten the prompt"
                )));
            }
        }
        if self.is_capturing() {
            return Err(self.err("set_step inside a recorded step"));
        }
        let n = ids.len();
        let mut s = self.lock(&self.step)?;
        if n > s.cap {
            let cap = n.next_power_of_two();
            drop(s);
            self.invalidate_graphs("step buffers grow")?;
            s = self.lock(&self.step)?;
            s.ids = self.dev_mem(cap * 4)?;
            s.pos = self.dev_mem(cap * 4)?;
            s.cap = cap;
        }
        self.bind()?;
        let stream = self.stream.cu_stream();
        // SAFETY: both buffers hold cap >= n u32; pageable sources are consumed on return.
        unsafe {
            dr::memcpy_htod_async(s.ids.ptr(), ids, stream)
                .map_err(|e| cuda_err("set_step ids", e))?;
            dr::memcpy_htod_async(s.pos.ptr(), positions, stream)
                .map_err(|e| cuda_err("set_step positions", e))?;
        }
        s.host_ids = ids.to_vec();
        s.host_pos = positions.to_vec();
        Ok(())
    }

    pub(super) fn step_ptrs(&self) -> Result<(u64, u64)> {
        let s = self.lock(&self.step)?;
        Ok((s.ids.ptr(), s.pos.ptr()))
    }

    pub(crate) fn op_embedding(&self, table: &CudaWeight, out: &CudaBuf, t: usize) -> Result<()> {
        if t == 0 {
            return Ok(());
        }
        if table.shape.len() != 2 {
            return Err(self.err(format!(
                "embedding table '{}' has shape {:?}",
                table.name, table.shape
            )));
        }
        let (vocab, cols) = (table.rows(), table.cols());
        let row_bytes = table.dtype.row_bytes(cols).ok_or_else(|| {
            self.err(format!(
                "'{}': rows are not whole {} blocks",
                table.name, table.dtype
            ))
        })?;
        self.need("embedding out", out, t * cols)?;
        self.step_rows("embedding", t)?;
        if !self.is_capturing() {
            let s = self.lock(&self.step)?;
            if let Some(&id) = s.host_ids[..t].iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::Input(format!(
                    "token id {id} is outside the vocabulary ({vocab})"
                )));
            }
        }
        let v = Variant::embedding(table.dtype)?;
        let units = if table.dtype.is_quantized() {
            cols / table.dtype.block_elems().min(32)
        } else {
            cols
        };
        let threads = 256u32;
        let ychunks = units.div_ceil(threads as usize).clamp(1, 1024) as u32;
        let (ids, _) = self.step_ptrs()?;
        let (tp, op) = (table.ptr(), out.ptr());
        let (rb, c, vb) = (
            row_bytes as i64,
            i32_of("cols", cols)?,
            i32_of("vocab", vocab)?,
        );
        self.launch(
            &v,
            "embedding",
            (t as u32, ychunks, 1),
            (threads, 1, 1),
            0,
            &mut [arg(&tp), arg(&rb), arg(&ids), arg(&op), arg(&c), arg(&vb)],
        )
    }

    pub(crate) fn op_rms_norm(
        &self,
        x: &CudaBuf,
        w: &CudaWeight,
        out: &CudaBuf,
        t: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        if t == 0 {
            return Ok(());
        }
        if w.shape.iter().product::<usize>() < dim {
            return Err(self.err(format!(
                "rms_norm weight '{}' has {:?}, dim {dim}",
                w.name, w.shape
            )));
        }
        self.need("rms_norm x", x, t * dim)?;
        self.need("rms_norm out", out, t * dim)?;
        let v = Variant::rms_norm(w.dtype)?;
        let (xp, wp, op, d) = (x.ptr(), w.ptr(), out.ptr(), i32_of("dim", dim)?);
        #[rustfmt::skip]
        let args = &mut [arg(&xp), arg(&wp), arg(&op), arg(&d), arg(&eps)];
        self.launch(&v, "rms_norm", (t as u32, 1, 1), (256, 1, 1), 0, args)
    }

    pub(crate) fn op_add_bias(
        &self,
        x: &CudaBuf,
        bias: &CudaWeight,
        t: usize,
        n: usize,
    ) -> Result<()> {
        if bias.shape.iter().product::<usize>() < n {
            return Err(self.err(format!(
                "bias '{}' has {:?}, {n} needed",
                bias.name, bias.shape
            )));
        }
        let total = t * n;
        if total == 0 {
            return Ok(());
        }
        self.need("add_bias x", x, total)?;
        let v = Variant::add_bias(bias.dtype)?;
        let (xp, bp, tot, nn) = (x.ptr(), bias.ptr(), total as i64, i32_of("n", n)?);
        self.launch(
            &v,
            "add_bias",
            (self.blocks_for(total, 256), 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&xp), arg(&bp), arg(&tot), arg(&nn)],
        )
    }

    /// rope (x alone, or a step's queries and keys in one launch); with `kv`, also the
    /// cache writes of kv_write: rope_kv_write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op_rope(
        &self,
        x: &CudaBuf,
        k: Option<&CudaBuf>,
        inv_freq: &CudaBuf,
        t: usize,
        (heads, kv_heads): (usize, usize),
        head_dim: usize,
        scale: f32,
        layout: RopeLayout,
        kv: Option<(&CudaCache, usize, &CudaBuf)>,
    ) -> Result<()> {
        let kv_heads = if k.is_some() { kv_heads } else { 0 };
        if t == 0 || heads + kv_heads == 0 {
            return Ok(());
        }
        if !head_dim.is_multiple_of(2) {
            return Err(self.err(format!("rope needs an even head_dim, got {head_dim}")));
        }
        self.need("rope x", x, t * heads * head_dim)?;
        if let Some(k) = k {
            self.need("rope k", k, t * kv_heads * head_dim)?;
        }
        self.need("rope inv_freq", inv_freq, head_dim / 2)?;
        if heads + kv_heads > 65535 {
            return Err(self.err(format!("rope: {heads} + {kv_heads} heads")));
        }
        self.step_rows("rope", t)?;
        let (_, pos) = self.step_ptrs()?;
        let threads = (head_dim / 2).next_multiple_of(32).clamp(32, 256) as u32;
        let (xp, kp, fp) = (x.ptr(), k.map_or(x.ptr(), |k| k.ptr()), inv_freq.ptr());
        let (h, kh, d) = (heads as i32, kv_heads as i32, i32_of("head_dim", head_dim)?);
        let neox: i32 = match layout {
            RopeLayout::Normal => 0,
            RopeLayout::Neox => 1,
        };
        let grid = (t as u32, (heads + kv_heads) as u32, 1);
        let variant = Variant::plain("rope.cu", &["rope", "rope_kv_write"]);
        let Some((cache, layer, v)) = kv else {
            #[rustfmt::skip]
            let args = &mut [arg(&xp), arg(&kp), arg(&fp), arg(&pos), arg(&h), arg(&kh), arg(&d), arg(&scale), arg(&neox)];
            return self.launch(&variant, "rope", grid, (threads, 1, 1), 0, args);
        };
        if k.is_none() || kv_heads != cache.kv_heads || head_dim != cache.head_dim {
            return Err(self.err(format!(
                "rope_kv_write: {kv_heads} kv heads of {head_dim} for a cache of {} of {}",
                cache.kv_heads, cache.head_dim
            )));
        }
        self.check_layer(cache, layer)?;
        self.need("rope_kv_write v", v, t * kv_heads * head_dim)?;
        self.check_positions(cache, t)?;
        let off = cache.layer_offset(layer);
        let (vp, kc, vc, mc) = (
            v.ptr(),
            cache.k.ptr() + off,
            cache.v.ptr() + off,
            cache.max_ctx as i32,
        );
        #[rustfmt::skip]
        let args = &mut [arg(&xp), arg(&kp), arg(&vp), arg(&fp), arg(&pos), arg(&h), arg(&kh), arg(&d), arg(&scale), arg(&neox), arg(&kc), arg(&vc), arg(&mc)];
        self.launch(&variant, "rope_kv_write", grid, (threads, 1, 1), 0, args)
    }

    pub(super) fn check_layer(&self, cache: &CudaCache, layer: usize) -> Result<()> {
        if layer >= cache.layers {
            return Err(self.err(format!("layer {layer} of a {}-layer cache", cache.layers)));
        }
        Ok(())
    }

    /// Host-side position check for a direct (not replayed) launch.
    pub(super) fn check_positions(&self, cache: &CudaCache, t: usize) -> Result<()> {
        let s = self.lock(&self.step)?;
        if let Some(&p) = s.host_pos[..t]
            .iter()
            .find(|&&p| p as usize >= cache.max_ctx)
        {
            return Err(Error::Input(format!(
                "position {p} is past the KV cache ({} positions)",
                cache.max_ctx
            )));
        }
        Ok(())
    }

    pub(crate) fn op_kv_write(
        &self,
        cache: &CudaCache,
        layer: usize,
        k: &CudaBuf,
        v: &CudaBuf,
        t: usize,
    ) -> Result<()> {
        if t == 0 {
            return Ok(());
        }
        self.check_layer(cache, layer)?;
        let width = cache.kv_heads * cache.head_dim;
        self.need("kv_write k", k, t * width)?;
        self.need("kv_write v", v, t * width)?;
        self.step_rows("kv_write", t)?;
        self.check_positions(cache, t)?;
        let (_, pos) = self.step_ptrs()?;
        let off = cache.layer_offset(layer);
        let (kp, vp, kc, vc) = (k.ptr(), v.ptr(), cache.k.ptr() + off, cache.v.ptr() + off);
        let (h, d, mc) = (
            cache.kv_heads as i32,
            cache.head_dim as i32,
            cache.max_ctx as i32,
        );
        let threads = cache.head_dim.next_multiple_of(32).min(256) as u32;
        self.launch(
            &Variant::plain("kv_write.cu", &["kv_write"]),
            "kv_write",
            (t as u32, cache.kv_heads as u32, 1),
            (threads, 1, 1),
            0,
            &mut [
                arg(&kp),
                arg(&vp),
                arg(&kc),
                arg(&vc),
                arg(&pos),
                arg(&h),
                arg(&d),
                arg(&mc),
            ],
        )
    }

    pub(crate) fn op_swiglu(
        &self,
        gate: &CudaBuf,
        up: &CudaBuf,
        out: &CudaBuf,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.need("swiglu gate", gate, n)?;
        self.need("swiglu up", up, n)?;
        self.need("swiglu out", out, n)?;
        let (g, u, o, nn) = (gate.ptr(), up.ptr(), out.ptr(), n as i64);
        self.launch(
            &Variant::plain("swiglu.cu", &["swiglu"]),
            "swiglu",
            (self.blocks_for(n.div_ceil(4), 256), 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&g), arg(&u), arg(&o), arg(&nn)],
        )
    }

    /// `len` floats at device address `src`, through the pinned readback buffer, once
    /// everything enqueued has run. Refused while recording (a graph cannot read back).
    ///
    /// # Safety
    /// `src` must hold `len` floats.
    pub(crate) unsafe fn read_back(&self, src: u64, len: usize) -> Result<Vec<f32>> {
        if self.is_capturing() {
            return Err(self.err("read inside a recorded step (a graph cannot read back)"));
        }
        self.bind()?;
        let mut rb = self.lock(&self.readback)?;
        let host = rb.floats(len)?;
        // SAFETY: the source holds len floats (the caller's promise), the pinned destination
        // as many; the copy completes before the synchronize below returns.
        unsafe { dr::memcpy_dtoh_async(host, src, self.stream.cu_stream()) }
            .map_err(|e| cuda_err("copy from device", e))?;
        self.synchronize()?;
        Ok(host.to_vec())
    }

    /// The index of the largest of x[0, n) (kernels/argmax.cu), read back.
    pub(crate) fn op_argmax(&self, x: &CudaBuf, n: usize) -> Result<u32> {
        self.need("argmax x", x, n)?;
        if self.is_capturing() {
            return Err(self.err("argmax inside a recorded step (a graph cannot read back)"));
        }
        if n == 0 {
            return Err(self.err("argmax of nothing"));
        }
        let (xp, ni) = (x.ptr(), i32_of("argmax length", n)?);
        let out = self.lock(&self.step)?.argmax.ptr();
        self.launch(
            &Variant::plain("argmax.cu", &["argmax"]),
            "argmax",
            (1, 1, 1),
            (1024, 1, 1),
            0,
            &mut [arg(&xp), arg(&ni), arg(&out)],
        )?;
        // SAFETY: the result slot holds 4 bytes (one u32, read as an f32's bits).
        Ok(unsafe { self.read_back(out, 1) }?[0].to_bits())
    }

    pub(crate) fn op_add(&self, x: &CudaBuf, y: &CudaBuf, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.need("add x", x, n)?;
        self.need("add y", y, n)?;
        let (xp, yp, nn) = (x.ptr(), y.ptr(), n as i64);
        self.launch(
            &Variant::plain("add.cu", &["add"]),
            "add",
            (self.blocks_for(n.div_ceil(4), 256), 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&xp), arg(&yp), arg(&nn)],
        )
    }

    /// A device-to-device copy on the stream (a memcpy node when recorded).
    pub(crate) fn op_copy(
        &self,
        src: &CudaBuf,
        src_off: usize,
        dst: &CudaBuf,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.need("copy src", src, src_off + n)?;
        self.need("copy dst", dst, dst_off + n)?;
        self.bind()?;
        // SAFETY: both ranges lie inside their buffers (checked above).
        unsafe {
            dr::memcpy_dtod_async(
                dst.ptr() + 4 * dst_off as u64,
                src.ptr() + 4 * src_off as u64,
                4 * n,
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| cuda_err("copy", e))
    }
}
