#!/usr/bin/env bash
# Programmatic dependent launch on and off (LAMINA_CUDA_PDL) on a random-weight
# Llama-3.1-8B-shape bf16 model (all 32 layers), then the CUDA conformance and golden tests
# (scripts/gpu_check.sh run). From the repo root with .gpu (TESTS="ops_cuda golden"
# scripts/gpu_check.sh pack) and .gl carried; prints the bench table rows.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m32
export RUST_LOG=warn
python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
for pdl in 0 1; do
  echo "LAMINA_CUDA_PDL=$pdl"
  LAMINA_CUDA_PDL=$pdl $L bench -m $M --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
done
rm -rf $M
scripts/gpu_check.sh run >/dev/null 2>&1
cat "${OUT:-.gpu/out}/gpu_check.md"
