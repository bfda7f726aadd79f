#!/usr/bin/env bash
# Issue 4's accuracy question, on a GPU machine: lamina's logits against transformers on a
# random-weight Llama-3.1-8B-shape bf16 model (compare_hf.py: 128-token prompt at every
# position; with LONG=32768, the last 4 positions of a 32768-token prompt, transformers in
# bf16 and float32), for cuda as it is, cuda with exact products (LAMINA_CUDA_MATMUL=exact)
# and with f32 prefill attention as well, and wgpu; then what exact products cost
# (`lamina bench` pp512 both ways). From the repo root with .gpu and .gl carried; the model
# stays in /tmp/m8b for a following call.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
O=${OUT:-/tmp/out}; mkdir -p $O
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b
export RUST_LOG=warn
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f $M/config.json ] || python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
echo "== compare ($(date -u +%T))"
timeout ${COMPARE_S:-420} python3 scripts/gpu/compare_hf.py --model $M --lamina $L --n 128 \
  --backends "${BACKENDS:-cuda,wgpu}" --long "${LONG:-0}" \
  --variants 'exact=LAMINA_CUDA_MATMUL=exact|exact_attn=LAMINA_CUDA_MATMUL=exact LAMINA_CUDA_ATTN=f32' 2>&1 | grep -v Warning
if [ -n "${BENCH:-}" ]; then
  echo "== bench ($(date -u +%T))"
  $L bench -m $M --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
  LAMINA_CUDA_MATMUL=exact $L bench -m $M --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
fi
echo "== done ($(date -u +%T))"
