#!/usr/bin/env bash
# Decode tg128 of Q8_0 and Q4_K_M GGUFs (an 8-layer Llama-3.1-8B-shape model quantized by
# lamina quantize) under GEMV chunk sizes (LAMINA_CUDA_GEMV_CU). From the repo root with
# .gpu carried.
set -u
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8
export RUST_LOG=warn
python3 scripts/gpu/make_llama.py $M 8 2>&1 | tail -1
for q in q8_0 q4_k_m; do $L quantize $M /tmp/m8-$q.gguf --type $q 2>&1 | tail -1; done
for q in q8_0 q4_k_m; do
  for cu in default 32 64 128; do
    [ "$cu" = default ] && unset LAMINA_CUDA_GEMV_CU || export LAMINA_CUDA_GEMV_CU=$cu
    echo "$q CU=$cu $($L bench -m /tmp/m8-$q.gguf --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1 | cut -d'|' -f5,6,11)"
  done
done
