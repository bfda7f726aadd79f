#!/usr/bin/env bash
# Issue 5's figures on a GPU machine, from the repo root, with .gpu (TESTS="ops_cuda golden"
# scripts/gpu_check.sh pack) and .gl carried: a random-weight Llama-3.1-8B-shape bf16 model
# (make_llama.py, the shape of hf_peer.py, whose peer figures run_8b.sh prints), its Q8_0
# and Q4_K_M GGUFs made by `lamina quantize` (timed), `lamina bench` of each on cuda, the KL
# divergence of each from the bf16 model (`lamina perplexity --kl-base`, cuda), a
# compressed-tensors W8A8 copy (make_w8a8.py) and its bench, the quantized models on wgpu
# (shorter), then the CUDA conformance tests (scripts/gpu_check.sh run) while time is left.
# Run as `scripts/gpu/run_final.sh | tee $OUT/final.log`.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b T=tests/data/gettysburg_declaration.txt
step() { echo "== $* ($(date -u +%T), ${SECONDS}s)"; }
step make model
timeout 150 python3 scripts/gpu/make_llama.py $M 32 2>&1 | tail -1
export RUST_LOG=info
for q in q8_0 q4_k_m; do
  step quantize $q
  /usr/bin/time -f "quantize $q: %e s wall, %M KB max RSS" timeout 240 $L quantize $M /tmp/m8b-$q.gguf --type $q 2>&1 | grep -E "wrote|quantize $q|rror" | sed 's/.*lamina::convert[^ ]* //' | tail -3
done
export RUST_LOG=warn
step bench cuda: q8_0, q4_k_m
for q in q8_0 q4_k_m; do
  timeout 90 $L bench -m /tmp/m8b-$q.gguf --backends cuda -p 512 -n 128 -r 5 2>&1 | tail -1
done
for q in q8_0 q4_k_m; do
  step KL $q vs bf16
  timeout 120 $L perplexity -m /tmp/m8b-$q.gguf --kl-base $M -f $T --backend cuda -c 512 >"${OUT:-/tmp}/kl_$q.txt" 2>&1
  grep -E "Mean PPL|Mean    KLD|Median  KLD|99.0%   KLD|Maximum KLD|Same top p|tokens/s|rror" "${OUT:-/tmp}/kl_$q.txt"
done
step w8a8
timeout 150 python3 scripts/gpu/make_w8a8.py $M /tmp/m8b-w8a8 2>&1 | tail -1
timeout 90 $L bench -m /tmp/m8b-w8a8 --backends cuda -p 512 -n 128 -r 5 2>&1 | tail -1
step bench wgpu: q8_0, q4_k_m, w8a8
for m in /tmp/m8b-q8_0.gguf /tmp/m8b-q4_k_m.gguf /tmp/m8b-w8a8; do
  timeout 60 $L bench -m $m --backends wgpu -p 128 -n 32 -r 1 2>&1 | tail -1
done
rm -rf $M /tmp/m8b-*
if [ "$SECONDS" -lt 430 ]; then
  step gpu_check
  timeout $((580 - SECONDS)) scripts/gpu_check.sh run >/dev/null 2>&1
  cat "${OUT:-.gpu/out}/gpu_check.md"
fi
step done
