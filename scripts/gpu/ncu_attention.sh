#!/usr/bin/env bash
# Nsight Compute's view of single decode attention launches from ops_cuda
# decode_attention_speed (32 layers replayed as a graph; L2 left warm as in decode). SKIPS
# lists launch indices of rope_attention: 768 launches a depth (128, 640, 2048, 8192,
# 32768), so the defaults land in depths 128 and 640. For each: the details ($OUT/ncu-
# attention-<skip>.txt) and the SASS with its warp stall samples, most sampled first
# ($OUT/ncu-sass-<skip>.csv). Then the durations of attention_decode and rope_kv_write (the
# parts) at depth 128, and of attention_decode and rope_attention at 32768. From the repo root with .gpu carried.
set -u
gzip -dc .gpu/tests/ops_cuda.gz >/tmp/ops_cuda && chmod +x /tmp/ops_cuda
CUDA_HOME=$(ls -d /usr/local/cuda-13.* | sort -V | tail -n1); export CUDA_HOME
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
O=${OUT:-/tmp}
T="/tmp/ops_cuda --ignored --exact perf::decode_attention_speed --nocapture"
ncu1() { timeout 150 "$NCU" --launch-count 1 --cache-control none --clock-control none "$@" $T; }
for skip in ${SKIPS:-100 800}; do
  echo "== rope_attention launch $skip"
  ncu1 --kernel-name rope_attention --launch-skip "$skip" --set full --import-source no \
    --metrics regex:smsp__pcsamp_warps_issue_stalled_.* >"$O/ncu-attention-$skip.txt" 2>&1
  grep -E "Duration|Elapsed Cycles|Issued Instructions  |Warp Cycles Per Issued|L2 Hit Rate  " "$O/ncu-attention-$skip.txt" | head -8
  grep -E "smsp__pcsamp_warps_issue_stalled_[a-z_]+ " "$O/ncu-attention-$skip.txt" | grep -v not_issued |
    sort -k3 -n -r | head -8
  ncu1 --kernel-name rope_attention --launch-skip "$skip" --section SourceCounters --section WarpStateStats \
    --page source --print-source sass --csv >"$O/ncu-sass-$skip.raw" 2>&1
  python3 - "$O/ncu-sass-$skip.raw" "$O/ncu-sass-$skip.csv" <<'PY'
import csv, sys
lines = open(sys.argv[1]).read().splitlines()
start = next((i for i, l in enumerate(lines) if l.startswith('"#') or l.startswith('"Address')), None)
if start is None:
    print("no SASS table"); sys.exit()
rows = list(csv.reader(lines[start:]))
head, body = rows[0], rows[1:]
col = next((i for i, h in enumerate(head) if h.startswith("Warp Stall Sampling (All")), None)
src = next((i for i, h in enumerate(head) if h == "Source"), 1)
body.sort(key=lambda r: -float((r[col] if col is not None and col < len(r) else "0") or 0))
with open(sys.argv[2], "w") as f:
    csv.writer(f).writerows([head] + body)
total = sum(float(r[col] or 0) for r in body if col < len(r))
print(f"stall samples {total:.0f}; top instructions:")
for r in body[:25]:
    print(f"  {r[col]:>6}  {r[src][:90]}")
PY
done
for ks in "attention_decode 100" "rope_kv_write 100" "attention_decode 3100" "rope_attention 3100"; do
  read -r k skip <<<"$ks"
  echo "== $k launch $skip"
  ncu1 --kernel-name $k --launch-skip $skip --section SpeedOfLight 2>&1 | grep -E "Duration|Elapsed Cycles|DRAM Through"
done
