//! The Llama-family model on a backend: which tensors feed which op (checked against the
//! backend's support table before anything is uploaded), the upload, and the forward pass.
//! Llama, TinyLlama, SmolLM, Mistral, Qwen2 and Phi-3 differ only in the data read here.

use super::config::{Family, ModelConfig};
use crate::backend::{Backend, Op, WeightView};
use crate::error::{Error, Result};
use crate::weights::WeightStore;
use std::ops::Range;

/// A linear weight: a tensor, or a row range of a fused one, plus int8 scales if any.
#[derive(Clone, Debug)]
struct Lin {
    w: usize,
    rows: Range<usize>,
    cols: usize,
    scale: Option<usize>,
    zero: Option<usize>,
    bias: Option<usize>,
}

#[derive(Clone, Debug)]
struct Layer {
    attn_norm: usize,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    ffn_norm: usize,
    gate: Lin,
    up: Lin,
    down: Lin,
}

/// What a model needs from its weight file: each tensor once, with the ops that read it.
pub struct Plan {
    /// Canonical tensor names, in upload order.
    pub tensors: Vec<String>,
    /// (tensor index, op) for every op that reads a tensor's dtype.
    pub uses: Vec<(usize, Op)>,
    embd: usize,
    output_norm: usize,
    output: Lin,
    layers: Vec<Layer>,
}

impl Plan {
    pub fn new(cfg: &ModelConfig, store: &WeightStore) -> Result<Plan> {
        let mut p = Plan {
            tensors: vec![],
            uses: vec![],
            embd: 0,
            output_norm: 0,
            output: Lin {
                w: 0,
                rows: 0..0,
                cols: 0,
                scale: None,
                zero: None,
                bias: None,
            },
            layers: vec![],
        };
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (qd, kvd, ff) = (
            cfg.num_heads * hd,
            cfg.num_kv_heads * hd,
            cfg.intermediate_size,
        );
        p.embd = p.tensor(store, "token_embd.weight", Some(Op::Embedding))?;
        p.output_norm = p.tensor(store, "output_norm.weight", Some(Op::RmsNorm))?;
        p.output = if store.get("output.weight").is_some() {
            p.lin(store, "output", 0..cfg.vocab_size, h)?
        } else {
            p.lin(store, "token_embd", 0..cfg.vocab_size, h)?
        };
        for i in 0..cfg.num_layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            let attn_norm = p.tensor(store, &n("attn_norm.weight"), Some(Op::RmsNorm))?;
            let ffn_norm = p.tensor(store, &n("ffn_norm.weight"), Some(Op::RmsNorm))?;
            let (q, k, v) = if store.get(&n("attn_qkv.weight")).is_some() {
                let f = n("attn_qkv");
                (
                    p.lin(store, &f, 0..qd, h)?,
                    p.lin(store, &f, qd..qd + kvd, h)?,
                    p.lin(store, &f, qd + kvd..qd + 2 * kvd, h)?,
                )
            } else {
                (
                    p.lin(store, &n("attn_q"), 0..qd, h)?,
                    p.lin(store, &n("attn_k"), 0..kvd, h)?,
                    p.lin(store, &n("attn_v"), 0..kvd, h)?,
                )
            };
            // Phi-3 fuses gate and up, gate first (the loader names llama.cpp's fused
            // ffn_up of phi3 files ffn_gate_up too).
            let (gate, up) = if store.get(&n("ffn_gate_up.weight")).is_some() {
                let f = n("ffn_gate_up");
                (
                    p.lin(store, &f, 0..ff, h)?,
                    p.lin(store, &f, ff..2 * ff, h)?,
                )
            } else {
                (
                    p.lin(store, &n("ffn_gate"), 0..ff, h)?,
                    p.lin(store, &n("ffn_up"), 0..ff, h)?,
                )
            };
            let o = p.lin(store, &n("attn_output"), 0..h, qd)?;
            let down = p.lin(store, &n("ffn_down"), 0..h, ff)?;
            #[rustfmt::skip]
            p.layers.push(Layer { attn_norm, q, k, v, o, ffn_norm, gate, up, down });
        }
        Ok(p)
    }

    /// Index of a tensor (added once), recording the op that reads it.
    fn tensor(&mut self, store: &WeightStore, name: &str, op: Option<Op>) -> Result<usize> {
        store.require(name)?;
        let i = match self.tensors.iter().position(|t| t == name) {
            Some(i) => i,
            None => {
                self.tensors.push(name.to_string());
                self.tensors.len() - 1
            }
        };
        if let Some(op) = op {
            if !self.uses.contains(&(i, op)) {
                self.uses.push((i, op));
            }
        }
        Ok(i)
    }

    /// `base.weight` rows `rows`, with its bias and its int8 scale and zero point when the
    /// file has them.
    fn lin(
        &mut self,
        store: &WeightStore,
        base: &str,
        rows: Range<usize>,
        cols: usize,
    ) -> Result<Lin> {
        let name = format!("{base}.weight");
        let w = self.tensor(store, &name, Some(Op::Matmul))?;
        let t = store.require(&name)?;
        if t.cols() != cols || t.rows() < rows.end {
            return Err(Error::Model(format!(
                "tensor '{name}' has shape {:?}; expected at least {} rows of {cols}",
                t.shape, rows.end
            )));
        }
        let mut aux = |s: &str| -> Result<Option<usize>> {
            let n = format!("{base}.{s}");
            match store.get(&n) {
                Some(_) => Ok(Some(self.tensor(store, &n, None)?)),
                None => Ok(None),
            }
        };
        let scale = aux("weight_scale")?;
        let zero = aux("weight_zero_point")?;
        let bias = match store.get(&format!("{base}.bias")) {
            None => None,
            Some(_) if rows.len() != t.rows() => {
                return Err(Error::Model(format!(
                    "'{base}.bias' belongs to a fused weight; biases of fused weights are not \
                     supported"
                )))
            }
            Some(_) => Some(self.tensor(store, &format!("{base}.bias"), Some(Op::AddBias))?),
        };
        Ok(Lin {
            w,
            rows,
            cols,
            scale,
            zero,
            bias,
        })
    }

    /// Every (tensor, op) pair checked against the backend's table: the first tensor it
    /// cannot run stops the load with the standard message, before any upload.
    pub fn check<B: Backend>(&self, b: &B, store: &WeightStore) -> Result<()> {
        let table = b.support();
        for &(i, op) in &self.uses {
            let t = store.require(&self.tensors[i])?;
            table.check(b.name(), &b.device(), t, op)?;
        }
        Ok(())
    }

    /// Every problem, not just the first (for `inspect`).
    pub fn problems(
        &self,
        table: &crate::backend::SupportTable,
        store: &WeightStore,
    ) -> Vec<String> {
        self.uses
            .iter()
            .filter_map(|&(i, op)| {
                let t = store.get(&self.tensors[i])?;
                (!table.supports(op, t.dtype)).then(|| format!("{} ({}) for {op}", t.name, t.dtype))
            })
            .collect()
    }

    /// (tensor name, op) for every op that reads a tensor's dtype.
    pub fn tensor_ops(&self) -> Vec<(String, Op)> {
        self.uses
            .iter()
            .map(|&(i, op)| (self.tensors[i].clone(), op))
            .collect()
    }

    pub fn bytes(&self, store: &WeightStore) -> usize {
        self.tensors
            .iter()
            .filter_map(|n| store.get(n))
            .map(|t| t.len)
            .sum()
    }
}

/// A model whose weights are on a backend's device.
pub struct Model<B: Backend> {
    pub cfg: ModelConfig,
    weights: Vec<B::Weight>,
    plan: Plan,
    /// Bytes of all uploaded weights.
    pub weight_bytes: usize,
}

/// Activation buffers for steps of up to `max_t` tokens, allocated once so that a recorded
/// decode step (CUDA graph) always sees the same addresses.
pub struct Scratch<B: Backend> {
    pub max_t: usize,
    x: B::Buf,
    xn: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    att: B::Buf,
    y: B::Buf,
    g: B::Buf,
    u: B::Buf,
    last: B::Buf,
    /// Logits of the last row, or of every row when `forward` is asked for all.
    pub logits: B::Buf,
}

impl<B: Backend> Model<B> {
    /// Checks the whole model against the backend's support table, then uploads it.
    /// `progress` is called with (bytes done, bytes total) after each tensor.
    pub fn load(
        b: &B,
        cfg: ModelConfig,
        store: &WeightStore,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Model<B>> {
        let plan = Plan::new(&cfg, store)?;
        plan.check(b, store)?;
        let total = plan.bytes(store);
        let mut done = 0;
        let mut weights = Vec::with_capacity(plan.tensors.len());
        for name in &plan.tensors {
            let t = store.require(name)?;
            weights.push(b.upload_weight(t, store.bytes(t))?);
            done += t.len;
            progress(done, total);
        }
        Ok(Model {
            cfg,
            weights,
            plan,
            weight_bytes: total,
        })
    }

    pub fn scratch(&self, b: &B, max_t: usize, all_logits: bool) -> Result<Scratch<B>> {
        let c = &self.cfg;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let rows = if all_logits { max_t } else { 1 };
        Ok(Scratch {
            max_t,
            x: b.alloc(max_t * h)?,
            xn: b.alloc(max_t * h)?,
            q: b.alloc(max_t * c.num_heads * hd)?,
            k: b.alloc(max_t * c.num_kv_heads * hd)?,
            v: b.alloc(max_t * c.num_kv_heads * hd)?,
            att: b.alloc(max_t * c.num_heads * hd)?,
            y: b.alloc(max_t * h)?,
            g: b.alloc(max_t * c.intermediate_size)?,
            u: b.alloc(max_t * c.intermediate_size)?,
            last: b.alloc(h)?,
            logits: b.alloc(rows * c.vocab_size)?,
        })
    }

    fn view(&self, l: &Lin) -> WeightView<'_, B::Weight> {
        WeightView {
            w: &self.weights[l.w],
            row0: l.rows.start,
            rows: l.rows.len(),
            cols: l.cols,
            scale: l.scale.map(|i| &self.weights[i]),
            zero: l.zero.map(|i| &self.weights[i]),
        }
    }

    /// out = x . W^T (+ bias)
    fn linear(&self, b: &B, x: &B::Buf, l: &Lin, out: &B::Buf, t: usize) -> Result<()> {
        self.linears(b, x, &[l], &[out], t)
    }

    /// Several linears of the same input (one launch where the backend can), then biases.
    fn linears(&self, b: &B, x: &B::Buf, ls: &[&Lin], outs: &[&B::Buf], t: usize) -> Result<()> {
        let views: Vec<_> = ls.iter().map(|l| self.view(l)).collect();
        b.matmul_group(x, &views, outs, t)?;
        for (l, out) in ls.iter().zip(outs) {
            if let Some(i) = l.bias {
                b.add_bias(out, &self.weights[i], t, l.rows.len())?;
            }
        }
        Ok(())
    }

    /// rms_norm(x) (weight `norm`) times several linears (one launch where the backend can,
    /// with the norm inside it where the backend can), then biases.
    #[allow(clippy::too_many_arguments)]
    fn norm_linears(
        &self,
        b: &B,
        x: &B::Buf,
        norm: usize,
        xn: &B::Buf,
        ls: &[&Lin],
        outs: &[&B::Buf],
        t: usize,
    ) -> Result<()> {
        let views: Vec<_> = ls.iter().map(|l| self.view(l)).collect();
        let norm = (&self.weights[norm], self.cfg.rms_norm_eps);
        b.norm_matmul_group(x, norm, xn, &views, outs, t)?;
        for (l, out) in ls.iter().zip(outs) {
            if let Some(i) = l.bias {
                b.add_bias(out, &self.weights[i], t, l.rows.len())?;
            }
        }
        Ok(())
    }

    /// resid += x . W^T (+ bias), through y.
    fn linear_add(
        &self,
        b: &B,
        x: &B::Buf,
        l: &Lin,
        y: &B::Buf,
        resid: &B::Buf,
        t: usize,
    ) -> Result<()> {
        if l.bias.is_some() {
            self.linear(b, x, l, y, t)?;
            return b.add(resid, y, t * l.rows.len());
        }
        b.matmul_add(x, self.view(l), y, resid, t)
    }

    /// One step over the `t` tokens given to `b.set_step`: logits of the last row into
    /// `s.logits`, or of all rows when `all_logits` (the scratch must have room). `rope` is
    /// the inv_freq buffer and the cos/sin factor.
    pub fn forward(
        &self,
        b: &B,
        s: &Scratch<B>,
        cache: &B::Cache,
        rope: (&B::Buf, f32),
        t: usize,
        all_logits: bool,
    ) -> Result<()> {
        let (c, (inv_freq, rope_scale)) = (&self.cfg, rope);
        let (h, hd, nh, nkv, ff) = (
            c.hidden_size,
            c.head_dim,
            c.num_heads,
            c.num_kv_heads,
            c.intermediate_size,
        );
        let (w, eps) = (|i: usize| &self.weights[i], c.rms_norm_eps);
        // The residual stream x; each norm rides in the products that read it, and each
        // residual add in the product that ends its half of the layer, where the backend can.
        b.embedding(w(self.plan.embd), &s.x, t)?;
        for (i, l) in self.plan.layers.iter().enumerate() {
            let qkv = [&s.q, &s.k, &s.v];
            self.norm_linears(b, &s.x, l.attn_norm, &s.xn, &[&l.q, &l.k, &l.v], &qkv, t)?;
            let (heads, layout) = ((nh, nkv), c.rope_layout);
            let (qkv, rope, scale) = (
                (&s.q, &s.k, &s.v),
                (rope_scale, layout),
                1.0 / (hd as f32).sqrt(),
            );
            b.rope_attention(qkv, inv_freq, cache, i, &s.att, t, heads, hd, rope, scale)?;
            self.linear_add(b, &s.att, &l.o, &s.y, &s.x, t)?;
            if l.gate.bias.is_none() && l.up.bias.is_none() {
                let views = [self.view(&l.gate), self.view(&l.up)];
                let norm = (w(l.ffn_norm), eps);
                b.norm_matmul_swiglu(&s.x, norm, &s.xn, views, [&s.g, &s.u], t)?;
            } else {
                b.rms_norm(&s.x, w(l.ffn_norm), &s.xn, t, h, eps)?;
                self.linears(b, &s.xn, &[&l.gate, &l.up], &[&s.g, &s.u], t)?;
                b.swiglu(&s.g, &s.u, &s.g, t * ff)?;
            }
            self.linear_add(b, &s.g, &l.down, &s.y, &s.x, t)?;
        }
        let (out, on) = (&self.plan.output, self.plan.output_norm);
        if all_logits || t == 1 {
            // One token: x is the last row already (no copy, which would also break the
            // chain of launches a backend overlaps).
            self.norm_linears(b, &s.x, on, &s.xn, &[out], &[&s.logits], t)
        } else {
            b.copy(&s.x, (t - 1) * h, &s.last, 0, h)?;
            self.norm_linears(b, &s.last, on, &s.xn, &[out], &[&s.logits], 1)
        }
    }

    pub fn family(&self) -> Family {
        self.cfg.family
    }
}
