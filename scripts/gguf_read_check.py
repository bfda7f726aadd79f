#!/usr/bin/env python3
"""Reads a GGUF file written by `lamina quantize` with the Python `gguf` package (pip
`gguf==0.19.0`, llama.cpp's own reader), dequantizes every tensor with gguf-py and compares the
values with lamina's dequantization of the same file.

Usage: gguf_read_check.py FILE.gguf OURS.bin [--expect-key KEY ...]

OURS.bin (written by tests/quantize.rs): per tensor, in any order: u32 name length, the name
(UTF-8), u64 element count, that many little-endian f32 values.

Every type lamina writes (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K) is
dequantized by lamina in the order of operations GGML and gguf-py use, so the check is bit
for bit: any difference, a tensor one side lacks, or a missing metadata key fails it. Exit
status 0 when everything agrees, 1 otherwise, 2 when gguf-py is missing.
"""
import argparse
import struct
import sys

try:
    import numpy as np
    import gguf
    from gguf.quants import dequantize
except ImportError as e:  # the test treats this as a failure, not a skip
    print(f"gguf_read_check: cannot import gguf-py ({e}); pip install gguf==0.19.0", file=sys.stderr)
    sys.exit(2)


def read_ours(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        name = data[pos:pos + n].decode()
        pos += n
        (count,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        out[name] = np.frombuffer(data, dtype="<f4", count=count, offset=pos)
        pos += 4 * count
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf_file")
    ap.add_argument("ours")
    ap.add_argument("--expect-key", action="append", default=[])
    a = ap.parse_args()

    reader = gguf.GGUFReader(a.gguf_file)
    ours = read_ours(a.ours)
    problems = []
    for key in a.expect_key:
        if key not in reader.fields:
            problems.append(f"metadata key {key} is missing")
    seen = set()
    for t in reader.tensors:
        seen.add(t.name)
        ref = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        mine = ours.get(t.name)
        if mine is None:
            problems.append(f"{t.name}: not in lamina's dump")
            continue
        if mine.shape != ref.shape:
            problems.append(f"{t.name}: {mine.size} values from lamina, {ref.size} from gguf-py")
            continue
        bad = np.flatnonzero(mine.view(np.uint32) != ref.view(np.uint32))
        if bad.size:
            i = bad[0]
            problems.append(
                f"{t.name} ({t.tensor_type.name}): {bad.size} of {ref.size} values differ, "
                f"first at {i}: lamina {mine[i]!r}, gguf-py {ref[i]!r}"
            )
    for name in ours.keys() - seen:
        problems.append(f"{name}: in lamina's dump but gguf-py does not list it")
    for p in problems:
        print(f"gguf_read_check: {p}", file=sys.stderr)
    types = sorted({t.tensor_type.name for t in reader.tensors})
    print(f"{a.gguf_file}: {len(reader.tensors)} tensors ({', '.join(types)}), "
          f"{len(reader.fields)} metadata keys, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
