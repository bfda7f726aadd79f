"""A compressed-tensors W8A8 copy of a bf16 safetensors model folder, made on the GPU with
torch: per-output-channel symmetric int8 weights for every q/k/v/o/gate/up/down projection
(scale = max|w_row| / 127.5 stored in bf16, q = clamp(round_half_even(w / scale), -128, 127),
as compressed-tensors computes them; scripts/make_tiny_models.py does the same in numpy),
everything else (embeddings, norms, lm_head) left in bf16, dynamic per-token int8
activations declared in quantization_config. Usage: make_w8a8.py SRC_DIR DST_DIR"""
import json, os, shutil, sys
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from make_tiny_models import W8A8_QUANT_CONFIG, W8A8_TARGETS  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
    weight_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        out = {}
        for name, w in load_file(os.path.join(src, shard), device="cuda").items():
            module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
            if module in W8A8_TARGETS:
                absmax = w.float().abs().amax(dim=1, keepdim=True)
                scale = (absmax / 127.5).to(torch.bfloat16).float()
                scale = torch.where(scale == 0, torch.finfo(torch.float32).eps, scale)
                q = torch.clamp(torch.round(w.float() / scale), -128, 127).to(torch.int8)
                out[name] = q.contiguous()
                out[name[: -len("weight")] + "weight_scale"] = scale.to(torch.bfloat16).contiguous()
            else:
                out[name] = w.contiguous()
        save_file({k: v.cpu() for k, v in out.items()}, os.path.join(dst, shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in out})
        print("wrote", shard, flush=True)
    json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["quantization_config"] = W8A8_QUANT_CONFIG
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
    for f in os.listdir(src):
        if f.startswith("tokenizer") or f == "generation_config.json":
            shutil.copy(os.path.join(src, f), dst)


if __name__ == "__main__":
    main()
