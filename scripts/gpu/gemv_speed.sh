#!/usr/bin/env bash
# One-token GEMV speed at the 8B projection shapes (ops_cuda gemv_speed: weights read from
# DRAM, as in decode) under the GEMV tuning switches, in one run. VARIANTS: settings
# separated by '|', each a space-separated list of VAR=value ("-" for the defaults).
# From the repo root with .gpu carried.
set -u
gzip -dc .gpu/tests/ops_cuda.gz >/tmp/ops_cuda && chmod +x /tmp/ops_cuda
CUDA_HOME=$(ls -d /usr/local/cuda-13.* | sort -V | tail -n1); export CUDA_HOME
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
IFS='|' read -r -a variants <<<"${VARIANTS:--|LAMINA_CUDA_GEMV_IDOT=0|LAMINA_CUDA_GEMV_CU=64}"
for v in "${variants[@]}"; do
  echo "== $v"
  read -r -a settings <<<"${v/#-/}"
  env "${settings[@]}" /tmp/ops_cuda --ignored --exact perf::gemv_speed --nocapture 2>&1 | grep -v "^running\|^$\|^test result"
done
