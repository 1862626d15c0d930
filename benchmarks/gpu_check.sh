#!/usr/bin/env bash
# One command for whenever a GPU is at hand: every GPU test, then the kernel timings, then a T5
# training step on NumPy / CuPy + minillm's kernels / CuPy + cuBLAS. At most 8 minutes in all
# (each step has its own time limit; about 3 minutes expected), and it keeps going after a
# failure: a failing test never hides the timings.
#
#   bash benchmarks/gpu_check.sh              # from anywhere; runs in the repository root
#   QUICK=1 bash benchmarks/gpu_check.sh      # smaller benchmark sizes
#   OUT=/some/folder bash ...                 # also copy the logs (and JUnit XML) there
#
# Exit status: 1 when CuPy sees no GPU (nothing else runs), 2 when any step failed or timed out,
# 0 when every step passed. Paste the printed tables into kernels/README.md, with the GPU's name.
#
# CuPy must be installed beforehand (this script installs nothing). For a CUDA 12 driver:
#     pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12 nvidia-cublas-cu12 nvidia-cuda-runtime-cu12
# and for a CUDA 13 driver:
#     pip install cupy-cuda13x nvidia-cuda-nvrtc nvidia-cublas nvidia-cuda-runtime
# The nvidia-* wheels are the NVRTC compiler (cupy.RawModule compiles kernels/*.cu with it), cuBLAS
# and the CUDA runtime, which a machine without the CUDA toolkit lacks; CuPy also offers them as the
# extra `pip install "cupy-cuda12x[ctk]"`. `nvidia-smi` shows the driver's CUDA version.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/minillm-gpu-check.XXXXXX")}
mkdir -p "$LOG_DIR"
FAILED=()

copy_logs() {  # after every step, so a run cut short still leaves what it had
    if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp -f "$LOG_DIR"/* "$OUT"/ 2>/dev/null; fi
    return 0
}

# step NAME SECONDS COMMAND...: run with a time limit, log to $LOG_DIR/NAME.log, record a failure.
step() {
    local name=$1 seconds=$2
    shift 2
    echo
    echo "== $name (limit ${seconds} s)"
    local start=$SECONDS
    timeout -k 10 "$seconds" "$@" 2>&1 | tee "$LOG_DIR/$name.log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "!! $name: timed out after ${seconds} s" | tee -a "$LOG_DIR/$name.log"
        FAILED+=("$name (timed out)")
    elif [ "$status" -ne 0 ]; then
        echo "!! $name: exit status $status" | tee -a "$LOG_DIR/$name.log"
        FAILED+=("$name (exit $status)")
    fi
    echo "-- $name: $((SECONDS - start)) s"
    copy_logs
}

# ---- 1. a GPU, seen by CuPy (limit 60 s) ----------------------------------------------------------
if ! timeout 60 "$PYTHON" - > "$LOG_DIR/device.log" 2>&1 <<'EOF'
import sys
try:
    import cupy
except ImportError as error:
    sys.exit(f"CuPy is not installed ({error}); see the install lines at the top of benchmarks/gpu_check.sh")
try:
    count = cupy.cuda.runtime.getDeviceCount()
except Exception as error:  # no driver, no device node
    sys.exit(f"CuPy {cupy.__version__} is installed but finds no CUDA device: {error}")
if count == 0:
    sys.exit(f"CuPy {cupy.__version__} is installed but finds no CUDA device")
props = cupy.cuda.runtime.getDeviceProperties(0)
print(f"{count} device(s); device 0: {props['name'].decode()}, compute capability "
      f"{props['major']}.{props['minor']}, {props['totalGlobalMem'] / 2**30:.0f} GiB; CuPy {cupy.__version__}, "
      f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, driver {cupy.cuda.runtime.driverGetVersion()}")
EOF
then
    cat "$LOG_DIR/device.log"
    echo "gpu_check: no usable GPU, so nothing was run (exit 1)"
    copy_logs
    exit 1
fi
cat "$LOG_DIR/device.log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# ---- 2. every gpu-marked test, no -x, JUnit XML (limit 180 s) --------------------------------------
# --continue-on-collection-errors: a test file that cannot be imported here (a missing optional
# package) must not stop the others. pytest-timeout, where installed, bounds each test.
PER_TEST_LIMIT=()
"$PYTHON" -c "import pytest_timeout" 2>/dev/null && PER_TEST_LIMIT=(--timeout=100)
step gpu-tests 180 "$PYTHON" -m pytest tests -m gpu -q -p no:cacheprovider --continue-on-collection-errors \
    "${PER_TEST_LIMIT[@]}" --junitxml="$LOG_DIR/gpu-tests.xml" -o junit_family=xunit2

# ---- 3. kernel timings (limits 60 s and 75 s) -------------------------------------------------------
step bench-matmul 60 "$PYTHON" benchmarks/kernels.py --section matmul ${QUICK:+--quick}
step bench-attention 75 "$PYTHON" benchmarks/kernels.py --section attention ${QUICK:+--quick}

# ---- 4. T5 training step: NumPy, CuPy + minillm kernels, CuPy + cuBLAS (limit 75 s) ---------------
step bench-t5-step 75 "$PYTHON" benchmarks/kernels.py --section t5 ${QUICK:+--quick}

# Worst case so far: 60 (device check) + 180 + 60 + 75 + 75 = 450 s of the 480 s (8 minutes).
# ---- 5. NCCL smoke test (helper D appends it below this line; its limit: 30 s) ---------------------
# === NCCL section: begin ===
# One rank on one GPU: all_reduce, broadcast and all_gather through cupy.cuda.nccl, checked against
# NumPy (minillm/distributed/nccl.py, smoke_test). Needs no MPI: the unique id stays in-process.
step nccl-smoke 30 "$PYTHON" -m minillm.distributed.nccl
# === NCCL section: end ===

# ---- summary ---------------------------------------------------------------------------------------
echo
if [ ${#FAILED[@]} -eq 0 ]; then
    echo "gpu_check: every step passed; logs in $LOG_DIR"
    status=0
else
    echo "gpu_check: ${#FAILED[@]} step(s) failed: ${FAILED[*]}; logs in $LOG_DIR"
    status=2
fi
copy_logs
exit $status
