"""NVRTC, the runtime compiler cupy.RawModule uses, called directly through ctypes.

The library comes from the NVRTC wheel on PyPI (``nvidia-cuda-nvrtc-cu12``, or ``nvidia-cuda-nvrtc``
for CUDA 13, in the ``test`` extra), so CI compiles kernels/*.cu with the very compiler CuPy will
use on a GPU machine, with the options CuPy passes (``minillm.fast.cuda.nvrtc_options``). No GPU
is needed: NVRTC only translates source to PTX or a cubin.
"""
from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path


def find_library() -> Path | None:
    """libnvrtc.so.* from an installed nvidia NVRTC wheel, or None."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        # nvidia/cuda_nvrtc/lib (the -cu12 wheel) or nvidia/cu13/lib (the CUDA 13 wheel)
        for candidate in sorted(Path(root).glob("*/lib/libnvrtc.so.*")):
            if "builtins" not in candidate.name and ".alt." not in candidate.name:
                return candidate
    return None


class CompileResult:
    def __init__(self, ok: bool, log: str, binary: bytes):
        self.ok, self.log, self.binary = ok, log, binary


class Nvrtc:
    """The few NVRTC entry points a compile needs (nvrtc.h)."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        self.path = path

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def supported_archs(self) -> list[int]:
        count = ctypes.c_int()
        self._check(self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * count.value)()
        self._check(self.lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        return list(archs)

    def compile(self, source: str, name: str, options: tuple[str, ...]) -> CompileResult:
        """Compile ``source``; a cubin for ``-arch=sm_XX``, PTX for ``-arch=compute_XX``."""
        program = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            argv = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = self.lib.nvrtcCompileProgram(program, len(options), argv)
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            log = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            binary = b""
            if status == 0:
                kind = "CUBIN" if any(o.startswith("-arch=sm_") for o in options) else "PTX"
                self._check(getattr(self.lib, f"nvrtcGet{kind}Size")(program, ctypes.byref(size)), kind)
                buffer = ctypes.create_string_buffer(size.value)
                self._check(getattr(self.lib, f"nvrtcGet{kind}")(program, buffer), kind)
                binary = buffer.raw
            return CompileResult(status == 0, log.value.decode(errors="replace"), binary)
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{call} failed: {self.lib.nvrtcGetErrorString(status).decode()}")
