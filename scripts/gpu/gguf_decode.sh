#!/usr/bin/env bash
# Decode figures after the GGUF GEMV and launch-count work: CUDA conformance and golden
# tests (with ops_cuda's gemv_speed table in $OUT/gpu_check.log; SKIP_CHECK=1 leaves them
# out; SKIP_BF16=1 the bf16 bench), then `lamina bench` of
# the 32-layer Llama-3.1-8B-shape model in bf16 and quantized by lamina quantize to Q8_0
# and Q4_K_M; each of $VQUANTS (default q4_k_m) again under each of $VARIANTS (environment
# settings separated by '|'). With
# .gpu/lamina_old.gz (an earlier build), that binary is benched right after ours on each
# model: before and after in the same run. From the repo root with .gpu and .gl carried.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
O=${OUT:-/tmp/out}; mkdir -p $O
if [ -z "${SKIP_CHECK:-}" ]; then
  scripts/gpu_check.sh run >/dev/null 2>&1
  cat "$O/gpu_check.md"
  sed -n '/^dtype    shape/,/gemv_speed \.\.\. ok/p' "$O/gpu_check.log"
  echo "checks done after $SECONDS s"
fi
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m8b OLD=
[ -f .gpu/lamina_old.gz ] && gzip -dc .gpu/lamina_old.gz >/tmp/lamina_old && chmod +x /tmp/lamina_old && OLD=/tmp/lamina_old
bench() {  # model, then the old binary on it
  $L bench -m "$1" --backends cuda -p 512 -n 128 -r ${REPS:-5} 2>&1 | tail -1
  [ -n "$OLD" ] && echo "old: $($OLD bench -m "$1" --backends cuda -p 512 -n 128 -r ${REPS:-5} 2>&1 | tail -1)"
}
export RUST_LOG=warn
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f $M/config.json ] || python3 scripts/gpu/make_llama.py $M ${LAYERS:-32} 2>&1 | tail -1
if [ -z "${SKIP_BF16:-}" ]; then echo "== bf16"; bench $M; fi
for q in q8_0 q4_k_m; do $L quantize $M /tmp/m8b-$q.gguf --type $q 2>&1 | tail -1; done
rm -rf $M
for q in q8_0 q4_k_m; do
  echo "== $q"
  bench /tmp/m8b-$q.gguf
done
IFS='|' read -ra vs <<<"${VARIANTS:-}"
for q in ${VQUANTS:-q4_k_m}; do
  for v in "${vs[@]}"; do
    echo "== $q $v"
    env $v $L bench -m /tmp/m8b-$q.gguf --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
  done
done
echo "done after $SECONDS s"
