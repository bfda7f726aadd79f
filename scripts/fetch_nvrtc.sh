#!/usr/bin/env bash
# Installs NVRTC 13.0 and the CUDA runtime headers (cuda_fp16.h, cuda_bf16.h) from PyPI into a
# cache outside the repository, so kernels/*.cu can be compiled on a machine without a GPU
# (tests/cuda_nvrtc.rs). Pinned to the GPU driver's CUDA (13.0): a newer NVRTC emits PTX/CUBIN
# that driver cannot load. Re-runs reuse the cache.
# Cache: $LAMINA_NVRTC_DIR, default ~/.cache/lamina-nvrtc. Prints the library folder last.
set -euo pipefail
DIR="${LAMINA_NVRTC_DIR:-$HOME/.cache/lamina-nvrtc}"
LIB="$DIR/nvidia/cu13/lib"
INC="$DIR/nvidia/cu13/include"

if [ ! -e "$LIB/libnvrtc.so.13" ] || [ ! -e "$INC/cuda_bf16.h" ] || [ ! -e "$DIR/.complete" ]; then
  mkdir -p "$DIR"
  python3 -m pip install --disable-pip-version-check -q --upgrade --target "$DIR" \
    'nvidia-cuda-nvrtc==13.0.88' 'nvidia-cuda-runtime==13.0.*' >&2 \
    || { echo "fetch_nvrtc: pip install into $DIR failed" >&2; exit 1; }
  [ -e "$LIB/libnvrtc.so.13" ] || { echo "fetch_nvrtc: $LIB/libnvrtc.so.13 missing after install" >&2; exit 1; }
  [ -e "$INC/cuda_bf16.h" ] || { echo "fetch_nvrtc: $INC/cuda_bf16.h missing after install" >&2; exit 1; }
  touch "$DIR/.complete"
fi
echo "$LIB"
