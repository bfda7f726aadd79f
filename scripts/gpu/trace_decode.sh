#!/usr/bin/env bash
# Where a decode step's time goes inside the replayed graph, launch by launch: the 32-layer
# Llama-3.1-8B-shape model quantized to each of $QUANTS (default q8_0 q4_k_m), benched
# plainly (tg128, -r 3), then decoded with LAMINA_CUDA_TRACE by a build carrying
# scripts/gpu/trace_gemv.patch, and the ring read by scripts/gpu/trace_gemv.py.
# From the repo root with .gpu (packed from the patched build) and .gl carried.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
O=${OUT:-/tmp/out}; mkdir -p $O
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b
export RUST_LOG=warn
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f $M/config.json ] || python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
for q in ${QUANTS:-q8_0 q4_k_m}; do
  [ -f /tmp/m8b-$q.gguf ] || $L quantize $M /tmp/m8b-$q.gguf --type $q 2>&1 | tail -1
done
for q in ${QUANTS:-q8_0 q4_k_m}; do
  echo "== $q"
  $L bench -m /tmp/m8b-$q.gguf --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
  LAMINA_CUDA_TRACE=$O/trace-$q.bin $L bench -m /tmp/m8b-$q.gguf --backends cuda -p 1 -n 32 -r 1 2>&1 | tail -2
  python3 scripts/gpu/trace_gemv.py $O/trace-$q.bin | tee $O/trace-$q.txt
  rm -f $O/trace-$q.bin
done
echo "done after $SECONDS s"
