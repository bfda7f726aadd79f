#!/usr/bin/env bash
# After a change to the GGUF GEMV: CUDA conformance and golden tests, then decode and
# prefill of the 32-layer Llama-3.1-8B-shape model quantized by lamina quantize to Q8_0 and
# Q4_K_M, with the dp4a one-token GEMV (default) and without it (LAMINA_CUDA_GEMV_IDOT=0),
# in the same run. From the repo root with .gpu and .gl carried.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
O=${OUT:-/tmp/out}; mkdir -p $O
scripts/gpu_check.sh run >/dev/null 2>&1
cat "$O/gpu_check.md"
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b
export RUST_LOG=warn
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python3 scripts/gpu/make_llama.py $M ${LAYERS:-32} 2>&1 | tail -1
for q in q8_0 q4_k_m; do
  /usr/bin/time -f "quantize $q %e s, max RSS %M KB" $L quantize $M /tmp/m8b-$q.gguf --type $q 2>&1 | tail -1
done
rm -rf $M
for q in q8_0 q4_k_m; do
  for idot in 1 0; do
    echo "== $q IDOT=$idot"
    LAMINA_CUDA_GEMV_IDOT=$idot $L bench -m /tmp/m8b-$q.gguf --backends cuda -p 512 -n 128 -r ${REPS:-5} 2>&1 | tail -3
  done
done
