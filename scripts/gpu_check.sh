#!/usr/bin/env bash
# Issue 24: every figure of the GPU table in docs/benchmarks.md, and the GPU tests, in one command.
#
#   scripts/gpu_check.sh            # on a machine with a CUDA GPU, torch (CUDA build) and triton
#   PYTHON=/path/to/python OUT=/tmp/gpu scripts/gpu_check.sh
#
# 1. the machine's state (nvidia-smi: the GPU, its clocks, other processes on it);
# 2. the GPU tests: the Triton kernels against the Philox reference and the CPU kernels, and the
#    CUDA fast path of dropout, dropout_add and bias_dropout_add (tests/kernels/test_gpu.py,
#    tests/functional/test_fast_cuda.py; on CUDA, not in Triton's interpreter);
# 3. benchmarks/bench_dropout_gpu.py: forward+backward per op, GB/s, the fraction of the peak
#    memory bandwidth and of the copy rate, the fused bias+dropout+residual kernel against torch
#    eager and torch.compile, saved bytes per element; the table printed, the rows in
#    $OUT/gpu.json.
# Exits non-zero with a message when there is no GPU, or when a test fails (the benchmark still
# runs, so a failure and the figures arrive together).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)); nothing run" >&2
    exit 2
fi
echo "## machine ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory,clocks.max.sm,utilization.gpu \
    --format=csv 2>/dev/null || echo "(nvidia-smi not available)"
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>/dev/null
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

echo "## GPU tests"
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PY" -m pytest -q -p no:cacheprovider \
    tests/kernels/test_gpu.py tests/functional/test_fast_cuda.py 2>&1 | tee "$OUT/tests.txt" | tail -15
tests=${PIPESTATUS[0]}

echo "## benchmarks/bench_dropout_gpu.py"
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PY" benchmarks/bench_dropout_gpu.py --json "$OUT/gpu.json" \
    2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}
echo "## tests exit $tests, benchmark exit $bench; outputs in $OUT"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
