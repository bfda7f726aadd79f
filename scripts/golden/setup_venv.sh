#!/usr/bin/env bash
# One-off for developers who regenerate the golden files (tests/golden/*.json).
# CI never runs this: the goldens are committed, and CI needs only numpy + safetensors (for
# scripts/make_tiny_models.py). The venv is ~5.6 GB (see requirements.txt for why).
#
# Usage: scripts/golden/setup_venv.sh [VENV_DIR]   (default /opt/golden-venv)
# Then:  scripts/fetch_testdata.sh && VENV/bin/python scripts/make_tiny_models.py
#        VENV/bin/python scripts/golden/make_golden.py [NAME ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-/opt/golden-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" -c 'import torch, transformers, gguf, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__)'
echo "venv ready: $venv"
