#!/usr/bin/env bash
# One-time set-up of a fresh Debian/Ubuntu machine for lamina: the Vulkan loader and Mesa's
# lavapipe (a CPU Vulkan driver, so the wgpu backend runs without a GPU), a Rust toolchain if
# there is none, NVRTC for the CUDA kernel compile check, Python packages for the tiny test
# models, the test data (registries only, sha256-checked) and the tiny random-weight models.
# Safe to re-run: every step reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if ! command -v cargo >/dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# gguf: llama.cpp's Python reader, which tests/quantize.rs runs on every file it writes.
python3 -c 'import numpy, safetensors, gguf, importlib.metadata as m; assert m.version("gguf") == "0.19.0"' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check numpy safetensors gguf==0.19.0
scripts/fetch_testdata.sh >/dev/null
scripts/fetch_nvrtc.sh >/dev/null
python3 scripts/make_tiny_models.py >/dev/null
