#!/usr/bin/env bash
# One command for whenever a GPU is available: CuPy, the GPU kernel tests, then the benchmark tables.
#
#   bash benchmarks/gpu_check.sh            # ~3-5 minutes on an H100 (mostly NVRTC compiles + tests)
#   QUICK=1 bash benchmarks/gpu_check.sh    # smaller benchmark sizes
#   CUPY_WHEEL=/path/cupy_cuda12x-*.whl bash benchmarks/gpu_check.sh   # offline machines
#
# Paste the printed tables into kernels/README.md, with the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
    echo "== installing CuPy"
    "$PYTHON" -m pip install --quiet "${CUPY_WHEEL:-cupy-cuda12x}" || {
        echo "could not install CuPy (offline? set CUPY_WHEEL to a local wheel)"; exit 1; }
fi
"$PYTHON" -c "import pytest, hypothesis" 2>/dev/null || "$PYTHON" -m pip install --quiet pytest hypothesis
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== GPU tests (tests/kernels -m gpu)"
timeout 240 "$PYTHON" -m pytest tests/kernels -m gpu -q -x -p no:cacheprovider

echo "== benchmarks/kernels.py"
timeout 300 "$PYTHON" benchmarks/kernels.py ${QUICK:+--quick}
