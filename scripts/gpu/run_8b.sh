#!/usr/bin/env bash
# Issue 4's measurements on a GPU machine, from the repo root, with .gpu (made by
# `scripts/gpu_check.sh pack`, which also copies ../shared/tools/hf_peer.py) and .gl carried:
# a random-weight Llama-3.1-8B-shape bf16 model made by hf_peer.py (which also prints the
# peer figures: copy rate, GEMM rate, transformers prefill/decode), then `lamina bench` on
# cuda and wgpu, logits against transformers (128-token prompt; 32768-token prompt), and
# decode at depth 32768. Everything it prints is the report (run it as
# `scripts/gpu/run_8b.sh | tee $OUT/run8b.log`); compare.json and the peer's anchor JSON land
# in $OUT.
set -u
OUT=${OUT:-/tmp/lamina-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
M=/tmp/m8b
step() { echo "== $* ($(date -u +%T))"; }
step hf_peer
timeout 300 python3 .gpu/hf_peer.py llama3-8b --save $M 2>&1 | grep -v Warning | tail -3
cp .gpu/testdata/npm/tokenizer-llama3_1/models/tokenizer*.json $M/
export RUST_LOG=warn
step bench cuda
timeout 120 /tmp/lamina bench -m $M --backends cuda -p 512 -n 128 -r 5 2>&1
step compare
timeout 300 python3 scripts/gpu/compare_hf.py --model $M --lamina /tmp/lamina --n 128 --long "${LONG:-32768}" 2>&1 | grep -v Warning
step bench cuda depth 32768
timeout 120 /tmp/lamina bench -m $M --backends cuda -p 512 -n 128 -d 32768 -r 2 2>&1
step bench wgpu
timeout 200 /tmp/lamina bench -m $M --backends wgpu -p 512 -n 128 -r 1 2>&1
step done
