#!/usr/bin/env bash
# Nsight Compute's view of single one-token GEMV launches from ops_cuda gemv_speed (weights
# from DRAM, launches back to back): speed of light, warp stall reasons, memory workload and
# occupancy. SKIPS lists launch indices to profile (gemv_speed's order: BF16 qkv, o,
# gate_up, down, lm_head, then Q8_0, Q4_K, Q6_K the same; the defaults land in BF16 o and
# Q8_0 o). From the repo root with .gpu carried; full reports in $OUT/ncu-<skip>.txt.
set -u
gzip -dc .gpu/tests/ops_cuda.gz >/tmp/ops_cuda && chmod +x /tmp/ops_cuda
CUDA_HOME=$(ls -d /usr/local/cuda-13.* | sort -V | tail -n1); export CUDA_HOME
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
O=${OUT:-/tmp}
for skip in ${SKIPS:-450 2100}; do
  echo "== launch $skip"
  timeout 280 "$NCU" --kernel-name regex:matmul_gemv --launch-skip "$skip" --launch-count 1 \
    --cache-control none --clock-control none \
    --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section LaunchStats --section Occupancy --section SchedulerStats \
    /tmp/ops_cuda --ignored --exact perf::gemv_speed --nocapture >"$O/ncu-$skip.txt" 2>&1
  grep -E "Grid Size|Block Size|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Stall|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Dynamic Shared|Issued Warp|No Eligible|Active Warps Per" "$O/ncu-$skip.txt" | head -40
done
