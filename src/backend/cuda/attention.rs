//! Host side of attention: the KV cache (with the scratch of split decode attention) and the
//! launches of kernels/attention.cu (f32 `attention`, tensor-core `attention_mma` for
//! prefill, `attention_decode` for decode rows, `attention_combine`).

use super::nvrtc::{self, Variant};
use super::ops::{arg, i32_of};
use super::{cuda_err, Cuda, CudaBuf, CudaCache};
use crate::backend::RopeLayout;
use crate::error::Result;
use cudarc::driver::result as dr;

/// Which kernel computes attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPath {
    /// Split f32 kernel for decode rows, tensor cores (attention_mma) for prefill where the
    /// head size has a variant, the f32 kernel otherwise.
    Auto,
    /// The f32 kernel (`attention`), split or not as Auto would.
    Simt,
}

/// Rows a decode step may have and still use split attention (its scratch is sized so).
pub const SPLIT_ROWS: usize = 4;
/// Query heads per kv head the split scratch is sized for.
pub const SPLIT_GROUP: usize = 16;
/// Keys per tile in attention.cu (BK) and the largest head_dim it takes (MAX_D).
const ATTN_BK: usize = 32;
pub const ATTN_MAX_D: usize = 256;
/// Query rows per block of attention_mma (BR in attention.cu).
const MMA_ROWS: usize = 64;
/// Queries (rows x query heads of one kv head) attention_decode holds (NQ_MAX).
const DECODE_QUERIES: usize = 8;

/// Key slices of split decode attention: two blocks per SM over the kv heads, from the device
/// alone, so the grid is the same at every depth and for every cache length (a 32k cache
/// launches no more blocks than a 4k one), and every slice is computed on the device from the
/// step's positions. At depth d a slice has about d / splits keys.
/// LAMINA_CUDA_DECODE_BLOCKS=1..4 sets the blocks per SM, for tuning (read once).
pub fn decode_splits(sms: usize, kv_heads: usize) -> usize {
    static PER_SM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let per_sm = *PER_SM.get_or_init(|| {
        std::env::var("LAMINA_CUDA_DECODE_BLOCKS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|b| (1..=4).contains(b))
            .unwrap_or(2)
    });
    (per_sm * sms).div_ceil(kv_heads.max(1)).clamp(2, 64)
}

/// Fewest keys per slice of attention_decode (min_keys in attention.cu): a context shorter
/// than this many keys is one slice per kv head, merged by no one. 128 by default, two 16-key
/// steps for each of a block's 4 warps (H100, rope_attention at depth 128: 5.9 us a layer
/// against 6.7 with 64, the same from depth 640 on); LAMINA_CUDA_SPLIT_KEYS overrides, for
/// tuning (read once).
pub fn split_keys() -> i32 {
    static KEYS: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *KEYS.get_or_init(|| {
        std::env::var("LAMINA_CUDA_SPLIT_KEYS")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|k| (1..=1 << 20).contains(k))
            .unwrap_or(128)
    })
}

impl Cuda {
    pub(crate) fn new_cache(
        &self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_ctx: usize,
    ) -> Result<CudaCache> {
        if layers == 0 || kv_heads == 0 || head_dim == 0 || max_ctx == 0 {
            return Err(self.err("KV cache with a zero dimension"));
        }
        if head_dim > ATTN_MAX_D {
            return Err(self.err(format!(
                "head_dim {head_dim} > {ATTN_MAX_D}, the attention kernel's limit"
            )));
        }
        i32_of("max_ctx", max_ctx)?;
        let bytes = [layers, kv_heads, max_ctx, head_dim, 2]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.err("KV cache size overflows"))?;
        let nsplit = decode_splits(self.info.multiprocessors as usize, kv_heads);
        // A slice's (o, m, l): head_dim + 2 floats in the f32 kernel's scratch, head_dim + 4
        // in attention_decode's (PSTR: o 16-byte aligned).
        let part_len = SPLIT_ROWS * kv_heads * SPLIT_GROUP * nsplit * (head_dim + 4);
        let k = self.dev_mem(bytes)?;
        let v = self.dev_mem(bytes)?;
        let part = self.dev_mem(part_len * 4)?;
        let done = self.dev_mem(kv_heads * 4)?;
        self.bind()?;
        // Zeroed so that nothing a kernel might read is ever uninitialized.
        // SAFETY: the allocations hold `bytes` and `kv_heads * 4` bytes.
        unsafe {
            dr::memset_d8_async(done.ptr(), 0, kv_heads * 4, self.stream.cu_stream())
                .map_err(|e| cuda_err("clearing the KV cache", e))?;
            dr::memset_d8_async(k.ptr(), 0, bytes, self.stream.cu_stream())
                .map_err(|e| cuda_err("clearing the KV cache", e))?;
            dr::memset_d8_async(v.ptr(), 0, bytes, self.stream.cu_stream())
                .map_err(|e| cuda_err("clearing the KV cache", e))?;
        }
        let mut limit = self.lock(&self.ctx_max)?;
        *limit = Some(limit.map_or(max_ctx, |l| l.max(max_ctx)));
        Ok(CudaCache {
            k,
            v,
            layers,
            kv_heads,
            head_dim,
            max_ctx,
            nsplit,
            part,
            part_len,
            done,
        })
    }

    /// Checks an attention step's shapes and buffers; the query heads per kv head.
    fn attention_checks(
        &self,
        q: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        heads: usize,
    ) -> Result<usize> {
        self.check_layer(cache, layer)?;
        let (kvh, d) = (cache.kv_heads, cache.head_dim);
        if heads == 0 || !heads.is_multiple_of(kvh) {
            return Err(self.err(format!(
                "attention: {heads} query heads over {kvh} kv heads"
            )));
        }
        let group = heads / kvh;
        if group > 32 {
            return Err(self.err(format!(
                "attention: {group} query heads per kv head (at most 32)"
            )));
        }
        self.need("attention q", q, t * heads * d)?;
        self.need("attention out", out, t * heads * d)?;
        self.step_rows("attention", t)?;
        self.check_positions(cache, t)?;
        Ok(group)
    }

    /// Whether `t` rows split over the keys (the f32 kernel's slices or attention_decode's:
    /// the scratch holds them).
    fn splits(&self, cache: &CudaCache, t: usize, heads: usize) -> bool {
        let group = heads / cache.kv_heads.max(1);
        cache.nsplit > 1
            && t <= SPLIT_ROWS
            && group <= SPLIT_GROUP
            && group * t <= 32
            && t * heads * cache.nsplit * (cache.head_dim + 4) <= cache.part_len
    }

    /// Whether `t` rows take attention_decode (for one row, rope_attention too).
    fn decodes(&self, cache: &CudaCache, t: usize, heads: usize, path: AttnPath) -> bool {
        let group = heads / cache.kv_heads.max(1);
        path == AttnPath::Auto
            && !self.f32_attention
            && nvrtc::MMA_HEAD_DIMS.contains(&cache.head_dim)
            && self.splits(cache, t, heads)
            && group * t <= DECODE_QUERIES
    }

    /// attention_decode, or rope_attention when `rope` gives the step's k, v, inv_freq, cos/sin
    /// factor and layout (the kernel rotates q and k itself and stores k and v into the cache).
    #[allow(clippy::too_many_arguments)]
    fn launch_decode(
        &self,
        q: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        heads: usize,
        scale: f32,
        rope: Option<(&CudaBuf, &CudaBuf, &CudaBuf, f32, RopeLayout)>,
    ) -> Result<()> {
        let (_, pos) = self.step_ptrs()?;
        let off = cache.layer_offset(layer);
        let (qp, kc, vc, op, pp, dp) = (
            q.ptr(),
            cache.k.ptr() + off,
            cache.v.ptr() + off,
            out.ptr(),
            cache.part.ptr(),
            cache.done.ptr(),
        );
        let (ti, hi, kvi, mc) = (
            i32_of("t", t)?,
            heads as i32,
            cache.kv_heads as i32,
            cache.max_ctx as i32,
        );
        let (nsi, mk) = (cache.nsplit as i32, split_keys());
        let (name, kp, vp, fp, rs, neox) = match rope {
            None => ("attention_decode", 0u64, 0u64, 0u64, 0f32, 0i32),
            Some((k, v, f, rs, layout)) => {
                let neox = i32::from(layout == RopeLayout::Neox);
                ("rope_attention", k.ptr(), v.ptr(), f.ptr(), rs, neox)
            }
        };
        // The kernel merges the slices itself (its last block per kv head).
        self.launch(
            &Variant::attention_mma(cache.head_dim)?,
            name,
            ((cache.nsplit * cache.kv_heads) as u32, 1, 1),
            ((32 * nvrtc::decode_warps()) as u32, 1, 1),
            0,
            &mut [
                arg(&qp),
                arg(&kp),
                arg(&vp),
                arg(&fp),
                arg(&rs),
                arg(&neox),
                arg(&kc),
                arg(&vc),
                arg(&pos),
                arg(&pp),
                arg(&ti),
                arg(&hi),
                arg(&kvi),
                arg(&mc),
                arg(&nsi),
                arg(&scale),
                arg(&op),
                arg(&dp),
                arg(&mk),
            ],
        )
    }

    /// rope_kv_write then attention of a decode row in one launch (rope_attention) where
    /// attention_decode would run; the two ops otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn op_rope_attention(
        &self,
        (q, k, v): (&CudaBuf, &CudaBuf, &CudaBuf),
        inv_freq: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        (heads, kv_heads): (usize, usize),
        head_dim: usize,
        (rope_scale, layout): (f32, RopeLayout),
        scale: f32,
    ) -> Result<()> {
        let fits = kv_heads == cache.kv_heads && head_dim == cache.head_dim;
        if t != 1 || !fits || !self.decodes(cache, t, heads, AttnPath::Auto) {
            let kv = Some((cache, layer, v));
            let hs = (heads, kv_heads);
            self.op_rope(
                q,
                Some(k),
                inv_freq,
                t,
                hs,
                head_dim,
                rope_scale,
                layout,
                kv,
            )?;
            return self.op_attention(q, cache, layer, out, t, heads, scale, AttnPath::Auto);
        }
        self.attention_checks(q, cache, layer, out, t, heads)?;
        self.need("rope_attention k", k, kv_heads * head_dim)?;
        self.need("rope_attention v", v, kv_heads * head_dim)?;
        self.need("rope_attention inv_freq", inv_freq, head_dim / 2)?;
        let rope = Some((k, v, inv_freq, rope_scale, layout));
        self.launch_decode(q, cache, layer, out, t, heads, scale, rope)
    }

    /// The attention op; `path` forces the f32 kernel (tests compare it with the others).
    #[allow(clippy::too_many_arguments)]
    pub fn op_attention(
        &self,
        q: &CudaBuf,
        cache: &CudaCache,
        layer: usize,
        out: &CudaBuf,
        t: usize,
        heads: usize,
        scale: f32,
        path: AttnPath,
    ) -> Result<()> {
        if t == 0 {
            return Ok(());
        }
        let group = self.attention_checks(q, cache, layer, out, t, heads)?;
        if self.decodes(cache, t, heads, path) {
            return self.launch_decode(q, cache, layer, out, t, heads, scale, None);
        }
        let (kvh, d) = (cache.kv_heads, cache.head_dim);
        let (_, pos) = self.step_ptrs()?;
        let split = self.splits(cache, t, heads);
        let off = cache.layer_offset(layer);
        let (qp, kc, vc, op, pp) = (
            q.ptr(),
            cache.k.ptr() + off,
            cache.v.ptr() + off,
            out.ptr(),
            cache.part.ptr(),
        );
        let (ti, hi, kvi, di, mc) = (
            i32_of("t", t)?,
            heads as i32,
            kvh as i32,
            d as i32,
            cache.max_ctx as i32,
        );
        let mma = path == AttnPath::Auto && !self.f32_attention;
        let mma_dim = nvrtc::MMA_HEAD_DIMS.contains(&d);
        if !split && mma && mma_dim {
            if heads > 65535 {
                return Err(self.err(format!("attention: {heads} heads")));
            }
            let tiles = u32::try_from(t.div_ceil(MMA_ROWS))
                .map_err(|_| self.err("attention grid too large"))?;
            return self.launch(
                &Variant::attention_mma(d)?,
                "attention_mma",
                (tiles, heads as u32, 1),
                (128, 1, 1),
                0,
                &mut [
                    arg(&qp),
                    arg(&kc),
                    arg(&vc),
                    arg(&pos),
                    arg(&op),
                    arg(&ti),
                    arg(&hi),
                    arg(&kvi),
                    arg(&mc),
                    arg(&scale),
                ],
            );
        }
        let (rpb, nsplit, tiles) = if split {
            (t, cache.nsplit, 1)
        } else {
            let rpb = (16 / group).max(1);
            (rpb, 1, t.div_ceil(rpb))
        };
        let warps = group * rpb;
        let smem = (ATTN_BK * (d + 1) + ATTN_BK * d + warps * d) * 4;
        let (rpbi, nsi) = (rpb as i32, nsplit as i32);
        let v = Variant::attention();
        let grid_x =
            u32::try_from(tiles * nsplit).map_err(|_| self.err("attention grid too large"))?;
        self.launch(
            &v,
            "attention",
            (grid_x, kvh as u32, 1),
            ((warps * 32) as u32, 1, 1),
            smem as u32,
            &mut [
                arg(&qp),
                arg(&kc),
                arg(&vc),
                arg(&pos),
                arg(&op),
                arg(&pp),
                arg(&ti),
                arg(&hi),
                arg(&kvi),
                arg(&di),
                arg(&mc),
                arg(&rpbi),
                arg(&nsi),
                arg(&scale),
            ],
        )?;
        if !split {
            return Ok(());
        }
        self.combine(pp, op, t, heads, d, nsplit)
    }

    /// attention_combine: merges the key slices in `part` into `out`.
    fn combine(
        &self,
        pp: u64,
        op: u64,
        t: usize,
        heads: usize,
        d: usize,
        nsplit: usize,
    ) -> Result<()> {
        if heads > 65535 {
            return Err(self.err(format!("attention: {heads} heads")));
        }
        let (hi, di, nsi) = (heads as i32, d as i32, nsplit as i32);
        self.launch(
            &Variant::attention(),
            "attention_combine",
            (t as u32, heads as u32, 1),
            (128, 1, 1),
            0,
            &mut [arg(&pp), arg(&op), arg(&hi), arg(&di), arg(&nsi)],
        )
    }
}
