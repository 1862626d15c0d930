"""AddressSanitizer runs the emulated kernel tests: any out-of-bounds read or write fails them.

The emulator libraries are rebuilt with -fsanitize=address (MINILLM_EMU_SANITIZE=address, see
emulator.py) and a child pytest, with libasan preloaded, runs a subset of the emulated tests that
crosses every tile edge: ragged matmuls for every version and layout, attention with bias, mask and
causal masking over several tiles for every head dim, and the smaller tiles an sm_86 GPU gets.
NumPy's arrays come from malloc, so ASan puts red zones around every kernel argument; the shared-
memory arena has no guard band under ASan (cuda_emu.h), so reading past it is caught too.
Skipped, with the reason, where g++ has no ASan runtime. About 30-60 s on 2 cores.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernels.emulator import CXX, REPO, compiler_available

SUBSET = [
    "tests/kernels/test_matmul_emulated.py::test_every_matmul_kernel_matches_numpy_on_a_ragged_shape",
    "tests/kernels/test_attention_emulated.py::test_every_head_dim_handles_bias_mask_and_causal_across_several_tiles",
    "tests/kernels/test_cuda_ops_emulated.py::test_an_sm86_gpu_runs_d128_attention_on_the_smaller_tiles",
    "tests/kernels/test_cuda_ops_emulated.py::test_fully_masked_rows_match_the_reference_mean_of_v",
]


def asan_runtime() -> str | None:
    """Path of the compiler's libasan.so, or None."""
    if not compiler_available():
        return None
    path = subprocess.run([CXX, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and Path(path).exists() else None


RUNTIME = asan_runtime()
pytestmark = pytest.mark.skipif(RUNTIME is None, reason=f"{CXX} has no AddressSanitizer runtime (libasan.so)")


def run_subset() -> subprocess.CompletedProcess:
    env = dict(os.environ, LD_PRELOAD=RUNTIME, MINILLM_EMU_SANITIZE="address",
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=77", PYTHONPATH=str(REPO))
    # The emulator's build cache (pytest's cache folder) keeps the ASan libraries apart: their
    # flags are part of the cache key.
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-o", "addopts=", *SUBSET]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_emulated_kernels_make_no_out_of_bounds_access():
    result = run_subset()
    if "ASan runtime does not come first" in result.stderr or "incompatible" in result.stderr:
        pytest.skip(f"AddressSanitizer cannot run in this Python: {result.stderr.strip()[:300]}")
    report = result.stderr[-6000:] + result.stdout[-3000:]
    assert "ERROR: AddressSanitizer" not in result.stderr, report
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]
