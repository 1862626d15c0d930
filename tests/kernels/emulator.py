"""Run minillm.fast.cuda launches on the CPU: build kernels/emu with g++ and call it through ctypes.

``build()`` compiles one shared library per ``.cu`` file (``kernels/emu/launch_*.cpp`` includes the
emulator header, then the unchanged ``.cu``). ``Emulator.backend()`` is a ``minillm.fast.cuda.Backend``
on NumPy arrays, so ``kernels._matmul(emulator.backend(), ...)`` runs exactly the grid and
arguments that ``kernels.matmul`` would send to the GPU, only on emulated threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from minillm.fast import cuda as kernels

REPO = Path(__file__).resolve().parents[2]
EMU_DIR = REPO / "kernels" / "emu"
CXX = os.environ.get("CXX", "g++")
CXX_FLAGS = ("-std=c++20", "-O1", "-fno-strict-aliasing", "-fPIC", "-shared", "-pthread")
# MINILLM_EMU_SANITIZE=address builds the libraries with AddressSanitizer (the Python process must
# then preload libasan: tests/kernels/test_asan.py runs the emulated tests that way).
if os.environ.get("MINILLM_EMU_SANITIZE") == "address":
    CXX_FLAGS += ("-fsanitize=address", "-fno-omit-frame-pointer", "-g")
LAUNCHERS = {"matmul.cu": "launch_matmul.cpp", "attention.cu": "launch_attention.cpp"}
H100_SHARED_LIMIT = 227 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin of sm_90

# NumPy scalar type -> (signature letter from cuda_emu.h, ctypes type)
_SCALARS = {np.int32: ("i", ctypes.c_int32), np.int64: ("q", ctypes.c_int64), np.float32: ("f", ctypes.c_float)}


def compiler_available() -> bool:
    """True when the C++ compiler that builds the emulator is on PATH."""
    return shutil.which(CXX) is not None


def _digest(paths, flags) -> str:
    h = hashlib.sha256(" ".join(flags).encode())
    for path in sorted(paths):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(cache_dir: Path, flags=CXX_FLAGS) -> dict[str, Path]:
    """Compile the emulator libraries into ``cache_dir`` (in parallel); reuse them if nothing changed.

    Returns:
        {".cu file name": path of its shared library}.
    """
    inputs = [EMU_DIR / "cuda_emu.h"] + [REPO / "kernels" / cu for cu in LAUNCHERS] + [EMU_DIR / l for l in LAUNCHERS.values()]
    out_dir = Path(cache_dir) / _digest(inputs, flags)
    out_dir.mkdir(parents=True, exist_ok=True)
    libraries = {cu: out_dir / (Path(launcher).stem + ".so") for cu, launcher in LAUNCHERS.items()}
    jobs = []
    for cu, launcher in LAUNCHERS.items():
        if libraries[cu].exists():
            continue
        tmp = libraries[cu].with_suffix(f".{os.getpid()}.tmp")
        command = [CXX, *flags, str(EMU_DIR / launcher), "-o", str(tmp)]
        jobs.append((subprocess.Popen(command, stderr=subprocess.PIPE, text=True), tmp, libraries[cu], command))
    for process, tmp, final, command in jobs:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"emulator build failed: {' '.join(command)}\n{stderr}")
        tmp.replace(final)  # atomic: a concurrent run never loads a half-written library
    return libraries


def poisoned_empty(shape, dtype):
    """Like np.empty, but NaN-filled: an element a kernel forgets to write fails the comparison."""
    return np.full(shape, np.nan, dtype=dtype)


class Emulator:
    """Launches kernels from the libraries that ``build`` made."""

    def __init__(self, libraries: dict[str, Path]):
        self._libraries = {cu: ctypes.CDLL(str(path)) for cu, path in libraries.items()}

    def signature(self, launch: kernels.Launch) -> str:
        """The kernel's parameter types as letters: p pointer, i int, q long long, f float."""
        function = getattr(self._libraries[launch.source], f"emu_{launch.kernel}_signature")
        function.restype = ctypes.c_char_p
        return function().decode()

    def launch(self, launch: kernels.Launch) -> None:
        """Run one launch to completion, after checking that the arguments match the kernel's types."""
        expected = self.signature(launch)
        values = []
        for position, arg in enumerate(launch.args):
            if arg is None:
                code, value = "p", ctypes.c_void_p(None)
            elif isinstance(arg, np.ndarray):
                if not arg.flags.c_contiguous:
                    raise ValueError(f"{launch.kernel} argument {position} is not contiguous")
                code, value = "p", ctypes.c_void_p(arg.ctypes.data)
            elif type(arg) in _SCALARS:
                code, ctype = _SCALARS[type(arg)]
                value = ctype(arg)
            else:
                raise TypeError(f"{launch.kernel} argument {position} has unsupported type {type(arg).__name__}")
            if position >= len(expected) or expected[position] != code:
                raise TypeError(f"{launch.kernel} argument {position}: passing {code!r}, the kernel expects "
                                f"signature {expected!r}")
            values.append(value)
        if len(values) != len(expected):
            raise TypeError(f"{launch.kernel} takes {len(expected)} arguments ({expected}), got {len(values)}")
        argv = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        function = getattr(self._libraries[launch.source], f"emu_{launch.kernel}")
        function.restype = None
        function((ctypes.c_uint * 3)(*launch.grid), (ctypes.c_uint * 3)(*launch.block),
                 ctypes.c_size_t(launch.shared_mem), argv)

    def backend(self, shared_limit: int = H100_SHARED_LIMIT) -> kernels.Backend:
        """A NumPy backend whose outputs start as NaN and whose launches run on the emulator.

        ``shared_limit`` plays the device's per-block shared-memory limit (the launcher picks tiles
        that fit it): 227 KB like an H100 by default; 99 KB is an sm_86/sm_89 GPU, 64 KB a T4.
        """
        return kernels.Backend(np, poisoned_empty, np.zeros, self.launch, shared_limit)
