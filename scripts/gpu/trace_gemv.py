#!/usr/bin/env python3
"""Reads the ring written by a build with scripts/gpu/trace_gemv.patch (LAMINA_CUDA_TRACE=FILE):
records {tag, block, event, ns} from the GGUF GEMV (tag = rows + cols << 17; events 0 entry,
1 after pdl_begin, 2 x staged, 16 + 2k chunk k arrived and 17 + 2k computed (block 0's warp 0),
1000 + w
warp w done) and decode attention (tag 0xA0000000: 0 entry, 1 after pdl_begin, 5 own slice
done). Prints the start and end of one decode step launch by launch and per-kind means
over the steps in the ring."""
import collections
import struct
import sys

data = open(sys.argv[1], "rb").read()
cap = (len(data) // 16) - 1
count = struct.unpack_from("<I", data, 0)[0]
n = min(count, cap)
first = count % cap if count > cap else 0
recs = []
hi, ref = 0, None
for j in range(n):
    i = (first + j) % cap
    tag, blk, ev, t = struct.unpack_from("<IIII", data, 16 * (1 + i))
    tu = t + hi
    if ref is not None and tu < ref - (1 << 31):
        hi += 1 << 32
        tu += 1 << 32
    ref = tu if ref is None else max(ref, tu)
    recs.append((tu, tag, blk, ev))
recs.sort()
print(f"{count} records written, {n} kept")


def kind(tag):
    if tag == 0xA0000000:
        return "attn"
    rows, cols = tag & 0x1FFFF, tag >> 17
    names = {(6144, 4096): "qkv", (4096, 4096): "o", (28672, 4096): "gate_up", (14336, 4096): "gate_up",
             (4096, 14336): "down", (128256, 4096): "lm_head"}
    return names.get((rows, cols), f"r{rows}c{cols}")


# Launches: a tag's records split where they are more than 30 us apart.
by_tag = collections.defaultdict(list)
for r in recs:
    by_tag[r[1]].append(r)
launches = []
for tag, rs in by_tag.items():
    cur = [rs[0]]
    for r in rs[1:]:
        if r[0] - cur[-1][0] > 30_000:
            launches.append((tag, cur))
            cur = []
        cur.append(r)
    launches.append((tag, cur))


def summary(tag, rs):
    ev = collections.defaultdict(list)
    for t, _, b, e in rs:
        ev[e].append((t, b))
    t0 = min(t for t, _ in ev[0]) if ev[0] else None
    p = [t for t, _ in ev[1]]
    s = [t for t, _ in ev[2]]
    ends = [t for e, v in ev.items() if e >= 1000 for t, _ in v]
    if kind(tag) == "attn":
        ends = [t for t, _ in ev[5]]
    chunks = []  # per block (warp 0): arrival of chunk 0 after staging, compute times
    per_blk = collections.defaultdict(dict)
    for e, v in ev.items():
        if 16 <= e < 1000:
            for t, b in v:
                per_blk[b][e] = t
    comp, waits, first_wait = [], [], []
    for b, d in per_blk.items():
        k = 0
        while 16 + 2 * k in d and 17 + 2 * k in d:
            comp.append(d[17 + 2 * k] - d[16 + 2 * k])
            if k > 0 and 15 + 2 * k in d:
                waits.append(d[16 + 2 * k] - d[15 + 2 * k])
            k += 1
    sb = {b: t for t, b in ev[2]}
    for b, d in per_blk.items():
        if 16 in d and b in sb:
            first_wait.append(d[16] - sb[b])
    mean = lambda v: sum(v) / len(v) if v else float("nan")
    # Per block: its release, its staging (x staged after release) and its end (last warp).
    rel = {b: t for t, b in ev[1]}
    stage_b = [t - rel[b] for t, b in ev[2] if b in rel]
    bend = collections.defaultdict(int)
    for e, v in ev.items():
        if e >= 1000:
            for t, b in v:
                bend[b] = max(bend[b], t)
    ends_sorted = sorted(bend.values())
    pct = lambda q: ends_sorted[min(len(ends_sorted) - 1, int(q * len(ends_sorted)))] if ends_sorted else None
    return dict(rel=rel, stage_b=mean(stage_b), stage_bmax=max(stage_b) if stage_b else float("nan"),
                late=mean([t - min(rel.values()) for t in rel.values()]) if rel else float("nan"),
                end10=pct(0.1), end50=pct(0.5), entries=[t for t, _ in ev[0]],
                kind=kind(tag), t0=t0, p0=min(p) if p else None, p1=max(p) if p else None,
                s1=max(s) if s else None, smean=mean(s), e0=min(ends) if ends else None,
                e1=max(ends) if ends else None, blocks=len(ev[0]), comp=mean(comp), wait=mean(waits),
                first=mean(first_wait), nchunk=len(comp))


L = sorted((summary(tag, rs) for tag, rs in launches), key=lambda d: d["p0"] or d["t0"] or 0)
L = [d for d in L if d["p0"] is not None and d["e1"] is not None]
heads = [i for i, d in enumerate(L) if d["kind"] == "lm_head"]
if len(heads) < 2:
    sys.exit("fewer than two lm_head launches in the ring")
a, b = heads[-2], heads[-1]
step = L[a + 1:b + 1]
base = L[a]["e1"]
print(f"\none decode step ({len(step)} launches), times in us from the previous lm_head's end")
print("kind      blocks  entry0  release  staged   end0    end1    dur   gap  first  comp  wait")
prev_end = base
for d in step[:11] + step[-2:]:
    f = lambda v: (v - base) / 1e3 if v is not None else float("nan")
    print(f"{d['kind']:9s} {d['blocks']:5d} {f(d['t0']):7.2f} {f(d['p0']):7.2f} {f(d['s1']):7.2f} "
          f"{f(d['e0']):7.2f} {f(d['e1']):7.2f} {(d['e1'] - d['p0']) / 1e3:6.2f} {(d['p0'] - prev_end) / 1e3:5.2f} "
          f"{d['first'] / 1e3:5.2f} {d['comp'] / 1e3:5.2f} {d['wait'] / 1e3:5.2f}")
    prev_end = d["e1"]

# Per kind over every complete step in the ring: release after the previous launch's end,
# release to staged (max), first chunk after staging, the kernel's span, its tail.
agg = collections.defaultdict(lambda: collections.defaultdict(list))
for i in range(heads[0] + 1, heads[-1] + 1):
    d, prev = L[i], L[i - 1]
    k = d["kind"]
    agg[k]["gap"].append((d["p0"] - prev["e1"]) / 1e3)
    agg[k]["early"].append((prev["e1"] - d["t0"]) / 1e3 if d["t0"] else float("nan"))
    agg[k]["span"].append((d["e1"] - d["p0"]) / 1e3)
    agg[k]["tail"].append((d["e1"] - d["e0"]) / 1e3)
    if d["s1"]:
        agg[k]["stage"].append(d["stage_b"] / 1e3)
        agg[k]["stmax"].append(d["stage_bmax"] / 1e3)
    agg[k]["late"].append(d["late"] / 1e3)
    agg[k]["pre"].append(sum(1 for t in d["entries"] if t < prev["e1"]) / max(1, d["blocks"]))
    if d["end10"]:
        agg[k]["end10"].append((d["end10"] - d["p0"]) / 1e3)
        agg[k]["end50"].append((d["end50"] - d["p0"]) / 1e3)
    agg[k]["first"].append(d["first"] / 1e3)
    agg[k]["comp"].append(d["comp"] / 1e3)
    agg[k]["wait"].append(d["wait"] / 1e3)
print(f"\nper kind over {len(heads) - 1} steps (us; gap: release after the previous end; early: "
      "first block's entry before the previous end; tail: last warp's end after the first's)")
print("stage: a block's x staging after its release (mean, max); late: blocks' release after the "
      "first's (mean); pre: share of blocks entered before the previous launch ended; end10/end50: "
      "10th/50th percentile of blocks' ends after the first release")
print("kind       n    gap  early  stage  stmax   late   pre  first   comp   wait  end10  end50   tail   span")
tot = 0.0
for k, v in sorted(agg.items()):
    m = {x: sum(y) / len(y) for x, y in v.items() if y}
    steps = len(heads) - 1
    tot += (m["gap"] + m["span"]) * len(v["span"]) / steps
    print(f"{k:9s} {len(v['span']):4d} {m['gap']:6.2f} {m['early']:6.2f} {m.get('stage', 0):6.2f} "
          f"{m.get('stmax', 0):6.2f} {m['late']:6.2f} {m['pre']:5.2f} {m['first']:6.2f} {m['comp']:6.2f} "
          f"{m['wait']:6.2f} {m.get('end10', 0):6.2f} {m.get('end50', 0):6.2f} {m['tail']:6.2f} {m['span']:6.2f}")
print(f"sum of gap + span per step: {tot:.1f} us")
