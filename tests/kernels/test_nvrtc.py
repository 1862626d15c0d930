"""kernels/*.cu compile with NVRTC, the compiler cupy.RawModule uses, with the options CuPy passes.

nvcc (test_compile.py) is not the compiler a GPU run uses: CuPy compiles the sources at run time
with NVRTC, which has no system headers and a different front end. This compiles them with the
NVRTC library from the pip wheel (``nvidia-cuda-nvrtc-cu12``, in the ``test`` extra), for sm_90 by
default (``MINILLM_NVRTC_ARCHS=sm_80,sm_86,sm_90`` for more; about 20-40 s per arch on 2 cores),
and checks that every kernel the launcher names is in the cubin, with no spills. Skipped, with the
reason, where the wheel is not installed.
"""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from minillm.fast import cuda as kernels
from tests.kernels import nvrtc
from tests.kernels.test_compile import EXPECTED_KERNELS, parse_ptxas

LIBRARY = nvrtc.find_library()
pytestmark = pytest.mark.skipif(LIBRARY is None, reason="the NVRTC wheel is not installed "
                                "(pip install nvidia-cuda-nvrtc-cu12, part of the test extra)")
ARCHS = os.environ.get("MINILLM_NVRTC_ARCHS", "sm_90").split(",")
SOURCES = ["matmul.cu", "attention.cu"]


@pytest.fixture(scope="module")
def compiled():
    """{(source, arch): CompileResult}, compiled in parallel (ctypes releases the GIL)."""
    compiler = nvrtc.Nvrtc(LIBRARY)
    jobs = [(source, arch) for source in SOURCES for arch in ARCHS]

    def compile_one(job):
        source, arch = job
        code = (kernels.KERNEL_DIR / source).read_text(encoding="utf-8")  # the path the launcher reads
        return compiler.compile(code, source, kernels.nvrtc_options(arch) + ("--ptxas-options=-v",))

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return dict(zip(jobs, pool.map(compile_one, jobs)))


def test_the_options_are_cupys():
    """What CuPy adds to RawModule's options: flush-to-zero and the device's architecture."""
    assert kernels.nvrtc_options("sm_90") == kernels._NVRTC_OPTIONS + ("-ftz=true", "-arch=sm_90")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles_every_kernel_without_spills(compiled, source, arch):
    result = compiled[(source, arch)]
    assert result.ok, f"NVRTC ({LIBRARY.name}) rejects {source} for {arch}:\n{result.log}"
    assert not re.search(r"\bwarning\b", result.log, re.IGNORECASE), result.log
    for kernel in EXPECTED_KERNELS[source]:  # extern "C": the names CuPy's get_function looks up
        assert kernel.encode() + b"\0" in result.binary, f"{kernel} is missing from the cubin"
    report = parse_ptxas(result.log)
    assert set(report) == EXPECTED_KERNELS[source]
    for name, r in report.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{name} spills under NVRTC for {arch}"
