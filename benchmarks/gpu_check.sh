#!/usr/bin/env bash
# Every GPU check of the GPU engine and of many jobs on one GPU, in one device call.
#
# Here, once (stages micro's wheel and the wheels the device image lacks, in the ignored .gpu/):
#   bash ../shared/gpu/stage-micro.sh && bash benchmarks/gpu_check.sh --stage
# Then three device calls in a row (../shared/gpu/README.md):
#   1. carry [".gpu/a"]:      mkdir -p /tmp/kit && cp .gpu/a/part /tmp/kit/partA
#   2. carry [".gpu/b"]:      mkdir -p /tmp/kit && cp .gpu/b/part /tmp/kit/partB
#   3. carry [".gpu/wheels"]: bash benchmarks/gpu_check.sh          (timeout_s 600)
# What it writes comes back as $OUT/gpu-check.tar.gz: logs, benchmarks/results/gpu/*.json, and
# the quality check's manifest and scores. Each part runs under its own time limit, most
# important first, and the tarball is written whatever happens (a trap), so a part that runs
# out of time still leaves the ones before it.
#
#   1. CUDA tests: packed attention against the padded path for every kernel this GPU offers
#      (tests/test_packing.py -m cuda).
#   2. benchmarks/gpu_vs_trainer.py, micro on `short` and `long-system` (30 steps of 64 records).
#   3. benchmarks/multi_job.py: 8 micro jobs of 1,000 records, together / one at a time / 8 processes.
#   4. benchmarks/gpu_quality.py: `tunesmith train --advised` on the quickstart data, packed and
#      padded, exact match on its 50 test records and the final losses side by side.
#   5. benchmarks/gpu_vs_trainer.py, the 0.5B shape on `short` and `long-system`, if time is left.
set -uo pipefail

if [ "${1:-}" = "--stage" ]; then  # here: test runner and optional kernels for the device image (Python 3.12)
  plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  python -m pip download -q --no-deps $plat -d .gpu/wheels pytest pluggy iniconfig liger-kernel
  du -sh .gpu/wheels
  exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
LOGS=/tmp/gpu-check; rm -rf "$LOGS"; mkdir -p "$LOGS"
START=$(date +%s)
finish() {
  mkdir -p "$LOGS/results"; cp -r benchmarks/results/gpu "$LOGS/results/" 2>/dev/null
  echo "total $(( $(date +%s) - START )) s" >> "$LOGS/summary.txt"
  tar -czf "$OUT/gpu-check.tar.gz" -C "$LOGS" . ; cat "$LOGS/summary.txt"
}
trap finish EXIT
left() { echo $(( ${BUDGET:-560} - ($(date +%s) - START) )); }
part() {  # part NAME SECONDS COMMAND...: run it under a limit (at most what is left), log it, note how it ended
  local name=$1 limit=$2; shift 2
  local room; room=$(left); [ "$room" -lt "$limit" ] && limit=$room
  if [ "$limit" -le 20 ]; then echo "$name: skipped, no time left" >> "$LOGS/summary.txt"; return; fi
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  echo "$name: exit $rc after $(( $(date +%s) - t0 )) s (limit $limit s)" >> "$LOGS/summary.txt"
  tail -n 4 "$LOGS/$name.log" | sed "s/^/  /" >> "$LOGS/summary.txt"
}

source .gpu/wheels/on-device.sh || exit $?
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$LOGS/nvidia-smi.csv" 2>&1
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" > "$LOGS/versions.txt" 2>&1
python3 -m tunesmith --version >> "$LOGS/versions.txt" 2>&1

part cuda-tests 90 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_packing.py
part gpu-vs-trainer-micro 200 python3 benchmarks/gpu_vs_trainer.py --model micro --data both --steps 30
part multi-job 150 python3 benchmarks/multi_job.py --device cuda --jobs 8 --records 1000
part quality 150 python3 benchmarks/gpu_quality.py --device cuda
part gpu-vs-trainer-0.5b 300 python3 benchmarks/gpu_vs_trainer.py --model 0.5b-shape --data both --steps 20
