"""lamina's logits against Hugging Face transformers on the same weights, on a GPU machine.

For a model folder (e.g. made by ../shared/tools/hf_peer.py llama3-8b --save DIR):
  1. a prompt of --n random token ids (seeded): lamina's logits at every position on each
     backend, from the prefill pass and, for the last --decode positions, from one decode
     step each (teacher-forced);
  2. transformers' logits for the same ids, in bfloat16 (the model's dtype) and in float32
     (the same bf16 weights upcast: the exact answer for these weights);
  3. a --long prompt (e.g. 32768 tokens): lamina's and transformers' (bf16, sdpa) logits at
     the last 4 positions.
--variants runs cuda again under environment settings, e.g.
  --variants 'exact=LAMINA_CUDA_MATMUL=exact|exact_attn=LAMINA_CUDA_MATMUL=exact LAMINA_CUDA_ATTN=f32'
(each compared like cuda, named cuda_<name>; the long prompt too, where transformers also
runs in float32).
Reports top-1 agreement and the largest |ours - theirs| / rms(theirs) per comparison, and
writes everything to $OUT/compare.json. Usage:
  python3 compare_hf.py --model DIR --lamina BIN [--backends cuda,wgpu] [--n 128] [--long 32768]
"""
import argparse, json, os, subprocess, sys, time
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM


def lamina_logits(a, backend, ids, last=None, decode=0, ctx=None, env=None):
    path = f"/tmp/ids_{backend}_{len(ids)}.txt"
    with open(path, "w") as f:
        f.write(",".join(map(str, ids)))
    out = f"/tmp/logits_{backend}_{len(ids)}_{decode}.bin"
    cmd = [a.lamina, "logits", "-m", a.model, "--backend", backend, "--ids", "@" + path,
           "--out", out, "-c", str(ctx or len(ids) + 8), "--decode-last", str(decode)]
    if last:
        cmd += ["--last", str(last)]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        return None
    v = np.fromfile(out, dtype="<f4")
    os.remove(out)
    print(f"lamina {backend} {env or ''} {len(ids)} ids (decode {decode}) in {time.time() - t:.1f} s", flush=True)
    return v.reshape(-1, a.vocab)


def compare(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    top1 = (ours.argmax(-1) == theirs.argmax(-1))
    rms = np.sqrt((theirs ** 2).mean(-1, keepdims=True))
    rel = np.abs(ours - theirs) / rms
    # How close the reference's own top two were where top-1 disagrees (near ties).
    s = np.sort(theirs, -1)
    gaps = ((s[:, -1] - s[:, -2]) / rms[:, 0])[~top1]
    return {"positions": int(len(top1)), "top1_agreement": float(top1.mean()),
            "max_rel_err": float(rel.max()), "mean_rel_err": float(rel.mean()),
            "disagreeing_gaps_over_rms": [round(float(g), 5) for g in gaps]}


def hf_logits(model, ids, keep=None):
    with torch.no_grad():
        x = torch.tensor([ids], device="cuda")
        kw = {"logits_to_keep": keep} if keep else {}
        return model(x, **kw).logits[0].float().cpu().numpy()


def hf_logits_chunked(model, ids, keep, chunk=2048):
    """Logits of the last `keep` positions, the prompt fed in chunks through the KV cache:
    float32 sdpa falls back to a kernel that holds the whole T x T score matrix."""
    from transformers import DynamicCache
    cache = DynamicCache()
    with torch.no_grad():
        for i in range(0, len(ids), chunk):
            x = torch.tensor([ids[i:i + chunk]], device="cuda")
            out = model(x, past_key_values=cache, use_cache=True, logits_to_keep=keep)
        return out.logits[0].float().cpu().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--lamina", required=True)
    ap.add_argument("--backends", default="cuda,wgpu")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--long", type=int, default=0)
    ap.add_argument("--variants", default="")
    a = ap.parse_args()
    variants = {"": {}}
    for v in filter(None, a.variants.split("|")):
        name, settings = v.split("=", 1)
        variants["_" + name] = dict(kv.split("=", 1) for kv in settings.split())
    cfg = AutoConfig.from_pretrained(a.model)
    a.vocab = cfg.vocab_size
    rng = np.random.default_rng(0)
    ids = rng.integers(0, a.vocab, a.n).tolist()
    res = {"model": a.model, "n": a.n, "device": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%d")}
    ours = {}
    for be in a.backends.split(","):
        for vn, env in (variants.items() if be == "cuda" else [("", {})]):
            ours[be + vn] = lamina_logits(a, be, ids, env=env)
            ours[be + vn + "_decode"] = lamina_logits(a, be, ids, last=a.decode, decode=a.decode, env=env)
    long_ids = rng.integers(0, a.vocab, a.long).tolist() if a.long else None
    if long_ids:
        for vn, env in variants.items():
            ours["cuda_long" + vn] = lamina_logits(a, "cuda", long_ids, last=4, ctx=a.long + 8, env=env)
    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    print(f"transformers loaded in {time.time() - t:.1f} s", flush=True)
    hf_bf16 = hf_logits(model, ids)
    hf_long = hf_logits(model, long_ids, keep=4) if long_ids else None
    model.float()
    hf_f32 = hf_logits(model, ids)
    hf_long32 = hf_logits_chunked(model, long_ids, keep=4) if long_ids else None
    del model
    torch.cuda.empty_cache()
    for name, v in ours.items():
        if v is None:
            res[name] = "lamina failed (see stderr)"
            continue
        if name.startswith("cuda_long"):
            res[f"{name}_vs_hf_bf16"] = compare(v, hf_long)
            res[f"{name}_vs_hf_f32"] = compare(v, hf_long32)
            continue
        ref_rows = slice(a.n - len(v), a.n)
        res[f"{name}_vs_hf_bf16"] = compare(v, hf_bf16[ref_rows])
        res[f"{name}_vs_hf_f32"] = compare(v, hf_f32[ref_rows])
    res["hf_bf16_vs_hf_f32"] = compare(hf_bf16, hf_f32)
    if long_ids:
        res["hf_long_bf16_vs_hf_f32"] = compare(hf_long, hf_long32)
    bes = [b for b in a.backends.split(",") if ours.get(b) is not None]
    if len(bes) == 2:
        for vn in variants:
            if ours.get(bes[0] + vn) is not None:
                res[f"{bes[0]}{vn}_vs_{bes[1]}"] = compare(ours[bes[0] + vn], ours[bes[1]])
    out = os.environ.get("OUT", "/tmp")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(res, f, indent=1)
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k:32s} top-1 {v['top1_agreement']*100:6.2f}% of {v['positions']:4d}, max rel err {v['max_rel_err']:.3e}, mean {v['mean_rel_err']:.2e}")
        else:
            print(k, v)


if __name__ == "__main__":
    main()
