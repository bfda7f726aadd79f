#!/usr/bin/env python3
"""Writes tests/data/gguf_dequant_fixture.bin: GGUF blocks and their values as computed by
implementations that are not ours, for tests/quant.rs.

Independent implementations used:
  - gguf-py (pip `gguf==0.19.0`, module gguf.quants): dequantizes every type; quantizes F16,
    BF16 and the legacy block types (a numpy port of GGML's reference quantizers).
  - GGML's own reference quantizers (quantize_row_q*_K_ref in ggml/src/ggml-quants.c), for the
    K-quants, which gguf-py cannot quantize: the C file is taken from the llama-cpp-python
    0.3.36 sdist that scripts/fetch_testdata.sh downloads, compiled alone with gcc (four
    unused ggml symbols stubbed) and called through ctypes.

Entries (all little-endian):
  kind 0  src f32 -> bytes quantized by gguf-py -> gguf-py's dequantized f32
  kind 1  src f32 -> bytes quantized by GGML's C reference -> gguf-py's dequantized f32
  kind 2  random block bytes (block scales made finite) -> gguf-py's dequantized f32

File: b"LQFX", u32 version (1), u32 entry count, then per entry: u8 name length, dtype name
(GGML spelling), u8 kind, u32 elements, u32 bytes, [f32 src * elements unless kind 2],
bytes, f32 dequantized * elements.

Usage (once; the result is committed):
  python3 -m venv /tmp/ggufvenv && /tmp/ggufvenv/bin/pip install gguf==0.19.0 numpy
  /tmp/ggufvenv/bin/python scripts/gguf_dequant_fixture.py [--sdist PATH] [--out PATH]
"""

import argparse
import ctypes
import os
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20261109
QK_K = 256

# Byte ranges of the f16 scales in each block, made finite in random-byte blocks.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def source(rng, blocks, block):
    """Blocks of four flavours: gaussian, all positive, one outlier, uniform."""
    out = []
    for b in range(blocks):
        flavour = b % 4
        if flavour == 0:
            x = rng.standard_normal(block)
        elif flavour == 1:
            x = 0.03 + 0.01 * np.abs(rng.standard_normal(block))
        elif flavour == 2:
            x = 0.1 * rng.standard_normal(block)
            x[rng.integers(block)] = 3.0
        else:
            x = rng.uniform(-1.0, 1.0, block)
        out.append(x)
    return np.concatenate(out).astype(np.float32)


def random_blocks(rng, name, blocks):
    size = quants.GGML_QUANT_SIZES[T[name]][1]
    raw = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    for at in F16_FIELDS[name]:
        scale = (rng.standard_normal(blocks) * 0.05).astype(np.float16)
        raw[:, at:at + 2] = scale.view(np.uint8).reshape(blocks, 2)
    return raw.reshape(-1)


def random_floats(rng, name, count):
    """Random bit patterns of F16/BF16, NaN and infinity excluded, subnormals included."""
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    exp_mask, exp_all = (0x7C00, 0x7C00) if name == "F16" else (0x7F80, 0x7F80)
    bits = np.where((bits & exp_mask) == exp_all, bits & ~np.uint16(0x4000), bits)
    return bits.astype(np.uint16).view(np.uint8)


def dequantize(name, raw, elems):
    if name == "F16":
        return raw.view(np.float16).astype(np.float32)
    return quants.dequantize(raw, T[name]).astype(np.float32).reshape(elems)


STUBS = r"""
#include <stdio.h>
#include <stdlib.h>
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line); abort();
}
size_t ggml_row_size(int type, long long ne) { abort(); }
const char *ggml_type_name(int type) { return "?"; }
size_t ggml_type_size(int type) { abort(); }
"""


def ggml_reference(sdist, workdir):
    """Compiles ggml-quants.c from the llama-cpp-python sdist into a shared library."""
    root = "llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(root + "include/") or
                   (m.name.startswith(root + "src/") and m.name.endswith((".h", ".c"))
                    and m.name.count("/") <= 6)]
        tar.extractall(workdir, members=members, filter="data")
    ggml = Path(workdir) / root
    stubs = Path(workdir) / "stubs.c"
    stubs.write_text(STUBS)
    lib = Path(workdir) / "libggmlquants.so"
    # Plain x86-64 code: no FMA contraction, so results are the C source's operations.
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-I", str(ggml / "include"),
                    "-I", str(ggml / "src"), str(ggml / "src/ggml-quants.c"), str(stubs),
                    "-lm", "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def ggml_quantize(lib, name, x):
    size = quants.GGML_QUANT_SIZES[T[name]][1]
    out = np.zeros(len(x) // QK_K * size, dtype=np.uint8)
    fn = getattr(lib, f"quantize_row_{name[:2].lower()}_K_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    x = np.ascontiguousarray(x, dtype=np.float32)
    fn(x.ctypes.data, out.ctypes.data, len(x))
    return out


def main():
    here = Path(__file__).resolve().parent.parent
    testdata = Path(os.environ.get("LAMINA_TESTDATA", Path.home() / ".cache/lamina-testdata"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdist", type=Path,
                    default=testdata / "downloads/llamacpp/llama_cpp_python-0.3.36.tar.gz")
    ap.add_argument("--out", type=Path, default=here / "tests/data/gguf_dequant_fixture.bin")
    args = ap.parse_args()
    if not args.sdist.exists():
        raise SystemExit(f"{args.sdist} is missing: run scripts/fetch_testdata.sh first")

    rng = np.random.default_rng(SEED)
    entries = []  # (name, kind, elems, src or None, bytes, deq)

    for name in ["F16", "BF16"]:
        src = source(rng, 4, 32)
        raw = (src.astype(np.float16).view(np.uint8) if name == "F16"
               else quants.quantize(src, T.BF16).reshape(-1))
        entries.append((name, 0, len(src), src, raw, dequantize(name, raw, len(src))))
        raw = random_floats(rng, name, 256)
        entries.append((name, 2, 256, None, raw, dequantize(name, raw, 256)))

    for name in LEGACY:
        src = source(rng, 8, 32)
        raw = quants.quantize(src, T[name]).reshape(-1)
        entries.append((name, 0, len(src), src, raw, dequantize(name, raw, len(src))))
        raw = random_blocks(rng, name, 8)
        entries.append((name, 2, 256, None, raw, dequantize(name, raw, 256)))

    with tempfile.TemporaryDirectory() as work:
        lib = ggml_reference(args.sdist, work)
        for name in KQUANTS:
            src = source(rng, 4, QK_K)
            raw = ggml_quantize(lib, name, src)
            entries.append((name, 1, len(src), src, raw, dequantize(name, raw, len(src))))
            raw = random_blocks(rng, name, 3)
            entries.append((name, 2, 3 * QK_K, None, raw, dequantize(name, raw, 3 * QK_K)))

    blob = bytearray(b"LQFX" + struct.pack("<II", 1, len(entries)))
    for name, kind, elems, src, raw, deq in entries:
        assert deq.dtype == np.float32 and len(deq) == elems
        blob += struct.pack("<B", len(name)) + name.encode() + struct.pack("<BII", kind, elems, len(raw))
        if src is not None:
            blob += src.astype("<f4").tobytes()
        blob += raw.tobytes() + deq.astype("<f4").tobytes()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(bytes(blob))
    print(f"wrote {args.out}: {len(entries)} entries, {len(blob)} bytes")


if __name__ == "__main__":
    main()
