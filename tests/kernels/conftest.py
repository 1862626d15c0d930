"""Fixtures for the kernel tests: the CPU emulator, built once per session (and cached between runs)."""
import pytest

from tests.kernels.emulator import Emulator, build, compiler_available


@pytest.fixture(scope="session")
def emulator(request, tmp_path_factory):
    """An ``Emulator`` running kernels/*.cu on CPU threads; skips when g++ is missing."""
    if not compiler_available():
        pytest.skip("g++ is needed to build the kernel emulator")
    cache = getattr(request.config, "cache", None)
    directory = cache.mkdir("minillm-emu") if cache is not None else tmp_path_factory.mktemp("minillm-emu")
    return Emulator(build(directory))
