//! cuBLASLt for the prefill products: out[t, m] (f32) = x[t, k] . W[m, k]^T with W and x in
//! f16, bf16 or f32, accumulation and output in f32; or both int8 with int32 accumulation
//! and output (W8A8, scaled afterwards by matmul_i8_scale).
//!
//! cuBLASLt is column-major. Our row-major W [m, k] is a column-major k x m matrix (ld k),
//! x [t, k] is k x t (ld k) and out [t, m] is m x t (ld = the output's row stride). So
//! D (m x t) = op(A) . B with A = W transposed (CUBLAS_OP_T), B = x, as cuBLAS sees it.

use super::{cuda_err, DevMem};
use crate::error::{Error, Result};
use cudarc::cublaslt::sys as lt;
use cudarc::driver::{CudaContext, CudaStream};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Element type of an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F16,
    BF16,
    /// int8 operands: int32 accumulation and output.
    I8,
}

impl Elem {
    fn cuda(self) -> lt::cudaDataType {
        match self {
            Elem::F32 => lt::cudaDataType::CUDA_R_32F,
            Elem::F16 => lt::cudaDataType::CUDA_R_16F,
            Elem::BF16 => lt::cudaDataType::CUDA_R_16BF,
            Elem::I8 => lt::cudaDataType::CUDA_R_8I,
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::BF16 => 2,
            Elem::I8 => 1,
        }
    }
}

/// One product. Pointers are device addresses.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Output features (rows of W in this call).
    pub m: usize,
    /// Tokens.
    pub n: usize,
    /// Input features.
    pub k: usize,
    pub a: u64,
    pub a_elem: Elem,
    pub b: u64,
    pub b_elem: Elem,
    /// Output (f32; int32 for int8 operands), row stride `ldd` elements.
    pub d: u64,
    pub ldd: usize,
    /// d += the product (beta 1) instead of d = the product.
    pub accumulate: bool,
}

/// The largest power of two (up to 256) dividing the address: cuBLASLt assumes 256-byte
/// aligned operands unless told otherwise, and picks kernels by it.
fn alignment(p: u64) -> u32 {
    if p == 0 {
        return 256;
    }
    (1u64 << p.trailing_zeros().min(8)) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    m: usize,
    n: usize,
    k: usize,
    a_elem: Elem,
    b_elem: Elem,
    ldd: usize,
    align: [u32; 3],
}

/// Descriptors and the algorithm chosen for one shape, kept for reuse.
struct Plan {
    desc: lt::cublasLtMatmulDesc_t,
    a: lt::cublasLtMatrixLayout_t,
    b: lt::cublasLtMatrixLayout_t,
    d: lt::cublasLtMatrixLayout_t,
    algo: lt::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each handle was created once by Plan::new and is destroyed once here.
        unsafe {
            lt::cublasLtMatrixLayoutDestroy(self.a);
            lt::cublasLtMatrixLayoutDestroy(self.b);
            lt::cublasLtMatrixLayoutDestroy(self.d);
            lt::cublasLtMatmulDescDestroy(self.desc);
        }
    }
}

fn check(what: &str, s: lt::cublasStatus_t) -> Result<()> {
    if s == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::backend("cuda", format!("cuBLASLt {what}: {s:?}")))
    }
}

/// A cuBLASLt handle, its workspace and the plans made so far.
pub struct Blas {
    handle: lt::cublasLtHandle_t,
    workspace: DevMem,
    stream: Arc<CudaStream>,
    plans: HashMap<Key, Plan>,
}

// SAFETY: the handle is used only under the backend's Mutex, from one thread at a time.
unsafe impl Send for Blas {}

impl Drop for Blas {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in Blas::new, destroyed once.
        unsafe { lt::cublasLtDestroy(self.handle) };
    }
}

/// Plans kept before the map is emptied (one per distinct prompt length and shape).
const MAX_PLANS: usize = 512;

impl Blas {
    pub fn new(
        ctx: &Arc<CudaContext>,
        live: &Arc<AtomicU64>,
        stream: &Arc<CudaStream>,
        cc_major: u32,
    ) -> Result<Blas> {
        ctx.bind_to_thread()
            .map_err(|e| cuda_err("binding the context", e))?;
        // NVIDIA's recommendation: 32 MiB of workspace on Hopper, 4 MiB before.
        let ws = if cc_major >= 9 { 32 << 20 } else { 4 << 20 };
        let workspace = DevMem::new(ctx, live, ws)?;
        let mut handle: lt::cublasLtHandle_t = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check("create", unsafe { lt::cublasLtCreate(&mut handle) })?;
        Ok(Blas {
            handle,
            workspace,
            stream: stream.clone(),
            plans: HashMap::new(),
        })
    }

    fn plan(&mut self, g: &Gemm) -> Result<&Plan> {
        let key = Key {
            m: g.m,
            n: g.n,
            k: g.k,
            a_elem: g.a_elem,
            b_elem: g.b_elem,
            ldd: g.ldd,
            align: [alignment(g.a), alignment(g.b), alignment(g.d)],
        };
        if !self.plans.contains_key(&key) {
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            let plan = self.make_plan(&key)?;
            self.plans.insert(key, plan);
        }
        Ok(&self.plans[&key])
    }

    fn make_plan(&self, key: &Key) -> Result<Plan> {
        let layout = |elem: Elem,
                      rows: usize,
                      cols: usize,
                      ld: usize|
         -> Result<lt::cublasLtMatrixLayout_t> {
            let mut l: lt::cublasLtMatrixLayout_t = std::ptr::null_mut();
            // SAFETY: valid out-pointer; sizes are plain numbers.
            check("layout", unsafe {
                lt::cublasLtMatrixLayoutCreate(
                    &mut l,
                    elem.cuda(),
                    rows as u64,
                    cols as u64,
                    ld as i64,
                )
            })?;
            Ok(l)
        };
        let int8 = key.a_elem == Elem::I8;
        let (compute, acc) = if int8 {
            (
                lt::cublasComputeType_t::CUBLAS_COMPUTE_32I,
                lt::cudaDataType::CUDA_R_32I,
            )
        } else {
            (
                lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                lt::cudaDataType::CUDA_R_32F,
            )
        };
        let mut desc: lt::cublasLtMatmulDesc_t = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check("matmul descriptor", unsafe {
            lt::cublasLtMatmulDescCreate(&mut desc, compute, acc)
        })?;
        // The plan owns every handle from here on, so an early return frees them.
        let mut plan = Plan {
            desc,
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            d: std::ptr::null_mut(),
            algo: lt::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        let (op_t, op_n): (i32, i32) = (1, 0); // CUBLAS_OP_T, CUBLAS_OP_N
                                               // SAFETY: attribute buffers are i32 as cuBLASLt documents for TRANSA/TRANSB.
        unsafe {
            check(
                "TRANSA",
                lt::cublasLtMatmulDescSetAttribute(
                    desc,
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    &op_t as *const i32 as *const c_void,
                    4,
                ),
            )?;
            check(
                "TRANSB",
                lt::cublasLtMatmulDescSetAttribute(
                    desc,
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                    &op_n as *const i32 as *const c_void,
                    4,
                ),
            )?;
        }
        plan.a = layout(key.a_elem, key.k, key.m, key.k)?;
        plan.b = layout(key.b_elem, key.k, key.n, key.k)?;
        let d_layout =
            |rows: usize, cols: usize, ld: usize| -> Result<lt::cublasLtMatrixLayout_t> {
                let mut l: lt::cublasLtMatrixLayout_t = std::ptr::null_mut();
                // SAFETY: valid out-pointer.
                check("layout", unsafe {
                    lt::cublasLtMatrixLayoutCreate(&mut l, acc, rows as u64, cols as u64, ld as i64)
                })?;
                Ok(l)
            };
        plan.d = d_layout(key.m, key.n, key.ldd)?;

        let mut pref: lt::cublasLtMatmulPreference_t = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check("preference", unsafe {
            lt::cublasLtMatmulPreferenceCreate(&mut pref)
        })?;
        let ws = self.workspace.bytes();
        let set_pref = |attr: lt::cublasLtMatmulPreferenceAttributes_t, v: &[u8]| {
            // SAFETY: buffers sized as the attribute requires (u64 workspace, u32 alignments).
            check("preference attribute", unsafe {
                lt::cublasLtMatmulPreferenceSetAttribute(
                    pref,
                    attr,
                    v.as_ptr() as *const c_void,
                    v.len(),
                )
            })
        };
        use lt::cublasLtMatmulPreferenceAttributes_t as P;
        let result = (|| {
            set_pref(
                P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &(ws as u64).to_ne_bytes(),
            )?;
            set_pref(
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                &key.align[0].to_ne_bytes(),
            )?;
            set_pref(
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                &key.align[1].to_ne_bytes(),
            )?;
            set_pref(
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                &key.align[2].to_ne_bytes(),
            )?;
            set_pref(
                P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                &key.align[2].to_ne_bytes(),
            )?;
            // SAFETY: a zeroed heuristic result is a valid out-buffer (plain data).
            let mut heur: lt::cublasLtMatmulHeuristicResult_t = unsafe { std::mem::zeroed() };
            let mut count = 0i32;
            // SAFETY: all descriptors are valid; one result requested, one buffer given.
            check("heuristic", unsafe {
                lt::cublasLtMatmulAlgoGetHeuristic(
                    self.handle,
                    desc,
                    plan.a,
                    plan.b,
                    plan.d,
                    plan.d,
                    pref,
                    1,
                    &mut heur,
                    &mut count,
                )
            })?;
            if count < 1 {
                return Err(Error::backend(
                    "cuda",
                    format!("cuBLASLt has no algorithm for {key:?}"),
                ));
            }
            check("heuristic state", heur.state)?;
            Ok(heur.algo)
        })();
        // SAFETY: created above, destroyed once.
        unsafe { lt::cublasLtMatmulPreferenceDestroy(pref) };
        plan.algo = result?;
        Ok(plan)
    }

    /// Enqueues the product on the backend's stream.
    pub fn gemm(&mut self, g: &Gemm) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.k == 0 {
            return Ok(());
        }
        let handle = self.handle;
        let ws = (self.workspace.ptr(), self.workspace.bytes());
        let stream = self.stream.cu_stream() as lt::cudaStream_t;
        let plan = self.plan(g)?;
        // alpha and beta have the scale type: int32 for int8 products, f32 otherwise.
        let b = u8::from(g.accumulate);
        let (alpha, beta): ([u8; 4], [u8; 4]) = if g.a_elem == Elem::I8 {
            (1i32.to_ne_bytes(), i32::from(b).to_ne_bytes())
        } else {
            (1f32.to_ne_bytes(), f32::from(b).to_ne_bytes())
        };
        // SAFETY: the caller checked that a, b and d hold the m x k, k x n and m x n (ld ldd)
        // matrices; the plan's descriptors describe exactly those.
        check("matmul", unsafe {
            lt::cublasLtMatmul(
                handle,
                plan.desc,
                alpha.as_ptr() as *const c_void,
                g.a as *const c_void,
                plan.a,
                g.b as *const c_void,
                plan.b,
                beta.as_ptr() as *const c_void,
                g.d as *const c_void,
                plan.d,
                g.d as *mut c_void,
                plan.d,
                &plan.algo,
                ws.0 as *mut c_void,
                ws.1,
                stream,
            )
        })
    }
}
