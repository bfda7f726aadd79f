#!/usr/bin/env bash
# Decode tg128 of a random-weight Llama-3.1-8B-shape bf16 model (32 layers) under kernel
# variants (LAMINA_CUDA_DEFINES, LAMINA_CUDA_PDL, LAMINA_CUDA_SWIGLU). From the repo root with .gpu carried.
set -u
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m32
export RUST_LOG=warn
python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
while read -r pdl sw defs; do
  echo "PDL=$pdl SWIGLU=$sw DEFINES=$defs"
  LAMINA_CUDA_PDL=$pdl LAMINA_CUDA_SWIGLU=$sw LAMINA_CUDA_DEFINES="$defs" $L bench -m $M --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1 | cut -d'|' -f6,11
done <<'V'
1 fused PREFETCH=16384
1 fused PREFETCH=4096 PREFETCH_WAVES=1000
1 parts PREFETCH=4096 PREFETCH_WAVES=1000
1 fused PREFETCH=0
1 parts PREFETCH=0
1 fused PREFETCH=16384 PREFETCH_WAVES=1
1 fused PREFETCH=65536
V
