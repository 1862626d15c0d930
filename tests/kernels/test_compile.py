"""nvcc builds every kernel for sm_80 and sm_90; ptxas reports registers, shared memory and spills.

Skipped when nvcc is not on PATH. The table is printed (even under -q) so that a change in register
pressure shows up in the test log.
"""
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from minillm.fast import cuda as kernels
from minillm.fast import cuda_attention

KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"
ARCHS = ["sm_80", "sm_90"]
SOURCES = ["matmul.cu", "attention.cu"]
EXPECTED_KERNELS = {
    "matmul.cu": {f"matmul_{v}_{t}" for v in kernels._MATMUL_BLOCKS for t in ("nn", "nt", "tn", "tt")},
    "attention.cu": {f"attention_{k}_d{d}_{br}x{bc}" for k in cuda_attention._ATTENTION_KINDS
                     for d, tiles in cuda_attention._ATTENTION_TILES.items() for br, bc in tiles},
}

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def parse_ptxas(log: str) -> dict[str, dict[str, int]]:
    """{kernel: {registers, smem, stack, spill_stores, spill_loads}} from `ptxas -v` output."""
    report: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        if match := re.search(r"Function properties for (\w+)", line):
            current = report.setdefault(match.group(1), {"registers": 0, "smem": 0})
        elif current is not None and (match := re.search(
                r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            current.update(stack=int(match.group(1)), spill_stores=int(match.group(2)), spill_loads=int(match.group(3)))
        elif current is not None and (match := re.search(r"Used (\d+) registers", line)):
            current["registers"] = int(match.group(1))
            if smem := re.search(r"(\d+) bytes smem", line):
                current["smem"] = int(smem.group(1))
    return report


def compile_cubin(source: str, arch: str, out_dir: Path) -> dict[str, dict[str, int]]:
    command = ["nvcc", "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v",
               str(KERNEL_DIR / source), "-o", str(out_dir / f"{source}.{arch}.cubin")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr}"
    return parse_ptxas(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def ptxas_reports(tmp_path_factory):
    """{(source, arch): ptxas report}, compiled in parallel."""
    out_dir = tmp_path_factory.mktemp("cubin")
    jobs = [(source, arch) for source in SOURCES for arch in ARCHS]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        reports = list(pool.map(lambda job: compile_cubin(*job, out_dir), jobs))
    return dict(zip(jobs, reports))


def dynamic_smem(kernel: str) -> int:
    if not kernel.startswith("attention_"):
        return 0
    name, rest = kernel[len("attention_"):].rsplit("_d", 1)
    head_dim, tile = rest.split("_")
    br, bc = tile.split("x")
    return cuda_attention._attention_shared_bytes(name, int(head_dim), int(br), int(bc))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles_without_spills(ptxas_reports, source, arch, capsys):
    report = ptxas_reports[(source, arch)]
    assert set(report) == EXPECTED_KERNELS[source]
    lines = [f"\n{source} for {arch}:",
             f"  {'kernel':32} {'regs':>5} {'smem':>7} {'dyn smem':>9} {'stack':>6} {'spill st/ld':>12}"]
    for name in sorted(report):
        r = report[name]
        lines.append(f"  {name:32} {r['registers']:>5} {r['smem']:>7} {dynamic_smem(name):>9} {r['stack']:>6} "
                     f"{r['spill_stores']:>6}/{r['spill_loads']:<5}")
    with capsys.disabled():
        print("\n".join(lines))
    for name, r in report.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{name} spills registers on {arch}"
        assert r["stack"] == 0, f"{name} keeps {r['stack']} bytes in local memory on {arch} (an un-unrolled array?)"
        assert r["registers"] <= 255


@pytest.mark.parametrize("kernel", sorted(EXPECTED_KERNELS["attention.cu"]))
def test_attention_shared_memory_fits_an_a100_and_an_h100(kernel):
    assert dynamic_smem(kernel) <= 163 * 1024  # sm_80's per-block maximum (sm_90: 227 KB)


@pytest.mark.parametrize("source", SOURCES)
def test_kernel_sources_are_self_contained_for_nvrtc(source):
    """cupy.RawModule compiles with NVRTC, which has no system headers: the .cu files include none."""
    text = (KERNEL_DIR / source).read_text()
    assert not re.search(r"^\s*#\s*include", text, re.MULTILINE)
    assert "INFINITY" not in text  # a <math.h> macro; NVRTC lacks it


H100_SM_SHARED = 228 * 1024  # shared memory per SM on sm_90
RESERVED_PER_BLOCK = 1024    # the driver keeps 1 KB of it per resident block


def test_the_d128_dkdv_kernel_fits_two_blocks_per_h100_sm():
    per_block = dynamic_smem("attention_backward_dkdv_d128_64x32") + RESERVED_PER_BLOCK
    assert 2 * per_block <= H100_SM_SHARED, f"{per_block} bytes per block: only one block per SM"


@pytest.mark.parametrize("gpu, limit", [("sm_75 (T4)", 64 * 1024), ("sm_86/sm_89 (A10, L4)", 99 * 1024),
                                        ("sm_80 (A100)", 163 * 1024), ("sm_90 (H100)", 227 * 1024)])
@pytest.mark.parametrize("head_dim", sorted(cuda_attention._ATTENTION_TILES))
def test_every_head_dim_has_attention_tiles_that_fit_each_gpu(gpu, limit, head_dim):
    """Everything fits from sm_80/sm_86 up; on a T4's 64 KB, d128's backward (70.5 KB at 32x32) does not,
    and attention_fits says so, which sends CudaAttention to the composed attention."""
    fits = cuda_attention.attention_fits(head_dim, shared_limit=limit)
    assert fits == (limit >= 99 * 1024 or head_dim < 128), f"d{head_dim} on {gpu}: attention_fits is {fits}"


@pytest.mark.parametrize("arch", ARCHS)
def test_register_blocked_matmuls_keep_two_blocks_per_sm(ptxas_reports, arch):
    """256 threads x 2 blocks x registers must fit the 65536 registers of an SM (versions 3-5)."""
    report = ptxas_reports[("matmul.cu", arch)]
    for name, r in report.items():
        if name.startswith(("matmul_blocked", "matmul_warptiled", "matmul_double_buffered")):
            assert r["registers"] * 256 * 2 <= 65536, f"{name}: {r['registers']} registers"
