"""Who am I, how many are we, and the few collective operations data parallelism needs.

A data-parallel job is N copies of the same program (``mpiexec -n N ...``). Each copy is a
*rank* (0 ... N-1) and they talk only through *collectives*, calls that every rank makes
together:

    all_reduce   every rank gives an array, every rank gets the element-wise sum
    broadcast    rank ``root`` gives an array, every other rank receives a copy of it
    all_gather   rank r gives a piece, every rank gets all pieces concatenated in rank order

Those three are the whole of distributed data parallelism (DDP) and of ZeRO stage 1. They come
from MPI, the library clusters use, through ``mpi4py`` (``pip install 'minillm[distributed]'``).

One process without MPI is the default: ``init()`` only imports mpi4py when a launcher such as
``mpiexec`` started this process (it sets ``PMI_RANK`` / ``OMPI_COMM_WORLD_RANK``), so minillm
runs with no MPI installed, and every collective of a one-rank world returns its input.

Two ways a job can hang, and what this file does about them:
  * a rank raises while the others wait in a collective. ``init()`` installs an exception hook
    that prints the error with the rank and calls ``MPI_Abort``, which ends every rank;
  * a rank never arrives (a deadlock, a rank stuck in a loop). Every collective runs under a
    watchdog (``timeout`` seconds, ``MINILLM_DIST_TIMEOUT``, 1800 by default, as in PyTorch);
    past it the job is aborted with a message naming the collective, instead of waiting forever.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

import numpy as np

_LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
DEFAULT_TIMEOUT_S = 1800.0

_world = None  # the Communicator of this process once init() ran


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec/mpirun, srun) started this process as one of several.

    A launcher that says the job has one process (``PMI_SIZE=1``) counts as no launcher: one
    process needs no MPI, and must not need mpi4py installed.
    """
    sizes = [os.environ[name] for name in _LAUNCHER_SIZE_VARS if name in os.environ]
    if sizes and all(size.strip() == "1" for size in sizes):
        return False
    return any(name in os.environ for name in _LAUNCHER_RANK_VARS)


def init(timeout: float | None = None) -> "Communicator":
    """Join the job (once; later calls return the same communicator).

    Args:
        timeout: seconds a collective may wait before the job is aborted; default
            ``$MINILLM_DIST_TIMEOUT`` or 1800.

    Returns:
        The world communicator: an ``MPICommunicator`` under ``mpiexec -n N`` with N > 1,
        else a ``SingleProcess`` one.
    """
    global _world
    if timeout is None:
        timeout = float(os.environ.get("MINILLM_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not timeout > 0:
        raise ValueError(f"distributed.init: timeout must be > 0 seconds, got {timeout}")
    if _world is not None:
        return _world
    if not launched_by_mpi():
        _world = SingleProcess()
        return _world
    try:
        from mpi4py import MPI  # noqa: PLC0415  (optional extra: only needed under mpiexec)
    except ImportError as error:
        raise RuntimeError("this process was started by an MPI launcher but mpi4py is not installed: "
                           "pip install 'minillm[distributed]'") from error
    comm = MPI.COMM_WORLD
    _world = MPICommunicator(comm, timeout) if comm.Get_size() > 1 else SingleProcess()
    if _world.size > 1:
        _install_abort_on_uncaught_exception(_world)
    return _world


def get_world() -> "Communicator":
    """The world communicator (``init()`` on first use)."""
    return _world if _world is not None else init()


def rank() -> int:
    """This process's rank, 0 ... world_size() - 1 (0 without MPI)."""
    return get_world().rank


def world_size() -> int:
    """The number of processes in the job (1 without MPI)."""
    return get_world().size


def is_main() -> bool:
    """True on rank 0, the rank that writes logs, checkpoints and plots."""
    return get_world().rank == 0


def _install_abort_on_uncaught_exception(world: "Communicator") -> None:
    """An uncaught exception on any rank prints its traceback and aborts the whole job.

    Without this the failing rank would exit, ``MPI_Finalize`` would wait for the others, and
    the others would wait in their next collective for the rank that left: a hang.
    """
    def hook(kind, value, tb):
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"[rank {world.rank} of {world.size}] {text}")
        sys.stderr.write(f"[rank {world.rank} of {world.size}] aborting every rank\n")
        world.abort(1)

    sys.excepthook = hook


class Communicator:
    """The collectives every backend provides; subclasses implement the ``_``-prefixed methods.

    Arrays are changed in place and also returned. ``*_json`` methods move small JSON-able
    values (random-number-generator states, optimizer scalars), never pickles.
    """

    rank: int = 0
    size: int = 1
    calls_with_one_rank = False  # True: run the library call even in a world of one (NCCL smoke test)

    def all_reduce(self, array, op: str = "sum"):
        """Replace ``array`` on every rank by the element-wise ``op`` ("sum", "max") over ranks."""
        if op not in ("sum", "max"):
            raise ValueError(f"all_reduce: op must be 'sum' or 'max', got {op!r}")
        return array if self._skip() else self._all_reduce(array, op)

    def broadcast(self, array, root: int = 0):
        """Overwrite ``array`` on every rank with rank ``root``'s ``array``."""
        self._check_root(root)
        return array if self._skip() else self._broadcast(array, root)

    def all_gather(self, local, out, counts: list[int]):
        """Concatenate each rank's flat ``local`` (``counts[r]`` elements on rank r) into ``out``."""
        if len(counts) != self.size or sum(counts) != out.size or local.size != counts[self.rank]:
            raise ValueError(f"all_gather: counts {counts} do not fit {self.size} ranks, out of size "
                             f"{out.size} and a local piece of size {local.size} on rank {self.rank}")
        if self._skip():
            out[...] = local.reshape(out.shape)
            return out
        return self._all_gather(local, out, counts)

    def send(self, array, dest: int):
        """Send ``array`` to rank ``dest`` (which calls ``recv``)."""
        self._check_root(dest)
        self._send(array, dest)

    def recv(self, array, source: int):
        """Receive into ``array`` what rank ``source`` sent."""
        self._check_root(source)
        return self._recv(array, source)

    def broadcast_json(self, value, root: int = 0):
        """Rank ``root``'s JSON-able ``value``, on every rank."""
        if self.size == 1:
            return value
        data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8) if self.rank == root else None
        length = self.broadcast(np.array([0 if data is None else data.size], dtype=np.int64), root)
        buffer = data.copy() if data is not None else np.empty(int(length[0]), dtype=np.uint8)
        return json.loads(self.broadcast(buffer, root).tobytes().decode())

    def send_json(self, value, dest: int) -> None:
        """Send a JSON-able ``value`` to rank ``dest`` (which calls ``recv_json``)."""
        data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        self.send(np.array([data.size], dtype=np.int64), dest)
        self.send(data, dest)

    def recv_json(self, source: int):
        """Receive the value rank ``source`` sent with ``send_json``."""
        length = self.recv(np.zeros(1, dtype=np.int64), source)
        return json.loads(self.recv(np.empty(int(length[0]), dtype=np.uint8), source).tobytes().decode())

    def all_gather_json(self, value) -> list:
        """Every rank's JSON-able ``value``, as a list in rank order, on every rank."""
        return [self.broadcast_json(value if self.rank == r else None, root=r) for r in range(self.size)]

    def barrier(self) -> None:
        """Wait until every rank arrives here."""
        self.all_reduce(np.zeros(1, dtype=np.int64))

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now with exit code ``code``."""
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)

    def _skip(self) -> bool:
        return self.size == 1 and not self.calls_with_one_rank

    def _check_root(self, root: int) -> None:
        if not 0 <= root < self.size:
            raise ValueError(f"rank {root} does not exist in a world of {self.size} process(es)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """The world of one process: every collective returns its input."""


class MPICommunicator(Communicator):
    """Collectives over MPI (mpi4py's buffer methods: no pickling, arrays travel as raw bytes).

    Args:
        comm: an ``mpi4py.MPI.Comm`` (``MPI.COMM_WORLD``).
        timeout: seconds any one collective may wait before the job is aborted.
    """

    def __init__(self, comm, timeout: float = DEFAULT_TIMEOUT_S):
        from mpi4py import MPI  # noqa: PLC0415

        self.MPI, self.comm, self.timeout = MPI, comm, float(timeout)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX}
        self._watch = _Watchdog(self)

    def _all_reduce(self, array, op):
        with self._watch("all_reduce"):
            self.comm.Allreduce(self.MPI.IN_PLACE, _host(array), op=self._ops[op])
        return array

    def _broadcast(self, array, root):
        with self._watch("broadcast"):
            self.comm.Bcast(_host(array), root=root)
        return array

    def _all_gather(self, local, out, counts):
        displacements = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        with self._watch("all_gather"):
            self.comm.Allgatherv(np.ascontiguousarray(local).reshape(-1),
                                 [_host(out).reshape(-1), list(counts), displacements, None])
        return out

    def _send(self, array, dest):
        with self._watch("send"):
            self.comm.Send(np.ascontiguousarray(array), dest=dest)

    def _recv(self, array, source):
        with self._watch("recv"):
            self.comm.Recv(_host(array), source=source)
        return array

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.5)  # let mpiexec forward the message before it tears the job down
        self.comm.Abort(code)  # asks mpiexec to end every rank with this code ...
        os._exit(code)  # ... and MPICH's MPI_Abort can return before this process is killed


def _host(array):
    """``array`` itself, checked to be a contiguous NumPy array MPI can read and write in place."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"MPI collectives take NumPy arrays, got {type(array).__name__} "
                        f"(CuPy arrays go through distributed.nccl)")
    if not array.flags.c_contiguous:
        raise ValueError("MPI collectives need a C-contiguous array (use np.ascontiguousarray)")
    return array


class _Watchdog:
    """Abort the job when one collective waits longer than ``comm.timeout`` seconds.

    A daemon thread wakes twice a second; while a collective is in flight it compares the clock
    with its deadline. PyTorch's NCCL watchdog does the same (``init_process_group(timeout=)``).
    """

    def __init__(self, comm: Communicator):
        self.comm, self.name, self.deadline = comm, None, None
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="minillm-dist-watchdog", daemon=True).start()

    def __call__(self, name: str):
        self.name = name
        return self

    def __enter__(self):
        with self._lock:
            self.deadline = time.monotonic() + self.comm.timeout
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.deadline = None
        return False

    def _run(self):
        while True:
            time.sleep(min(0.5, self.comm.timeout / 4))
            with self._lock:
                late = self.deadline is not None and time.monotonic() > self.deadline
            if late:
                sys.stderr.write(
                    f"[rank {self.comm.rank} of {self.comm.size}] {self.name} waited more than "
                    f"{self.comm.timeout:g} s for the other ranks (one of them failed, hangs or took "
                    f"another path); aborting every rank. Raise MINILLM_DIST_TIMEOUT if a step "
                    f"legitimately takes longer.\n")
                self.comm.abort(1)
