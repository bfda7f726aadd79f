#!/usr/bin/env python3
"""Tiny random-weight models of real Llama-family shapes, for loader and golden-logit tests.

Needs only numpy and safetensors (`pip install numpy safetensors`): CI runs this to recreate the
models, then checks every file's sha256 against scripts/golden/tiny_models.sha256, so the
weights it tests are exactly those the golden files (tests/golden/*.json) were computed from.

Models (each a folder with config.json, generation_config.json and safetensors):
  llama3-tiny     Llama 3.1 architecture, llama3 rope scaling, GQA 8/2, bf16, sharded in 3 files
                  with model.safetensors.index.json, untied lm_head, the real Llama 3.1 tokenizer
                  (vocab 128256; copied from the npm test data).
  phi3-tiny       Phi3ForCausalLM, fused qkv_proj and gate_up_proj, f16, longrope scaling.
  qwen25-tiny     Qwen2ForCausalLM, q/k/v bias, tied embeddings, f32.
  tinyllama-tiny  TinyLlama head ratios (32 heads / 4 kv), bf16, no rope scaling.
  w8a8-tiny       Llama 3.2-like, compressed-tensors W8A8: int8 per-channel symmetric weights
                  with bf16 `weight_scale` [out, 1], dynamic per-token int8 activations,
                  lm_head (tied to the bf16 embeddings) ignored.

Weights give the activations of a trained model: a linear layer with fan-in n has weights
N(0, 0.02 * sqrt(4096 / n)) (a Llama's 0.02 at width 4096, so attention is as peaked and rope
matters as much as in a real model; with 0.02 at width 128 attention would be nearly uniform and
position-blind), embeddings N(0, 0.02), norm weights 1 + N(0, 0.1), biases N(0, 0.5), and a final
norm gain that gives the logits a spread of about 2 (top-1 decisive rather than a near tie). Output: $LAMINA_TESTDATA/tiny (default
~/.cache/lamina-testdata/tiny), one folder per model, each written whole or not at all.

Usage: make_tiny_models.py [--out DIR] [--update-sha] [MODEL ...]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors

ROOT = Path(__file__).resolve().parent.parent
SHA_FILE = ROOT / "scripts" / "golden" / "tiny_models.sha256"

LLAMA31_EOS = [128001, 128008, 128009]


def testdata_dir() -> Path:
    return Path(os.environ.get("LAMINA_TESTDATA", Path.home() / ".cache" / "lamina-testdata"))


# ---------------------------------------------------------------- safetensors writing
# numpy has no bfloat16 and the safetensors package's writer takes numpy arrays only, so the
# file is written here from its specification (8-byte little-endian header length, JSON header,
# tensor bytes back to back) and read back with the safetensors package to check it.

ST_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1}


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even, as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(x: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(x, dtype="<f2").tobytes()
    if dtype == "BF16":
        return to_bf16_bits(x).astype("<u2").tobytes()
    if dtype == "I8":
        assert x.dtype == np.int8
        return np.ascontiguousarray(x).tobytes()
    raise ValueError(dtype)


def write_safetensors(path: Path, tensors: dict) -> int:
    """tensors: name -> (dtype, np.ndarray). Returns the tensor bytes written.

    Tensors are laid out widest element first, then by name, so every tensor's data is aligned
    to its element size in the file (a reader may view it in place through an mmap)."""
    order = sorted(tensors, key=lambda n: (-ST_DTYPES[tensors[n][0]], n))
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in order:
        dtype, arr = tensors[name]
        blob = encode(arr, dtype)
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    return offset


def check_safetensors(path: Path, tensors: dict) -> None:
    """Reads the file back with the safetensors package: names, dtypes, shapes, and the values
    of every tensor numpy can represent."""
    st_names = {"F32": "F32", "F16": "F16", "BF16": "BF16", "I8": "I8"}
    with safetensors.safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(tensors), path
        for name, (dtype, arr) in tensors.items():
            sl = f.get_slice(name)
            assert sl.get_dtype() == st_names[dtype], (name, sl.get_dtype())
            assert list(sl.get_shape()) == list(arr.shape), name
            if dtype != "BF16":
                got = f.get_tensor(name)
                want = arr.astype(got.dtype)
                assert np.array_equal(got, want), name


# ---------------------------------------------------------------- weights


class Init:
    """Trained-looking random values from one seeded PCG64 stream."""

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def linear(self, out_dim, in_dim):
        return self.normal((out_dim, in_dim), linear_std(in_dim))

    def norm(self, dim, gain=1.0):
        return (np.float32(gain) * (1.0 + self.normal((dim,), 0.1))).astype(np.float32)

    def bias(self, dim):
        return self.normal((dim,), 0.5)


EMBED_STD = 0.02


def linear_std(fan_in: int) -> float:
    return 0.02 * (4096 / fan_in) ** 0.5


def final_norm_gain(hidden: int, out_std: float) -> float:
    # logits = gain * norm(h) . w with w ~ N(0, out_std): a spread of ~2 like a trained model's.
    return 2.0 / (out_std * hidden ** 0.5)


def llama_like(cfg: dict, seed: int, qkv_bias=False, fused=False) -> dict:
    """HF-named float32 tensors of a Llama-style decoder (Qwen2 bias, Phi-3 fusion as flags)."""
    it = Init(seed)
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", h // nh)
    w = {"model.embed_tokens.weight": it.normal((vocab, h), EMBED_STD)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = it.norm(h)
        q, k, v = it.linear(nh * hd, h), it.linear(nkv * hd, h), it.linear(nkv * hd, h)
        if fused:
            w[p + "self_attn.qkv_proj.weight"] = np.concatenate([q, k, v])
        else:
            w[p + "self_attn.q_proj.weight"] = q
            w[p + "self_attn.k_proj.weight"] = k
            w[p + "self_attn.v_proj.weight"] = v
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = it.bias(nh * hd)
            w[p + "self_attn.k_proj.bias"] = it.bias(nkv * hd)
            w[p + "self_attn.v_proj.bias"] = it.bias(nkv * hd)
        w[p + "self_attn.o_proj.weight"] = it.linear(h, nh * hd)
        w[p + "post_attention_layernorm.weight"] = it.norm(h)
        gate, up = it.linear(inter, h), it.linear(inter, h)
        if fused:
            w[p + "mlp.gate_up_proj.weight"] = np.concatenate([gate, up])  # gate rows first
        else:
            w[p + "mlp.gate_proj.weight"] = gate
            w[p + "mlp.up_proj.weight"] = up
        w[p + "mlp.down_proj.weight"] = it.linear(h, inter)
    tied = cfg["tie_word_embeddings"]
    w["model.norm.weight"] = it.norm(h, final_norm_gain(h, EMBED_STD if tied else linear_std(h)))
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = it.linear(vocab, h)
    return w


# ---------------------------------------------------------------- compressed-tensors W8A8

W8A8_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantize_int8_channel(w: np.ndarray):
    """Per-output-channel symmetric int8 as compressed-tensors computes it: scale =
    max|w_row| / ((127 - (-128)) / 2), stored in the model dtype (bf16); then
    q = clamp(round_half_even(w / scale), -128, 127) with the stored scale."""
    absmax = np.abs(w).max(axis=1, keepdims=True)
    scale_bits = to_bf16_bits(absmax / np.float32(127.5))
    scale = bf16_bits_to_f32(scale_bits)
    scale = np.where(scale == 0, np.float32(np.finfo(np.float32).eps), scale)
    q = np.clip(np.rint(w / scale), -128, 127).astype(np.int8)
    return q, scale.astype(np.float32)


W8A8_QUANT_CONFIG = {
    "config_groups": {
        "group_0": {
            "input_activations": {
                "actorder": None, "block_structure": None, "dynamic": True, "group_size": None,
                "num_bits": 8, "observer": None, "observer_kwargs": {}, "strategy": "token",
                "symmetric": True, "type": "int",
            },
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None, "block_structure": None, "dynamic": False, "group_size": None,
                "num_bits": 8, "observer": "minmax", "observer_kwargs": {}, "strategy": "channel",
                "symmetric": True, "type": "int",
            },
        }
    },
    "format": "int-quantized",
    "global_compression_ratio": None,
    "ignore": ["lm_head"],
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}


# ---------------------------------------------------------------- the models


def llama3_config():
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": LLAMA31_EOS, "head_dim": 16, "hidden_act": "silu",
        "hidden_size": 128, "initializer_range": 0.02, "intermediate_size": 384,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 8, "num_hidden_layers": 3, "num_key_value_heads": 2,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 128256,
    }


def longrope_factors(n: int):
    # Shaped like Phi-3.5's lists: short factors rise gently from 1, long ones geometrically.
    short = [round(1.0 + 1.5 * (i / (n - 1)) ** 2, 4) for i in range(n)]
    long = [round(float(np.exp(np.log(48.0) * i / (n - 1))), 4) for i in range(n)]
    return short, long


def phi3_config():
    short, long = longrope_factors(16)
    return {
        "architectures": ["Phi3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 999, "hidden_act": "silu",
        "hidden_size": 128, "initializer_range": 0.02, "intermediate_size": 256,
        "max_position_embeddings": 131072, "model_type": "phi3", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 4,
        "original_max_position_embeddings": 4096, "pad_token_id": 998, "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"long_factor": long, "short_factor": short, "type": "longrope"},
        "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": False,
        "torch_dtype": "float16", "use_cache": True, "vocab_size": 1000,
    }


def qwen25_config():
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1150,
        "eos_token_id": 1151, "hidden_act": "silu", "hidden_size": 128,
        "initializer_range": 0.02, "intermediate_size": 320, "max_position_embeddings": 32768,
        "max_window_layers": 2, "model_type": "qwen2", "num_attention_heads": 8,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": True, "torch_dtype": "float32", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 1200,
    }


def tinyllama_config():
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 512,
        "initializer_range": 0.02, "intermediate_size": 1408, "max_position_embeddings": 2048,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 2,
        "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 2000,
    }


def w8a8_config():
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": 32, "hidden_act": "silu",
        "hidden_size": 256, "initializer_range": 0.02, "intermediate_size": 768,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 8, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pretraining_tp": 1, "quantization_config": W8A8_QUANT_CONFIG, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 1024,
    }


def generation_config(cfg, **extra):
    out = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}
    out.update(extra)
    return out


def cast_all(weights: dict, dtype: str) -> dict:
    return {name: (dtype, arr) for name, arr in weights.items()}


def build_llama3(d: Path):
    cfg = llama3_config()
    w = cast_all(llama_like(cfg, seed=1001), "BF16")
    # Three shards: embeddings + layer 0, the remaining layers, final norm + lm_head.
    shards = [{}, {}, {}]
    for name, t in w.items():
        if name.startswith("model.embed_tokens") or name.startswith("model.layers.0."):
            shards[0][name] = t
        elif name.startswith("model.layers."):
            shards[1][name] = t
        else:
            shards[2][name] = t
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(d / fname, shard)
        check_safetensors(d / fname, shard)
        weight_map.update({name: fname for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_json(d / "model.safetensors.index.json", index)
    write_json(d / "config.json", cfg)
    write_json(d / "generation_config.json",
               generation_config(cfg, do_sample=True, temperature=0.6, top_p=0.9))
    tok = testdata_dir() / "npm" / "tokenizer-llama3_1" / "models"
    for fname in ("tokenizer.json", "tokenizer_config.json"):
        src = tok / fname
        if not src.is_file():
            sys.exit(f"make_tiny_models: {src} is missing; run scripts/fetch_testdata.sh first")
        shutil.copyfile(src, d / fname)


def write_word_tokenizer(d: Path, vocab_size: int) -> None:
    """A word-level tokenizer.json naming every id `<tN>`: these models are driven by token
    ids, but a model folder without a tokenizer is refused (as it should be)."""
    vocab = {f"<t{i}>": i for i in range(vocab_size)}
    write_json(d / "tokenizer.json", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<t0>"},
    })


def build_single(d: Path, cfg: dict, tensors: dict, **gen):
    write_safetensors(d / "model.safetensors", tensors)
    check_safetensors(d / "model.safetensors", tensors)
    write_json(d / "config.json", cfg)
    write_json(d / "generation_config.json", generation_config(cfg, **gen))
    write_word_tokenizer(d, cfg["vocab_size"])


def build_phi3(d: Path):
    cfg = phi3_config()
    build_single(d, cfg, cast_all(llama_like(cfg, seed=1002, fused=True), "F16"))


def build_qwen25(d: Path):
    cfg = qwen25_config()
    build_single(d, cfg, cast_all(llama_like(cfg, seed=1003, qkv_bias=True), "F32"))


def build_tinyllama(d: Path):
    cfg = tinyllama_config()
    build_single(d, cfg, cast_all(llama_like(cfg, seed=1004), "BF16"))


def build_w8a8(d: Path):
    cfg = w8a8_config()
    tensors = {}
    for name, arr in llama_like(cfg, seed=1005).items():
        module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
        if module in W8A8_TARGETS:
            q, scale = quantize_int8_channel(arr)
            tensors[name] = ("I8", q)
            tensors[name[: -len("weight")] + "weight_scale"] = ("BF16", scale)
        else:
            tensors[name] = ("BF16", arr)
    build_single(d, cfg, tensors)


MODELS = {
    "llama3-tiny": build_llama3,
    "phi3-tiny": build_phi3,
    "qwen25-tiny": build_qwen25,
    "tinyllama-tiny": build_tinyllama,
    "w8a8-tiny": build_w8a8,
}


# ---------------------------------------------------------------- files and hashes


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sha_file() -> dict:
    out = {}
    if SHA_FILE.is_file():
        for line in SHA_FILE.read_text().splitlines():
            if line.strip():
                digest, rel = line.split(maxsplit=1)
                out[rel] = digest
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help=f"subset of {', '.join(MODELS)}")
    ap.add_argument("--out", type=Path, default=None, help="default $LAMINA_TESTDATA/tiny")
    ap.add_argument("--update-sha", action="store_true",
                    help=f"rewrite {SHA_FILE.relative_to(ROOT)} instead of checking against it")
    a = ap.parse_args()
    names = a.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    out = a.out or testdata_dir() / "tiny"
    out.mkdir(parents=True, exist_ok=True)

    expected = read_sha_file()
    got = {}
    for name in names:
        final = out / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
        MODELS[name](tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for f in sorted(final.iterdir()):
            rel = f"{name}/{f.name}"
            got[rel] = sha256(f)
            print(f"{got[rel]}  {rel}  ({f.stat().st_size} bytes)")

    if a.update_sha:
        merged = {k: v for k, v in expected.items() if k.split("/")[0] not in names}
        merged.update(got)
        SHA_FILE.write_text("".join(f"{merged[k]}  {k}\n" for k in sorted(merged)))
        print(f"wrote {SHA_FILE}")
        return 0
    bad = [rel for rel in got if expected.get(rel) != got[rel]]
    missing = [rel for rel in expected if rel.split("/")[0] in names and rel not in got]
    for rel in bad:
        print(f"MISMATCH {rel}: expected {expected.get(rel, '(not listed)')}, got {got[rel]}",
              file=sys.stderr)
    for rel in missing:
        print(f"MISSING {rel}: listed in {SHA_FILE.name} but not written", file=sys.stderr)
    if bad or missing:
        print("make_tiny_models: the files differ from those the golden logits were made from "
              f"(numpy {np.__version__}); see {SHA_FILE}", file=sys.stderr)
        return 1
    print(f"make_tiny_models: {len(got)} files in {out} match {SHA_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
