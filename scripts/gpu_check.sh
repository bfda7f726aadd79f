#!/usr/bin/env bash
# lamina's CUDA tests on a machine with an NVIDIA GPU, in two halves (that machine has no
# cargo):
#   scripts/gpu_check.sh pack   here: builds the release test binaries named in $TESTS,
#                               strips and compresses them into .gpu/tests/ (git-ignored;
#                               carry .gpu to the GPU machine).
#   scripts/gpu_check.sh run    there, from the repo root: runs each binary with
#                               --include-ignored (GPU tests too) and writes
#                               $OUT/gpu_check.md (summary) and $OUT/gpu_check.log (all output).
# The backend finds the CUDA libraries itself (/usr/local/cuda-13.0, /usr/lib/libcuda.so,
# LD_LIBRARY_PATH, CUDA_HOME); CUDA_HOME is set to the newest /usr/local/cuda-13.* if unset.
# A binary that fails is run again with LAMINA_CUDA_SYNC=1 (each launch synchronized, so
# the log names the kernel that faulted). SANITIZE=1 also runs ops_cuda under
# compute-sanitizer memcheck when the toolkit has it.
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS="${TESTS:-ops_cuda golden ops_wgpu}"
PACK=.gpu/tests
# Per-binary test filters (libtest arguments): the golden binary's CUDA and wgpu halves on the
# tiny models (the real GGUFs are too large to carry; the reference half runs in CI).
ARGS_golden="cuda wgpu --skip smollm2 --skip qwen25_coder"

pack() {
  local args=() t
  for t in $TESTS; do args+=(--test "$t"); done
  mkdir -p "$PACK"
  rm -f "$PACK"/*.gz
  cargo test --release --no-run --message-format=json "${args[@]}" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
      strip -o "$PACK/$name" "$exe"
      gzip -9f "$PACK/$name"
      echo "packed $name ($(du -h "$PACK/$name.gz" | cut -f1))"
    done
  # The CLI, and the tokenizer the tiny llama3 model (and the 8B-shape model) use.
  cargo build --release --bin lamina
  strip -o .gpu/lamina target/release/lamina && gzip -9f .gpu/lamina
  local td="${LAMINA_TESTDATA:-$HOME/.cache/lamina-testdata}"
  mkdir -p .gpu/testdata/npm/tokenizer-llama3_1/models
  cp "$td"/npm/tokenizer-llama3_1/models/tokenizer*.json .gpu/testdata/npm/tokenizer-llama3_1/models/
  # The peer script (../shared is not carried to the GPU machine; the repo is).
  cp ../shared/tools/hf_peer.py .gpu/ 2>/dev/null || cp /work/shared/tools/hf_peer.py .gpu/
  du -sh .gpu
}

run() {
  local out="${OUT:-$PWD/.gpu/out}"
  mkdir -p "$out"
  local log="$out/gpu_check.log" md="$out/gpu_check.md" bin=/tmp/lamina-gpu-tests
  : >"$log"
  if [ -z "${CUDA_HOME:-}" ]; then
    CUDA_HOME=$(ls -d /usr/local/cuda-13.* 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$CUDA_HOME" ] && export CUDA_HOME
  fi
  {
    echo "# lamina gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
    echo "CUDA_HOME=${CUDA_HOME:-unset} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-unset}"
  } | tee -a "$log"
  {
    echo "# CUDA tests on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)"
    echo
    echo "| test binary | exit | result |"
    echo "|---|---|---|"
  } >"$md"
  mkdir -p "$bin"
  # The tiny models, made there from the committed script (numpy and safetensors are there).
  export LAMINA_TESTDATA=/tmp/lamina-testdata
  mkdir -p "$LAMINA_TESTDATA" && cp -r .gpu/testdata/. "$LAMINA_TESTDATA/"
  python3 scripts/make_tiny_models.py >>"$log" 2>&1 || echo "make_tiny_models failed" | tee -a "$log"
  local status=0 gz name rc res args
  for gz in "$PACK"/*.gz; do
    [ -e "$gz" ] || { echo "no test binaries in $PACK: run 'scripts/gpu_check.sh pack' first" | tee -a "$log"; exit 2; }
    name=$(basename "$gz" .gz)
    gzip -dc "$gz" >"$bin/$name" && chmod +x "$bin/$name"
    echo "=== $name" | tee -a "$log"
    set +e
    args="ARGS_$name"
    # shellcheck disable=SC2086
    "$bin/$name" --include-ignored --test-threads=1 --nocapture ${!args:-} 2>&1 | tee "$out/$name.log" >>"$log"
    rc=${PIPESTATUS[0]}
    set -e
    res=$(grep -E '^test result:' "$out/$name.log" | tail -n1 || true)
    echo "| $name | $rc | ${res:-no result line (crashed?)} |" >>"$md"
    if [ "$rc" -ne 0 ]; then
      status=1
      grep -E '^test .* FAILED$' "$out/$name.log" | sed 's/^/    /' >>"$md" || true
      echo "=== $name again with LAMINA_CUDA_SYNC=1" | tee -a "$log"
      # shellcheck disable=SC2086
      LAMINA_CUDA_SYNC=1 RUST_BACKTRACE=1 "$bin/$name" --include-ignored --test-threads=1 ${!args:-} >>"$log" 2>&1 || true
    fi
    rm -f "$out/$name.log"
  done
  if [ "${SANITIZE:-0}" = 1 ] && [ -x "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" ] && [ -e "$bin/ops_cuda" ]; then
    echo "=== compute-sanitizer memcheck ops_cuda" | tee -a "$log"
    set +e
    "$CUDA_HOME/bin/compute-sanitizer" --tool memcheck --error-exitcode 99 "$bin/ops_cuda" --ignored --test-threads=1 >>"$log" 2>&1
    rc=$?
    set -e
    echo "| compute-sanitizer memcheck ops_cuda | $rc | $([ "$rc" = 0 ] && echo clean || echo 'errors: see gpu_check.log') |" >>"$md"
    [ "$rc" = 0 ] || status=1
  fi
  cat "$md"
  return $status
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
