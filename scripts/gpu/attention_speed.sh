#!/usr/bin/env bash
# Decode attention over 32 layers of an 8B-shape cache at depths 128 to 32768 (ops_cuda
# decode_attention_speed: rope_attention against rope_kv_write then attention, replayed as a
# graph), under each of $VARIANTS (environment settings separated by '|', "-" for the
# defaults). From the repo root with .gpu carried.
set -u
gzip -dc .gpu/tests/ops_cuda.gz >/tmp/ops_cuda && chmod +x /tmp/ops_cuda
CUDA_HOME=$(ls -d /usr/local/cuda-13.* | sort -V | tail -n1); export CUDA_HOME
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
IFS='|' read -r -a variants <<<"${VARIANTS:--|LAMINA_CUDA_SPLIT_KEYS=32|LAMINA_CUDA_SPLIT_KEYS=128}"
for v in "${variants[@]}"; do
  echo "== $v"
  read -r -a settings <<<"${v/#-/}"
  env "${settings[@]}" /tmp/ops_cuda --ignored --exact perf::decode_attention_speed --nocapture 2>&1 |
    grep -v "^running\|^$\|^test result"
done
