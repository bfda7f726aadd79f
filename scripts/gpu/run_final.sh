#!/usr/bin/env bash
# Issue 4 and 5 figures on a GPU machine, from the repo root, with .gpu (scripts/gpu_check.sh
# pack) and .gl carried: a random-weight Llama-3.1-8B-shape bf16 model (hf_peer.py, which
# prints the peer figures of the same run), its Q8_0 and Q4_K_M GGUFs made by
# `lamina quantize`, a compressed-tensors W8A8 copy (make_w8a8.py), and `lamina bench` of
# each on cuda (and wgpu, shorter). Prints the report; run as `... | tee $OUT/final.log`.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b
step() { echo "== $* ($(date -u +%T))"; }
step hf_peer
timeout 240 python3 .gpu/hf_peer.py llama3-8b --save $M 2>&1 | grep -E '^\{|saved'
cp .gpu/testdata/npm/tokenizer-llama3_1/models/tokenizer*.json $M/
export RUST_LOG=warn
step quantize q8_0 and q4_k_m
timeout 150 $L quantize $M /tmp/m8b-q8_0.gguf --type q8_0 2>&1 | tail -4
timeout 240 $L quantize $M /tmp/m8b-q4_k_m.gguf --type q4_k_m 2>&1 | tail -6
step bench cuda: bf16, q8_0, q4_k_m
for m in $M /tmp/m8b-q8_0.gguf /tmp/m8b-q4_k_m.gguf; do
  timeout 90 $L bench -m $m --backends cuda -p 512 -n 128 -r 5 2>&1 | tail -1
done
step w8a8
timeout 150 python3 scripts/gpu/make_w8a8.py $M /tmp/m8b-w8a8 2>&1 | tail -1
timeout 90 $L bench -m /tmp/m8b-w8a8 --backends cuda -p 512 -n 128 -r 5 2>&1 | tail -1
step bench wgpu
timeout 120 $L bench -m $M --backends wgpu -p 512 -n 128 -r 1 2>&1 | tail -1
for m in /tmp/m8b-q8_0.gguf /tmp/m8b-q4_k_m.gguf /tmp/m8b-w8a8; do
  timeout 60 $L bench -m $m --backends wgpu -p 128 -n 32 -r 1 2>&1 | tail -1
done
step done
