#!/usr/bin/env bash
# A decode change that must not change a single bit: ops_cuda without its timing tests
# (with SKIP_CHECK=1; without it gguf_decode.sh runs all checks), then
# scripts/gpu/gguf_decode.sh (its settings from the environment), then greedy text (96 tokens) of the quantized 8B-shape models by this build and by
# .gpu/lamina_old.gz, which must be the same bytes. From the repo root with .gpu and .gl
# carried; the models stay in /tmp from gguf_decode.sh.
set -u
O=${OUT:-/tmp/out}; mkdir -p $O
if [ -n "${SKIP_CHECK:-}" ]; then  # else gguf_decode.sh runs gpu_check.sh (ops_cuda, golden)
  gzip -dc .gpu/tests/ops_cuda.gz >/tmp/ops_cuda && chmod +x /tmp/ops_cuda
  CUDA_HOME=/usr/local/cuda-13.0 /tmp/ops_cuda --include-ignored --skip perf 2>&1 | grep -E "^test |test result" \
    | tee $O/ops_cuda.log | grep -E "FAILED|panicked|test result"
fi
scripts/gpu/gguf_decode.sh
for q in q4_k_m q8_0; do
  for b in lamina lamina_old; do
    RUST_LOG=warn /tmp/$b run -m /tmp/m8b-$q.gguf --backend cuda -p "The capital of France is" --temp 0 -n 96 \
      >$O/text_${q}_$b.txt 2>/dev/null
  done
  if cmp -s $O/text_${q}_lamina.txt $O/text_${q}_lamina_old.txt; then
    echo "$q greedy text: same bytes as the old build ($(wc -c <$O/text_${q}_lamina.txt))"
  else echo "$q greedy text: DIFFERS from the old build"; fi
done
