#!/usr/bin/env bash
# After a GEMV chunk change: the CUDA conformance and golden tests, then Q8_0 decode of the
# 32-layer Llama-3.1-8B-shape model quantized by lamina quantize. From the repo root with
# .gpu and .gl carried.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
scripts/gpu_check.sh run >/dev/null 2>&1
cat "${OUT:-.gpu/out}/gpu_check.md"
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b
export RUST_LOG=warn
python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
$L quantize $M /tmp/m8b-q8_0.gguf --type q8_0 2>&1 | tail -1
rm -rf $M
$L bench -m /tmp/m8b-q8_0.gguf --backends cuda -p 512 -n 128 -r 5 2>&1 | tail -1
