"""A random-weight Llama-3.1-8B-shape model with fewer layers (bf16 safetensors + config.json),
for kernel profiles where the layer count does not matter. Usage: make_llama.py DIR LAYERS"""
import sys, torch
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, ".gpu")
from hf_peer import SHAPES  # noqa: E402  (the same shape as the benchmarks use)

cfg = dict(SHAPES["llama3-8b"]); mt = cfg.pop("model_type")
cfg["num_hidden_layers"] = int(sys.argv[2])
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **cfg), torch_dtype=torch.bfloat16)
model.save_pretrained(sys.argv[1], safe_serialization=True, max_shard_size="5GB")
print("saved", sys.argv[1])
