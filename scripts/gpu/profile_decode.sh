#!/usr/bin/env bash
# Where a decode step's time goes on the GPU: a 4-layer Llama-3.1-8B-shape model in bf16 and
# quantized by lamina quantize to each of $QUANTS (default q8_0 q4_k_m); for each, its tg
# figure from `lamina bench` and every kernel of a few decode steps timed by Nsight Compute
# (LAMINA_CUDA_GRAPHS=0: kernel by kernel, each timed alone with cold caches, so the sum
# leaves out the gaps between launches and the overlap of dependent launches).
# Run from the repo root with .gpu carried (scripts/gpu_check.sh pack); writes
# $OUT/profile-<model>.csv and prints a per-kernel summary.
set -u
gzip -dc .gpu/lamina.gz >/tmp/lamina && chmod +x /tmp/lamina
L=/tmp/lamina M=/tmp/m4 OUT=${OUT:-/tmp}
export RUST_LOG=warn
[ -d $M ] || python3 scripts/gpu/make_llama.py $M 4 2>&1 | tail -1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
models=$M
for q in ${QUANTS-q8_0 q4_k_m}; do
  [ -f /tmp/m4-$q.gguf ] || $L quantize $M /tmp/m4-$q.gguf --type $q 2>&1 | tail -1
  models="$models /tmp/m4-$q.gguf"
done
for m in $models; do
  n=$(basename $m .gguf)
  echo "== $n"
  $L bench -m $m --backends cuda -p 512 -n 128 -r 3 2>&1 | tail -1
  LAMINA_CUDA_GRAPHS=0 timeout 300 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
    $L bench -m $m --backends cuda -p 8 -n 4 -r 1 >$OUT/profile-$n.csv 2>$OUT/profile-$n.err
  echo "ncu rc=$? lines=$(wc -l <$OUT/profile-$n.csv)"
  python3 - "$OUT/profile-$n.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, vi, gi = head.index("Kernel Name"), head.index("Metric Value"), head.index("Grid Size")
ks = [(r[ki].split("(")[0], r[gi], float(r[vi].replace(",", "")) / 1e3) for r in rows]
tot = collections.defaultdict(lambda: [0, 0.0])
for k, g, us in ks:
    tot[k][0] += 1; tot[k][1] += us
for k, (n, us) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f"{k:40s} n={n:5d} total={us:10.1f}us mean={us/n:8.2f}us")
# The last decode step, kernel by kernel: from the last embedding on.
last = max(i for i, (k, _, _) in enumerate(ks) if k == "embedding")
print("last decode step:")
for k, g, us in ks[last:]:
    print(f"  {k:36s} grid {g:>14s} {us:8.2f}us")
print(f"  sum {sum(us for _, _, us in ks[last:]):.1f}us over {len(ks) - last} kernels")
PY
done
