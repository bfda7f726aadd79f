//! The decode product, matmul_gemv (kernels/matmul.cu): its launch shape (warps, x in shared
//! memory or not, a persistent grid) and its launch.

use super::matmul::{Checked, Fuse, MAX_T};
use super::nvrtc::{self, Variant};
use super::ops::{arg, SMEM_DEFAULT};
use super::{Cuda, CudaBuf};
use crate::error::Result;

/// Warps per block of matmul_gemv (WARPS in matmul.cu) and rows per warp (NR).
const GEMV_WARPS: usize = 8;
pub(super) const GEMV_ROWS: usize = 2;

/// One weight of a (grouped) matmul_gemv launch: its first row, its output, its rows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seg {
    pub(super) base: u64,
    pub(super) out: u64,
    pub(super) rows: usize,
}

/// Bytes of a row's chunk slot of a GGUF matmul_gemv launch (of two formats with `second`).
fn slot_row(c: &Checked, second: Option<&Checked>) -> usize {
    match second {
        Some(c2) => nvrtc::gemv_slot_row_mixed(c.dtype, c2.dtype),
        None => nvrtc::gemv_slot_row(c.dtype),
    }
}

impl Cuda {
    /// matmul_gemv over chunks of MAX_T tokens (`c` gives dtype and columns; `segs` the
    /// weights and outputs, at most three; `second` the format of the third, when it differs).
    pub(super) fn gemv_chunked(
        &self,
        x: &CudaBuf,
        c: &Checked,
        second: Option<&Checked>,
        segs: &[Seg],
        t: usize,
        fuse: Fuse,
    ) -> Result<()> {
        let mut t0 = 0;
        while t0 < t {
            let n = MAX_T.min(t - t0);
            let xp = x.ptr() + (4 * t0 * c.cols) as u64;
            let moved: Vec<Seg> = segs
                .iter()
                .map(|s| Seg {
                    out: s.out + (4 * t0 * s.rows) as u64,
                    ..*s
                })
                .collect();
            self.gemv(xp, c, second, &moved, n, fuse)?;
            t0 += n;
        }
        Ok(())
    }

    /// Warps per block of a matmul_gemv launch over `rows` rows of `c`'s format, whether a
    /// GGUF launch holds x in shared memory (else matmul_gemv_xg), and its dynamic shared
    /// memory in bytes.
    pub(super) fn gemv_shape(
        &self,
        c: &Checked,
        second: Option<&Checked>,
        rows: usize,
        t: usize,
    ) -> (usize, bool, usize) {
        let pairs = rows.div_ceil(GEMV_ROWS);
        // Eight warps per block (GGUF: gemv_warps), fewer when that would leave SMs idle (the
        // k and v projections of GQA models have only a few hundred rows): plain types want
        // two blocks per SM; GGUF blocks one, since every block stages all of x.
        let sms = self.info.multiprocessors as usize;
        let quantized = c.dtype.is_quantized();
        let want = if quantized { sms } else { 2 * sms };
        let mut warps = if quantized && t == 1 {
            nvrtc::gemv_warps()
        } else if quantized {
            // matmul_gemv_t8's launch bound (WARPS_T8): its f32 products need ~160 registers.
            nvrtc::gemv_warps().min(8)
        } else {
            GEMV_WARPS
        };
        while warps > 2 && pairs.div_ceil(warps) < want {
            warps /= 2;
        }
        if !quantized {
            return (warps, false, 0);
        }
        // GGUF blocks: chunk slots per warp, then x in shared memory when it fits (XU = 36
        // floats per 32 columns, XD = 20 as one token's digits), else matmul_gemv_xg; 16
        // bytes of slack for the decoders' word loads past a block's end, and 128 for the
        // fused norm's sum. The kernel checks this layout against what it is given.
        let slot_row = slot_row(c, second);
        let slots = nvrtc::gemv_slots();
        let per_unit = if t == 1 && nvrtc::gemv_digits(c.dtype) {
            20
        } else {
            36
        };
        let smem_x = t * (c.cols / 32) * per_unit * 4 + 128;
        let optin = self.info.smem_optin as usize;
        // Fewer warps per block before giving up on x in shared memory (matmul_gemv_xg
        // reads x through L1 in strided pieces, several times slower).
        while warps > 2 && warps * slots * GEMV_ROWS * slot_row + 16 + smem_x > optin {
            warps /= 2;
        }
        let smem_w = warps * slots * GEMV_ROWS * slot_row + 16;
        if smem_w + smem_x <= optin {
            (warps, true, smem_w + smem_x)
        } else {
            (warps, false, smem_w)
        }
    }

    /// One matmul_gemv launch for t <= MAX_T tokens over up to three weights, with `fuse`;
    /// with `second`, the third weight is of that format (Variant::matmul_mixed).
    fn gemv(
        &self,
        xp: u64,
        c: &Checked,
        second: Option<&Checked>,
        segs: &[Seg],
        t: usize,
        fuse: Fuse,
    ) -> Result<()> {
        let (first, last) = (segs[0], segs[segs.len() - 1]);
        let seg = |i: usize| segs.get(i).copied().unwrap_or(last);
        let (s0, s1, s2) = (first, seg(1), seg(2));
        let rows: usize = segs.iter().map(|s| s.rows).sum();
        let e0 = s0.rows;
        let e1 = if segs.len() > 1 { e0 + s1.rows } else { rows };
        let i32_of = |v: usize| i32::try_from(v).map_err(|_| self.err("matmul: too many rows"));
        let (e0, e1, ri, ci, ti) = (
            i32_of(e0)?,
            if fuse.swiglu { -1 } else { i32_of(e1)? },
            i32_of(rows)?,
            i32_of(c.cols)?,
            t as i32,
        );
        let (nrm, nrm_dt, eps) = fuse.norm.unwrap_or((0, 0, 0.0));
        let flags = i32::from(fuse.add) | (i32::from(fuse.norm.is_some()) << 1);
        let rb = c.row_bytes as i64;
        let v = match second {
            Some(c2) => Variant::matmul_mixed(c.dtype, c2.dtype)?,
            None => Variant::matmul(c.dtype, c.scalar)?,
        };
        let rb2 = second.map_or(rb, |c2| c2.row_bytes as i64);
        let (warps, xs, smem) = self.gemv_shape(c, second, rows, t);
        if fuse.norm.is_some() && (!xs || t != 1) {
            return Err(
                self.err("matmul_gemv: a fused norm needs one token and x in shared memory")
            );
        }
        let threads = (warps * 32) as u32;
        let mut args = vec![
            arg(&s0.base),
            arg(&s1.base),
            arg(&s2.base),
            arg(&rb),
            arg(&xp),
            arg(&s0.out),
            arg(&s1.out),
            arg(&s2.out),
            arg(&e0),
            arg(&e1),
            arg(&ri),
            arg(&ci),
            arg(&ti),
            arg(&nrm),
            arg(&nrm_dt),
            arg(&eps),
            arg(&flags),
        ];
        let pairs = rows.div_ceil(GEMV_ROWS);
        let blocks =
            u32::try_from(pairs.div_ceil(warps)).map_err(|_| self.err("matmul: too many rows"))?;
        let entry = if t == 1 {
            "matmul_gemv"
        } else {
            "matmul_gemv_t8"
        };
        if !c.dtype.is_quantized() {
            return self.launch(&v, entry, (blocks, 1, 1), (threads, 1, 1), 0, &mut args);
        }
        let entry = if xs { entry } else { "matmul_gemv_xg" };
        let optin = self.info.smem_optin as usize;
        if smem > optin.max(SMEM_DEFAULT as usize) {
            return Err(self.err(format!(
                "matmul_gemv of {} needs {smem} bytes of shared memory; {} allows {optin}",
                c.dtype, self.info.name
            )));
        }
        // A persistent grid of as many blocks as fit.
        let per_sm = self.blocks_per_sm(&v, entry, threads, smem as u32)?;
        let fit = self.info.multiprocessors as usize * per_sm as usize;
        let blocks = blocks.min(fit as u32).max(1);
        let sr = slot_row(c, second) as i32;
        args.push(arg(&sr));
        args.push(arg(&rb2));
        self.launch(
            &v,
            entry,
            (blocks, 1, 1),
            (threads, 1, 1),
            smem as u32,
            &mut args,
        )
    }
}
