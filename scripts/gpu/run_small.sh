#!/usr/bin/env bash
# Issue 3's GPU figures: random-weight bf16 models of the SmolLM2-135M and Qwen2.5-0.5B
# shapes (make_llama.py; the real GGUFs are too large to carry) benchmarked with `lamina
# bench` on wgpu (Vulkan) and cuda on the same GPU. From the repo root with .gpu and .gl
# carried; prints the bench tables.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
export RUST_LOG=warn
for shape in smollm2-135m qwen2.5-0.5b; do
  echo "== $shape"
  timeout 120 python3 scripts/gpu/make_llama.py /tmp/$shape 0 $shape 2>&1 | tail -1
  timeout 150 /tmp/lamina bench -m /tmp/$shape --backends wgpu,cuda -p 512 -n 128 -r 3 2>&1 | tail -4
done
