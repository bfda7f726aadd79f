#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers (float32, CPU) for lamina's whole-model tests.

Run with the reference venv (scripts/golden/setup_venv.sh), after scripts/fetch_testdata.sh and
scripts/make_tiny_models.py:
    /opt/golden-venv/bin/python scripts/golden/make_golden.py [NAME ...]
Writes tests/golden/<NAME>.json. Not run by CI: CI compares against the committed files.

Each file holds cases (a prompt as token ids). For each case: at every stored prompt position the
top-10 ids and logits plus checksum statistics over the full vocabulary, then 32 greedy tokens
(argmax, no stop on eos, KV-cached decode) with the same record for each step's logits. The
format is described in tests/common/golden.rs, which reads it.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "golden"
SHA_FILE = ROOT / "scripts" / "golden" / "tiny_models.sha256"
TOP_K = 10
GREEDY_STEPS = 32
FORMAT = "lamina-golden-1"


def testdata_dir() -> Path:
    return Path(os.environ.get("LAMINA_TESTDATA", Path.home() / ".cache" / "lamina-testdata"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r6(x: float) -> float:
    return float(f"{x:.6g}")


# ---------------------------------------------------------------- records


def record(logits: torch.Tensor) -> dict:
    """Top-k and checksums of one full-vocabulary logit vector (float32 in, float64 sums)."""
    x = logits.detach().to(torch.float64).numpy()
    order = np.argsort(-x, kind="stable")[:TOP_K]  # ties: lower id first, as argmax
    mx = float(x.max())
    return {
        "ids": [int(i) for i in order],
        "logits": [r6(float(x[i])) for i in order],
        "sum": r6(float(x.sum())),
        "sumsq": r6(float((x * x).sum())),
        "lse": r6(mx + math.log(float(np.exp(x - mx).sum()))),
        "max": r6(mx),
        "argmax": int(np.argmax(x)),
        # top-1 minus top-2 at full precision: tells a test where a near tie makes top-1 fragile
        "margin": r6(float(x[order[0]] - x[order[1]])),
    }


def prompt_logits(model, prompt_ids, first: int, use_cache=False):
    """One pass over the prompt; logits of positions first.. only (a long prompt's full
    logits would not fit)."""
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    out = model(input_ids=ids, use_cache=use_cache, logits_to_keep=len(prompt_ids) - first)
    return out, out.logits[0].float()


@torch.no_grad()
def run_case(model, prompt_ids, positions=None, steps=GREEDY_STEPS):
    """Logits of the prompt in one pass, then greedy decoding one token at a time."""
    keep = list(range(len(prompt_ids))) if positions is None else positions
    out, logits = prompt_logits(model, prompt_ids, keep[0], use_cache=True)
    pos_records = [dict(pos=p, **record(logits[p - keep[0]])) for p in keep]
    past, last = out.past_key_values, logits[-1]
    greedy, step_records = [], []
    for _ in range(steps):
        step_records.append(record(last))
        nxt = int(torch.argmax(last))
        greedy.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past, last = out.past_key_values, out.logits[0, -1].float()
    return pos_records, greedy, step_records


def margins_summary(case, vocab: int) -> str:
    ms = [(r["margin"] / rms_of(r, vocab)) for r in case["positions"] + case["greedy"]["steps"]]
    return f"min margin/rms {min(ms):.2e}"


def rms_of(rec, vocab: int) -> float:
    """Root mean square of the full logit vector: the floor of the relative-error metric."""
    return math.sqrt(rec["sumsq"] / vocab)


# ---------------------------------------------------------------- model loading


def load_gguf(fname: str):
    d = testdata_dir()
    path = d / fname
    if not path.is_file():
        sys.exit(f"make_golden: {path} is missing; run scripts/fetch_testdata.sh first")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=fname, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    source = {"kind": "gguf", "file": fname, "sha256": sha256(path),
              "dequantized_by": "transformers GGUF loader (gguf-py dequantization) to float32"}
    return model, tok, source


def tiny_dir(name: str) -> Path:
    d = testdata_dir() / "tiny" / name
    if not (d / "config.json").is_file():
        sys.exit(f"make_golden: {d} is missing; run scripts/make_tiny_models.py first")
    return d


def tiny_source(name: str) -> dict:
    """The sha256 of every file of the tiny model, checked against the committed list."""
    d = tiny_dir(name)
    listed = {}
    for line in SHA_FILE.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        if rel.startswith(name + "/"):
            listed[rel.split("/", 1)[1]] = digest
    files = {f.name: sha256(f) for f in sorted(d.iterdir())}
    if files != listed:
        sys.exit(f"make_golden: {d} differs from {SHA_FILE}; rerun scripts/make_tiny_models.py")
    return {"kind": "tiny", "dir": name, "made_by": "scripts/make_tiny_models.py",
            "sha256": {k: v for k, v in files.items() if k.endswith(".safetensors")}}


def load_tiny(name: str):
    d = tiny_dir(name)
    model, info = AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit(f"make_golden: loading {name} left {bad}")
    model.eval()
    tok = AutoTokenizer.from_pretrained(d) if (d / "tokenizer.json").is_file() else None
    return model, tok


W8A8_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load_w8a8_dequantized(name: str):
    """The unquantized Llama architecture with weights = int8 * weight_scale (exact in f32)."""
    d = tiny_dir(name)
    raw = json.loads((d / "config.json").read_text())
    qcfg = raw.pop("quantization_config")
    assert qcfg["quant_method"] == "compressed-tensors" and qcfg["format"] == "int-quantized"
    config = AutoConfig.for_model(**raw)
    state = {}
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, t in tensors.items():
        if k.endswith(".weight_scale"):
            continue
        scale = tensors.get(k + "_scale")
        if scale is not None:
            assert t.dtype == torch.int8 and scale.shape == (t.shape[0], 1), k
            state[k] = t.to(torch.float32) * scale.to(torch.float32)
        else:
            state[k] = t.to(torch.float32)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        sys.exit(f"make_golden: w8a8 state dict: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    return model, qcfg


def quantize_activations_per_token(model):
    """Fake-quantizes the input of every targeted Linear (not lm_head) as a W8A8 engine does at
    run time: per token (row) symmetric int8, scale = max|x| / 127, q = clamp(round(x / scale),
    -128, 127) with round half to even, then x' = q * scale."""

    def hook(_module, args):
        x = args[0]
        scale = x.abs().amax(dim=-1, keepdim=True) / 127.0
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.clamp(torch.round(x / scale), -128, 127)
        return (q * scale,) + tuple(args[1:])

    n = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in W8A8_TARGETS:
            module.register_forward_pre_hook(hook)
            n += 1
    return n


# ---------------------------------------------------------------- cases


def random_ids(seed: int, n: int, vocab: int):
    rng = np.random.Generator(np.random.PCG64(seed))
    return [int(i) for i in rng.integers(0, vocab, size=n)]


def tiny_cases(vocab: int, seed: int):
    return [
        {"name": "random16", "prompt_ids": random_ids(seed, 16, vocab)},
        {"name": "random40", "prompt_ids": random_ids(seed + 1, 40, vocab)},
    ]


def long_case(name: str, vocab: int, seed: int, n: int, keep_last: int, why: str):
    return {"name": name, "prompt_ids": random_ids(seed, n, vocab),
            "positions": list(range(n - keep_last, n)), "note": why}


def chat_ids(tok, user: str):
    text = tok.apply_chat_template([{"role": "user", "content": user}],
                                   add_generation_prompt=True, tokenize=False)
    return text, tok(text, add_special_tokens=False)["input_ids"]


def text_case(tok, name: str, text: str):
    return {"name": name, "text": text, "prompt_ids": tok(text)["input_ids"]}


def real_cases(tok, code_prompt: str):
    chat_text, ids = chat_ids(tok, "What is the largest planet in the solar system?")
    return [
        text_case(tok, "capital", "The capital of France is"),
        {"name": "chat", "text": chat_text, "prompt_ids": ids},
        text_case(tok, "code", code_prompt),
        text_case(tok, "digits", "In 1969, 3 astronauts flew 384400 km to the Moon and back "
                                 "in 8 days. The mission number was"),
    ]


# ---------------------------------------------------------------- sensitivity


def compare_to(golden_cases, model) -> dict:
    """How far a perturbed model lands from the golden, in the metric the Rust tests use:
    max over stored positions and golden top-k ids of |ours - golden| / max(|golden|, rms)."""
    by_case, agree, total = {}, 0, 0
    vocab = model.config.vocab_size
    with torch.no_grad():
        for case in golden_cases:
            first = case["positions"][0]["pos"]
            _, logits = prompt_logits(model, case["prompt_ids"], first)
            worst = 0.0
            for rec in case["positions"]:
                row = logits[rec["pos"] - first].double().numpy()
                rms = rms_of(rec, vocab)
                for i, g in zip(rec["ids"], rec["logits"]):
                    worst = max(worst, abs(row[i] - g) / max(abs(g), rms))
                agree += int(int(np.argmax(row)) == rec["argmax"])
                total += 1
            by_case[case["name"]] = r6(worst)
    return {"max_rel_err": max(by_case.values()), "top1_agree": f"{agree}/{total}",
            "max_rel_err_by_case": by_case}


def perturbed(model, name: str, **changes):
    """A copy of `model` with config changes, same weights."""
    cfg = model.config.to_dict()
    cfg.update(changes)
    cfg.pop("quantization_config", None)
    config = type(model.config).from_dict(cfg)
    other = type(model)(config).to(torch.float32)
    other.load_state_dict(model.state_dict())
    other.eval()
    return name, other


# ---------------------------------------------------------------- writing


def header(name: str, source: dict, model, note: str) -> dict:
    eos = model.config.eos_token_id
    return {
        "format": FORMAT,
        "model": name,
        "source": source,
        "reference": {
            "library": "transformers", "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": "float32", "device": "cpu",
            "attn_implementation": "eager",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "script": "scripts/golden/make_golden.py",
        },
        "note": note,
        "vocab_size": int(model.config.vocab_size),
        "eos_token_ids": eos if isinstance(eos, list) else ([eos] if eos is not None else []),
        "top_k": TOP_K,
        "greedy_steps": GREEDY_STEPS,
        "cases": [],
    }


def fill_case(model, tok, case: dict) -> dict:
    recs, greedy, steps = run_case(model, case["prompt_ids"], case.get("positions"))
    out = {k: v for k, v in case.items() if k != "positions"}
    out["positions"] = recs
    out["greedy"] = {"ids": greedy}
    if tok is not None:
        out["greedy"]["text"] = tok.decode(greedy)
    out["greedy"]["steps"] = steps
    return out


def is_leaf(v) -> bool:
    if isinstance(v, dict):
        return "ids" in v and "logits" in v
    if isinstance(v, list):
        return all(not isinstance(x, (dict, list)) for x in v)
    return True


def dumps(v, indent=0) -> str:
    """JSON with one position record per line: compact yet diffable."""
    pad = "  " * (indent + 1)
    if is_leaf(v):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if isinstance(v, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(x, indent + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    items = [pad + dumps(x, indent + 1) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"


def write(doc: dict) -> Path:
    path = OUT_DIR / f"{doc['model']}.json"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return path


def summarize(doc: dict) -> None:
    for c in doc["cases"]:
        text = c["greedy"].get("text")
        shown = repr(text) if text is not None else c["greedy"]["ids"][:12]
        print(f"  [{doc['model']}/{c['name']}] {len(c['prompt_ids'])} prompt ids, "
              f"{margins_summary(c, doc['vocab_size'])}; greedy: {shown}")


# ---------------------------------------------------------------- the goldens


def golden_gguf(name: str, fname: str, code_prompt: str, note: str):
    model, tok, source = load_gguf(fname)
    doc = header(name, source, model, note)
    doc["source"]["bos_added"] = bool(tok("x")["input_ids"][0] == tok.bos_token_id)
    for case in real_cases(tok, code_prompt):
        doc["cases"].append(fill_case(model, tok, case))
    write(doc)
    summarize(doc)


def golden_tiny(name: str, seed: int, extra_cases=(), perturbations=()):
    model, tok = load_tiny(name)
    doc = header(name, tiny_source(name), model,
                 "random-weight model; prompts are random ids; greedy continues past eos")
    cases = tiny_cases(model.config.vocab_size, seed) + list(extra_cases)
    if tok is not None:
        cases.append(text_case(tok, "text", "The quick brown fox jumps over the lazy dog."))
    for case in cases:
        doc["cases"].append(fill_case(model, tok, case))
    sens = {}
    for label, other in (p(model) for p in perturbations):
        sens[label] = compare_to(doc["cases"], other)
    if sens:
        doc["sensitivity"] = {
            "note": "the same comparison applied to a deliberately wrong model: a test limit must "
                    "stay well below these max_rel_err values to catch such a mistake",
            **sens}
        for k, v in sens.items():
            print(f"  sensitivity {k}: {v}")
    write(doc)
    summarize(doc)


def golden_w8a8(name: str = "w8a8-tiny", seed: int = 505):
    model, qcfg = load_w8a8_dequantized(name)
    source = tiny_source(name)
    source["quantization_config"] = {k: qcfg[k] for k in ("quant_method", "format", "ignore")}
    cases = tiny_cases(model.config.vocab_size, seed)
    float_note = ("float reference of the SAME quantized weights: every targeted Linear weight is "
                  "int8 * weight_scale (exact in float32), lm_head/embeddings/norms bf16 -> f32, "
                  "activations NOT quantized. An engine that quantizes activations per token to "
                  "int8 at run time (dynamic, as the config says) differs slightly from this: "
                  "compare it with w8a8-tiny-act8.json for a tight check, with this file for a "
                  "loose one.")
    doc = header(name, source, model, float_note)
    for case in cases:
        doc["cases"].append(fill_case(model, None, case))
    float_cases = doc["cases"]

    n = quantize_activations_per_token(model)
    act_note = (f"the same dequantized weights, and the input of each of the {n} targeted Linear "
                "layers (q,k,v,o,gate,up,down; not lm_head) fake-quantized per token: symmetric "
                "int8, scale = max|x| / 127 per row, q = clamp(round_half_even(x / scale), -128, "
                "127), x' = q * scale. This is what an engine computing int8 x int8 products with "
                "int32 accumulation and rescaling by scale_x * scale_w gives, up to float "
                "rounding (a value on a rounding boundary may move one int8 step). "
                "(compressed-tensors' own fake-quant divides by 127.5; vLLM's kernels by 127.)")
    doc8 = header(name + "-act8", dict(source), model, act_note)
    for case in cases:
        doc8["cases"].append(fill_case(model, None, case))
    doc8["sensitivity"] = {
        "note": "max_rel_err of the float-activation reference against this file",
        "float_activations": compare_to(doc8["cases"], _unhooked(name))}
    doc["sensitivity"] = {
        "note": "max_rel_err of the int8-activation reference against this file",
        "int8_activations": compare_to(float_cases, model)}
    for d in (doc, doc8):
        write(d)
        summarize(d)
        print(f"  sensitivity: {d['sensitivity']}")


def _unhooked(name):
    return load_w8a8_dequantized(name)[0]


def no_rope_scaling(model):
    return perturbed(model, "no_rope_scaling", rope_scaling=None,
                     rope_parameters={"rope_type": "default",
                                      "rope_theta": model.config.rope_parameters["rope_theta"]})


def zero_qkv_bias(model):
    name, other = perturbed(model, "zero_qkv_bias")
    with torch.no_grad():
        for n, p in other.named_parameters():
            if n.endswith("_proj.bias"):
                p.zero_()
    return name, other


def unit_norm_weights(model):
    name, other = perturbed(model, "norm_weights_ignored")
    with torch.no_grad():
        for n, p in other.named_parameters():
            if "layernorm" in n:
                p.fill_(1.0)
    return name, other


GOLDENS = {
    "smollm2-135m-q4_1": lambda: golden_gguf(
        "smollm2-135m-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf", "def fibonacci(n):\n",
        "real trained weights (Q4_1 GGUF, Q8_0 embeddings) dequantized to float32 by "
        "transformers; prompts tokenized by the tokenizer transformers builds from the GGUF "
        "(no BOS added); greedy continues past eos"),
    "qwen25-coder-05b-q4_k_m": lambda: golden_gguf(
        "qwen25-coder-05b-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "def is_prime(n: int) -> bool:\n    \"\"\"Return True if n is a prime number.\"\"\"\n",
        "real trained weights (Q4_K_M GGUF: Q4_K, Q5_0, Q6_K, Q8_0, F32) dequantized to "
        "float32 by transformers; prompts tokenized by the tokenizer transformers builds from "
        "the GGUF (no BOS added); greedy continues past eos"),
    "llama3-tiny": lambda: golden_tiny(
        "llama3-tiny", 101,
        [long_case("long1500", 128256, 111, 1500, 4,
                   "positions up to 1500 make llama3 rope scaling visible (low-frequency dims "
                   "are scaled by 1/8); only the last 4 positions are stored")],
        [no_rope_scaling, unit_norm_weights]),
    "phi3-tiny": lambda: golden_tiny(
        "phi3-tiny", 202,
        [long_case("long4200", 1000, 222, 4200, 4,
                   "longer than original_max_position_embeddings (4096), so transformers uses "
                   "long_factor for the whole sequence; only the last 4 positions are stored")],
        [no_rope_scaling, unit_norm_weights]),
    "qwen25-tiny": lambda: golden_tiny("qwen25-tiny", 303, (), [zero_qkv_bias, unit_norm_weights]),
    "tinyllama-tiny": lambda: golden_tiny("tinyllama-tiny", 404, (), [unit_norm_weights]),
    "w8a8-tiny": golden_w8a8,
}


def main() -> int:
    ap = argparse.ArgumentParser(description="golden logits from transformers")
    ap.add_argument("names", nargs="*", help=f"subset of {', '.join(GOLDENS)}")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for name in a.names or list(GOLDENS):
        if name not in GOLDENS:
            ap.error(f"unknown {name}; known: {list(GOLDENS)}")
        print(f"== {name}")
        GOLDENS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
