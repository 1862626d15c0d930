"""The NumPy/CuPy seam: the one place that knows which array library a computation runs on.

Everything above this file writes ``xp = get_array_module(x)`` and then calls ``xp.exp``,
``xp.matmul`` and so on. NumPy and CuPy share that API, so the same op code runs on a laptop CPU
and on an NVIDIA GPU. CuPy is imported lazily: importing minillm never requires it.

Randomness also lives here. ``manual_seed(seed)`` reseeds one generator per backend, and every
random draw in minillm (initialisation, dropout, sampling) goes through ``get_rng``. Two runs with
the same seed therefore produce the same numbers.
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_DTYPE = np.float32
"""minillm computes in float32 unless you ask otherwise (tests use float64 for gradient checks)."""

_cupy = None  # the cupy module once imported; False when the import failed


def _import_cupy():
    """Return the cupy module, or None when it is not installed or has no usable GPU."""
    global _cupy
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415  (lazy on purpose: cupy is an optional extra)

            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:  # ImportError, or a CUDA driver/runtime error
            _cupy = False
    return _cupy or None


def cuda_available() -> bool:
    """True when CuPy is installed and at least one CUDA device answers."""
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(array) -> bool:
    """True for a ``cupy.ndarray`` (checked without importing cupy)."""
    return type(array).__module__.startswith("cupy")


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Accepts raw arrays, minillm Tensors (anything with a ``.data`` array) and Python scalars.
    """
    for a in arrays:
        data = getattr(a, "data", a)
        if is_cupy_array(data):
            return _import_cupy()
    return np


def erf(x):
    """The error function, elementwise, in ``x``'s dtype: the one device choice GELU needs.

    NumPy has no erf. On CuPy arrays: ``cupyx.scipy.special.erf``. On NumPy arrays: SciPy's when it
    is installed, else ``math.erf`` element by element (exact, but slow).
    """
    if is_cupy_array(x):
        import cupyx.scipy.special  # noqa: PLC0415  (cupy is an optional extra)

        return cupyx.scipy.special.erf(x)
    try:
        from scipy.special import erf as scipy_erf  # noqa: PLC0415  (scipy is optional)
    except ImportError:
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return scipy_erf(x).astype(x.dtype, copy=False)


class Device:
    """Where arrays live: ``Device("cpu")`` (NumPy) or ``Device("cuda")`` / ``Device("cuda:1")`` (CuPy)."""

    __slots__ = ("type", "index")

    def __init__(self, spec: "str | Device" = "cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        kind, _, index = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if kind == "cpu" and index:
            raise ValueError(f"device {spec!r}: the cpu device takes no index")
        self.type = kind
        self.index = int(index) if index else 0

    @property
    def xp(self):
        """The array module of this device."""
        if self.type == "cpu":
            return np
        cp = _import_cupy()
        if cp is None:
            raise RuntimeError(
                "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'minillm[gpu]'"
            )
        return cp

    def __eq__(self, other) -> bool:
        other = Device(other) if isinstance(other, str) else other
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __repr__(self) -> str:
        return "device(cpu)" if self.type == "cpu" else f"device(cuda:{self.index})"

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"


def device_of(array) -> Device:
    """The Device an array lives on."""
    if is_cupy_array(array):
        return Device(f"cuda:{array.device.id}")
    return Device("cpu")


def to_device(array, device: "str | Device"):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    device = Device(device)
    if device.type == "cpu":
        return array.get() if is_cupy_array(array) else np.asarray(array)
    cp = device.xp
    with cp.cuda.Device(device.index):
        return cp.asarray(array)


# ----------------------------------------------------------------------------------------------
# Random numbers: one generator per backend, reseeded together by manual_seed.
# ----------------------------------------------------------------------------------------------
_rngs: dict = {}
_seed = 0


def manual_seed(seed: int) -> None:
    """Seed every backend's generator, so that a run repeats exactly."""
    global _seed
    _seed = int(seed)
    _rngs.clear()


def get_rng(xp=np):
    """The seeded generator of backend ``xp`` (``numpy`` or ``cupy``), created on first use."""
    key = xp.__name__
    if key not in _rngs:
        _rngs[key] = xp.random.default_rng(_seed)
    return _rngs[key]


def get_rng_state() -> dict:
    """The NumPy generator's state as a JSON-serialisable dict (for checkpoints)."""
    return {"seed": _seed, "numpy": get_rng(np).bit_generator.state}


def set_rng_state(state: dict) -> None:
    """Restore a state produced by ``get_rng_state``."""
    manual_seed(state["seed"])
    get_rng(np).bit_generator.state = state["numpy"]


KEEP_MASK_BITS = 16
"""Dropout's keep-mask compares 16-bit random integers with p * 2**16: p is rounded to a multiple of
1/65536 on every device (docs/gradients.md, "dropout")."""


def keep_mask(shape, p: float, xp=np):
    """A boolean mask, True with probability 1 - p_16, from the seeded generator (dropout's mask).

    p_16 = round(p * 65536) / 65536, on NumPy and CuPy alike. On NumPy each element is 16 random
    bits b, kept where b >= round(p * 65536): the bits come straight from the generator, four
    elements per 64-bit draw, about four times faster than uniform floats, and dropout runs on every
    activation. On CuPy, uniform float32 u (multiples of 2**-24), kept where u >= p_16: the same
    probability, from another stream. The reference op and the fast layer both draw here, so a seed
    gives one mask whichever path runs.
    """
    threshold = int(round(p * (1 << KEEP_MASK_BITS)))
    if xp is not np:
        return get_rng(xp).random(shape, dtype=np.float32) >= np.float32(threshold / (1 << KEEP_MASK_BITS))
    size = int(np.prod(shape, dtype=np.int64))
    bits = get_rng(np).bit_generator.random_raw((size + 3) // 4).view(np.uint16)[:size]
    return bits.reshape(shape) >= threshold
