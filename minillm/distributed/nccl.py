"""The same collectives on NVIDIA GPUs, over NCCL through CuPy (``cupy.cuda.nccl``).

MPI moves bytes between host memories. For gradients that live on GPUs, NCCL moves them GPU to
GPU (NVLink, PCIe, InfiniBand) without a copy to the host, and it is what PyTorch DDP uses.
NCCL has no launcher of its own: the ranks must agree on one *unique id*, which rank 0 creates
and every rank must receive before the communicator exists. MPI is already there, so the id
travels as a broadcast of its bytes over MPI, then every rank calls
``NcclCommunicator(size, unique_id, rank)``:

    rank 0: uid = nccl.get_unique_id()      ─ MPI broadcast ─►   ranks 1..N-1 receive uid
    every rank: comm = nccl.NcclCommunicator(N, uid, rank)

Each rank uses GPU ``rank % number of GPUs`` (one GPU per rank on a node). Collectives run on
the current CuPy stream, and ``synchronize`` after each keeps the semantics of the MPI calls
(the array holds the result when the call returns).

Without a GPU this file is only imported and its argument checks run (tests/test_distributed.py);
``benchmarks/gpu_check.sh`` runs a one-rank NCCL all_reduce whenever a GPU is at hand.
"""
from __future__ import annotations

import numpy as np

from .communicator import Communicator

_NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
                "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8"}
_NCCL_OPS = {"sum": "NCCL_SUM", "max": "NCCL_MAX"}
_cache: dict = {}


def _nccl():
    """``cupy.cuda.nccl``, or an ImportError that says what to install."""
    try:
        from cupy.cuda import nccl  # noqa: PLC0415  (optional: the gpu extra)
    except ImportError as error:
        raise ImportError("NCCL collectives need CuPy with NCCL: pip install 'minillm[gpu]' "
                          "(cupy-cuda12x ships NCCL)") from error
    return nccl


def nccl_dtype(dtype) -> str:
    """The name of NCCL's data type for a NumPy/CuPy dtype; a ValueError for one NCCL lacks."""
    name = np.dtype(dtype).name
    if name not in _NCCL_DTYPES:
        raise ValueError(f"NCCL has no data type for {name}; supported: {', '.join(_NCCL_DTYPES)}")
    return _NCCL_DTYPES[name]


def nccl_op(op: str) -> str:
    """The name of NCCL's reduction for "sum" or "max"."""
    if op not in _NCCL_OPS:
        raise ValueError(f"NCCL reduction must be one of {sorted(_NCCL_OPS)}, got {op!r}")
    return _NCCL_OPS[op]


def share_unique_id(world: Communicator) -> tuple:
    """Rank 0's NCCL unique id, on every rank (broadcast as bytes over ``world``)."""
    nccl = _nccl()
    uid = np.zeros(128, dtype=np.int8)  # ncclUniqueId is 128 bytes
    if world.rank == 0:
        uid[:] = np.array(nccl.get_unique_id(), dtype=np.int8)
    world.broadcast(uid, root=0)
    return tuple(int(b) for b in uid)


def nccl_communicator(world: Communicator) -> "NcclCommunicator":
    """The NCCL communicator of ``world``'s ranks (created once, on first use)."""
    key = (world.rank, world.size)
    if key not in _cache:
        _cache[key] = NcclCommunicator(world)
    return _cache[key]


class NcclCommunicator(Communicator):
    """Collectives on CuPy arrays over NCCL, with the same methods as the MPI communicator.

    Args:
        world: the MPI (or single-process) communicator, used once to share the unique id.
        device: the GPU of this rank; default ``world.rank % number of GPUs``.
    """

    calls_with_one_rank = True

    def __init__(self, world: Communicator, device: int | None = None):
        import cupy  # noqa: PLC0415

        self.nccl, self.cupy, self.world = _nccl(), cupy, world
        self.rank, self.size = world.rank, world.size
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("NcclCommunicator: no CUDA device")
        self.device = world.rank % count if device is None else int(device)
        if not 0 <= self.device < count:
            raise ValueError(f"NcclCommunicator: device {self.device} does not exist ({count} GPU(s))")
        cupy.cuda.Device(self.device).use()
        self.comm = self.nccl.NcclCommunicator(self.size, share_unique_id(world), self.rank)

    def _check(self, array):
        if not type(array).__module__.startswith("cupy"):
            raise TypeError(f"NCCL collectives take CuPy arrays, got {type(array).__name__}")
        if not array.flags.c_contiguous:
            raise ValueError("NCCL collectives need a C-contiguous array")
        return array

    def _run(self, call):
        stream = self.cupy.cuda.get_current_stream()
        call(stream.ptr)
        stream.synchronize()

    def _all_reduce(self, array, op):
        self._check(array)
        dtype, reduce = getattr(self.nccl, nccl_dtype(array.dtype)), getattr(self.nccl, nccl_op(op))
        self._run(lambda s: self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, dtype, reduce, s))
        return array

    def _broadcast(self, array, root):
        self._check(array)
        dtype = getattr(self.nccl, nccl_dtype(array.dtype))
        self._run(lambda s: self.comm.bcast(array.data.ptr, array.size, dtype, root, s))
        return array

    def _all_gather(self, local, out, counts):
        # NCCL's allGather takes equal pieces: pad each rank's piece to the largest, then unpad.
        self._check(out)
        cp, width = self.cupy, max(counts)
        send = cp.zeros(width, dtype=out.dtype)
        send[:local.size] = local.reshape(-1)
        gathered = cp.empty(width * self.size, dtype=out.dtype)  # (size * width,)
        dtype = getattr(self.nccl, nccl_dtype(out.dtype))
        self._run(lambda s: self.comm.allGather(send.data.ptr, gathered.data.ptr, width, dtype, s))
        flat, offset = out.reshape(-1), 0
        for r, n in enumerate(counts):
            flat[offset:offset + n] = gathered[r * width:r * width + n]
            offset += n
        return out

    def _send(self, array, dest):
        self.world.send(self.cupy.asnumpy(array), dest)  # checkpoints only: through the host

    def _recv(self, array, source):
        host = self.world.recv(np.empty(array.shape, dtype=array.dtype), source)
        array[...] = self.cupy.asarray(host)
        return array

    def abort(self, code: int = 1) -> None:
        self.world.abort(code)


def smoke_test() -> dict:
    """One rank, one GPU: all_reduce, broadcast and all_gather through NCCL, checked against NumPy.

    Run by ``benchmarks/gpu_check.sh`` (``python -m minillm.distributed.nccl``). A world of one
    still makes every NCCL call (``calls_with_one_rank``), so the library, the unique-id exchange and
    the data-type mapping are all exercised. Returns what it checked.
    """
    import cupy  # noqa: PLC0415

    from .communicator import SingleProcess  # noqa: PLC0415

    comm = NcclCommunicator(SingleProcess())
    x = cupy.arange(1000, dtype=cupy.float32)
    comm.all_reduce(x, op="sum")
    y = cupy.full(7, 3, dtype=cupy.int64)
    comm.broadcast(y, root=0)
    out = cupy.empty(5, dtype=cupy.float32)
    comm.all_gather(cupy.arange(5, dtype=cupy.float32), out, [5])
    checks = {"all_reduce": bool(np.array_equal(cupy.asnumpy(x), np.arange(1000, dtype=np.float32))),
              "broadcast": bool((cupy.asnumpy(y) == 3).all()),
              "all_gather": bool(np.array_equal(cupy.asnumpy(out), np.arange(5, dtype=np.float32))),
              "nccl_version": int(comm.nccl.get_version()), "device": comm.device}
    if not all(checks[k] for k in ("all_reduce", "broadcast", "all_gather")):
        raise AssertionError(f"NCCL smoke test failed: {checks}")
    return checks


if __name__ == "__main__":
    print("NCCL smoke test (1 rank):", smoke_test())
