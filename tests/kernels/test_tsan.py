"""ThreadSanitizer proves that the emulator sees missing barriers.

kernels/emu/tsan_check.cpp runs the tiled matmul (and the attention kernels) on emulated threads.
Built with -fsanitize=thread it must report no race; built with -DMINILLM_BROKEN_SYNC, which removes
the tiled matmul's second __syncthreads (see matmul.cu), it must report the race between a thread
writing the next tile and a slower thread still reading the current one. With
-DMINILLM_BROKEN_ATTENTION_SYNC (attention.cu's dK/dV kernel overwrites Pᵀ with dSᵀ without the
barrier between) it must report that race too.
"""
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.kernels.emulator import CXX, EMU_DIR, compiler_available

pytestmark = pytest.mark.skipif(not compiler_available(), reason="g++ is needed for the TSan check")
FLAGS = ["-std=c++20", "-fsanitize=thread", "-g", "-O1", "-pthread"]
RACE = "WARNING: ThreadSanitizer: data race"


@pytest.fixture(scope="module")
def tsan_programs(tmp_path_factory):
    """{"correct": path, "broken": path}, compiled in parallel; skips if this g++ has no TSan runtime."""
    out_dir = tmp_path_factory.mktemp("tsan")
    variants = {"correct": [], "broken": ["-DMINILLM_BROKEN_SYNC"],
                "broken_double_buffer": ["-DMINILLM_BROKEN_DOUBLE_BUFFER"],
                "broken_attention": ["-DMINILLM_BROKEN_ATTENTION_SYNC"]}

    def compile_variant(name):
        command = [CXX, *FLAGS, *variants[name], str(EMU_DIR / "tsan_check.cpp"), "-o", str(out_dir / name)]
        return subprocess.run(command, capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=len(variants)) as pool:
        results = dict(zip(variants, pool.map(compile_variant, variants)))
    for result in results.values():
        if result.returncode != 0:
            if "tsan" in result.stderr.lower():
                pytest.skip(f"no ThreadSanitizer runtime: {result.stderr.strip()[:200]}")
            raise AssertionError(result.stderr)
    return {name: out_dir / name for name in variants}


def run(program):
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    result = subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=300)
    if "FATAL: ThreadSanitizer" in result.stderr:  # e.g. an incompatible memory layout (ASLR)
        pytest.skip(f"ThreadSanitizer cannot run here: {result.stderr.strip()[:200]}")
    return result


def test_tsan_reports_no_race_in_the_correct_kernels(tsan_programs):
    result = run(tsan_programs["correct"])
    assert "ThreadSanitizer" not in result.stderr, result.stderr[:4000]
    assert result.returncode == 0
    assert "matmul_tiled_nn 20x18x40: 0 wrong elements" in result.stdout
    assert "matmul_double_buffered_nt 40x36x40: 0 wrong elements" in result.stdout
    assert "attention d32 forward + backward ran" in result.stdout


def test_tsan_reports_the_race_when_a_syncthreads_is_removed(tsan_programs):
    result = run(tsan_programs["broken"])
    assert RACE in result.stderr, "TSan missed the race from the removed __syncthreads"
    assert "matmul_tiled" in result.stderr
    assert result.returncode == 66  # TSAN_OPTIONS exitcode: reports were made


def test_tsan_reports_the_race_when_the_dkdv_kernel_reuses_its_buffer_too_early(tsan_programs):
    """The dK/dV kernel writes dSᵀ over Pᵀ in one buffer; without the barrier between, TSan sees it."""
    result = run(tsan_programs["broken_attention"])
    assert RACE in result.stderr, "TSan missed the race on the shared Pᵀ/dSᵀ buffer"
    assert "attention_backward_dkdv" in result.stderr
    assert result.returncode == 66


def test_tsan_reports_the_race_when_the_double_buffered_matmul_drops_its_barrier(tsan_programs):
    result = run(tsan_programs["broken_double_buffer"])
    assert RACE in result.stderr, "TSan missed the race between the two shared-memory buffers"
    assert "matmul_double_buffered" in result.stderr
    assert result.returncode == 66
