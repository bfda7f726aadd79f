"""A random-weight model of a real shape (bf16 safetensors + config.json + a tokenizer), for
benchmarks and kernel profiles. Usage: make_llama.py DIR LAYERS [SHAPE]
SHAPE: llama3-8b (default) or any shape of hf_peer.py, or smollm2-135m; LAYERS 0 keeps the
shape's own count. llama3-8b gets the real Llama 3.1 tokenizer (from .gpu/testdata), others
a word-level tokenizer of their vocabulary size (scripts/make_tiny_models.py): benchmarks
drive models by token ids."""
import shutil, sys, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, ".gpu")
sys.path.insert(0, "scripts")
from hf_peer import SHAPES  # noqa: E402  (the same shapes as the peer figures)
from make_tiny_models import write_word_tokenizer  # noqa: E402

SHAPES = dict(SHAPES)
SHAPES["smollm2-135m"] = dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                              num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                              vocab_size=49152, rope_theta=100000.0, max_position_embeddings=8192,
                              rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                              eos_token_id=2)
out, layers = Path(sys.argv[1]), int(sys.argv[2])
shape = sys.argv[3] if len(sys.argv) > 3 else "llama3-8b"
cfg = dict(SHAPES[shape]); mt = cfg.pop("model_type")
if layers:
    cfg["num_hidden_layers"] = layers
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **cfg), torch_dtype=torch.bfloat16)
model.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
if shape == "llama3-8b":
    for f in Path(".gpu/testdata/npm/tokenizer-llama3_1/models").glob("tokenizer*.json"):
        shutil.copy(f, out)
else:
    write_word_tokenizer(out, cfg["vocab_size"])
print("saved", out, shape)
