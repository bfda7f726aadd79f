#!/usr/bin/env bash
# README's first command: set up a fresh machine, build, and generate text with the real
# SmolLM2-135M-Instruct model on whichever backend `auto` finds (cuda on an NVIDIA GPU,
# else wgpu: a GPU through Vulkan/Metal/DX12, or the CPU through lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release
TD="${LAMINA_TESTDATA:-$HOME/.cache/lamina-testdata}"
exec target/release/lamina run -m "$TD/SmolLM2-135M-Instruct.Q4_1.gguf" \
  -p "${PROMPT:-The capital of France is}" -n "${N:-32}" --temp 0 "$@"
