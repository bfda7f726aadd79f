#!/usr/bin/env bash
# What the decode step's non-GEMV kernels cost inside the CUDA graph, by leaving them out: a
# throwaway build with scripts/gpu/ablate.patch applied, in which LAMINA_ABLATE=attn skips
# rope_attention (rope, the cache store and attention) in the forward pass. Its tokens are meaningless;
# only the timing counts, against the same build with nothing skipped. Never commit the patch
# applied. Here:
#   git apply scripts/gpu/ablate.patch && cargo build --release --bin lamina \
#     && strip -o .gpu/lamina target/release/lamina && gzip -9f .gpu/lamina \
#     && git checkout src/model/llama.rs && mv .gpu/lamina_old.gz /tmp/   # no old build
# There, from the repo root with .gpu and .gl carried: scripts/gpu/ablate_decode.sh
set -u
export SKIP_CHECK=1 SKIP_BF16=1 REPS=${REPS:-3} VQUANTS="q8_0 q4_k_m"
export VARIANTS="LAMINA_ABLATE=attn"
exec "$(dirname "$0")/gguf_decode.sh"
