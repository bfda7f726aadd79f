"""Expected renderings for tests/chat.rs, made with Python Jinja2 the way Hugging Face
transformers renders chat templates (its `_compile_jinja_template`): a sandboxed environment
with trim_blocks, lstrip_blocks and loop controls, `tojson` as json.dumps(ensure_ascii=False),
`raise_exception`, and `strftime_now` (here at a fixed time, FIXED_TIME below, in UTC).

    /tmp/ref/bin/pip install jinja2 gguf
    /tmp/ref/bin/python tests/chat_reference.py
"""

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

DATA = Path(os.environ.get("LAMINA_TESTDATA", Path.home() / ".cache/lamina-testdata"))
TEMPLATES = DATA / "llama.cpp/vendor/llama.cpp/models/templates"

# 2025-03-14 15:09:26 UTC; keep in step with FIXED_TIME in tests/chat.rs.
FIXED_TIME = 1741964966

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "<think>Easy.</think>The capital of France is Paris."},
    {"role": "user", "content": "And of Japan? Answer in 日本語 too."},
]

CASES = [
    ("meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>"),
    ("meta-llama-Llama-3.2-3B-Instruct", "<|begin_of_text|>", "<|eot_id|>"),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("Qwen-Qwen2.5-7B-Instruct", None, "<|im_end|>"),
    ("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>"),
]


def compile_template(source):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(FIXED_TIME, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render(source, bos, eos):
    tokens = {k: v for k, v in [("bos_token", bos), ("eos_token", eos)] if v is not None}
    return compile_template(source).render(messages=MESSAGES, tools=None, documents=None,
                                           add_generation_prompt=True, **tokens)


def gguf_template(path):
    import gguf

    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    for name, bos, eos in CASES:
        source = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
        print(f"// {name}\n{json.dumps(render(source, bos, eos), ensure_ascii=False)}\n")
    for name, bos, eos in [("SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_start|>", "<|im_end|>"),
                           ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", None, "<|im_end|>")]:
        source = gguf_template(DATA / name)
        print(f"// {name}\n{json.dumps(render(source, bos, eos), ensure_ascii=False)}\n")


if __name__ == "__main__":
    main()
