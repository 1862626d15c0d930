"""How training meets distribution: the one object the Trainer holds, and the calls the commands make.

``DataParallel`` is everything ``minillm.training.Trainer`` asks of data parallelism. With one
process every method returns its input or does nothing, so the Trainer reads as the
single-process loop with a call at each place data parallelism touches:

    start        every rank tokenized the same data; rank 0's weights everywhere (broadcast),
                 a different dropout stream per rank (or, on resume, each rank's own saved one)
    each batch   this rank's share of the global batch (``DistributedSampler``)
    each step    the token count of the whole batch, gradients averaged after backward,
                 Ctrl-C on any rank stops every rank at the same step
    saving       only rank 0 writes; a sharded optimizer's state is first gathered to it;
                 the checkpoint holds every rank's random-number state, so resuming on the
                 same number of ranks is bit-identical (on another number it still works)

The commands (``minillm.cli``) use ``run_command`` (an exception on one rank ends the job with
the message shown, never a hang), ``writes_here`` and ``is_main``.
"""
from __future__ import annotations

import os
import sys
import traceback

from .. import backend
from .communicator import get_world
from .data_parallel import any_rank, average_gradients, broadcast_parameters, mean_over_ranks
from .sampler import DistributedSampler
from .zero import ZeroRedundancyOptimizer

RNG_KEY = "rng_state_by_rank"  # in the checkpoint's extra state


class DataParallel:
    """What the Trainer asks of data parallelism (MPI ranks, optionally ZeRO-1); a no-op in one process.

    Args:
        batch_size: the global batch; refused when it cannot give every rank an example.
        shard_optimizer: keep each rank's share of the optimizer state only (ZeRO stage 1).

    Attributes:
        is_main: True on rank 0 (and without MPI): the rank that writes files and prints.
    """

    def __init__(self, batch_size: int, shard_optimizer: bool = False):
        self.world = get_world()
        self.sampler = DistributedSampler()
        self.sampler.check_batch_size(batch_size)
        self.shard_optimizer = shard_optimizer
        self.is_main = self.world.rank == 0

    def wrap_optimizer(self, optimizer):
        """``optimizer`` itself, or wrapped in ZeRO-1 when sharding (a no-op wrapper on one rank)."""
        return ZeroRedundancyOptimizer(optimizer) if self.shard_optimizer else optimizer

    def start(self, model, seed: int, fingerprint: str, saved: dict | None = None) -> None:
        """Before the first step (collective): same data on every rank, rank 0's weights everywhere,
        and this rank's random stream: seed + rank, or, when resuming (``saved``: the checkpoint's
        extra state), the rank's own saved state.

        The data check: every rank reads and tokenizes the data itself, so different files, or a
        tokenizer trained separately on each rank, would train the ranks on different examples
        without any error; the ranks compare a hash of their examples (``fingerprint``).

        On another number of ranks than the checkpoint's (or one saved without MPI) rank r keeps
        the checkpoint's main state if r is 0, and seed-derived streams otherwise: training
        continues correctly, but dropout draws differ from a run that never stopped, which no
        N-independent scheme can avoid.
        """
        world = self.world
        prints = world.all_gather_json(fingerprint) if world.size > 1 else [fingerprint]
        if len(set(prints)) > 1:
            raise ValueError(f"the ranks tokenized different training data (fingerprints by rank: {prints}); "
                             f"every rank must read the same files with the same tokenizer (train a tokenizer "
                             f"once and pass it with --tokenizer)")
        by_rank = saved.pop(RNG_KEY, None) if saved is not None else None
        if saved is None:
            backend.manual_seed(seed + world.rank)
        elif by_rank is not None and len(by_rank) == world.size:
            backend.set_rng_state(by_rank[world.rank])
        elif world.rank > 0:
            backend.manual_seed(backend.get_rng_state()["seed"] + world.rank)
        broadcast_parameters(model, world)

    def shard(self, batch: list[int]) -> list[int]:
        """This rank's examples of a global batch of example indices (all of them in one process)."""
        return self.sampler.shard(batch)

    def tokens_per_rank(self, local_tokens: int) -> float:
        """What each micro-batch's token count is divided by: the step's tokens per rank (T / N).

        One process: its own total T. N ranks: the mean over ranks, so that averaging the ranks'
        gradients gives the gradient of the mean loss over all T tokens (see data_parallel.py).
        """
        world = self.world
        return float(local_tokens) if world.size == 1 else mean_over_ranks(float(local_tokens), world)

    def all_reduce(self, params, local_loss: float) -> float:
        """Average the gradients over the ranks; returns the step's loss over the whole global batch."""
        if self.world.size == 1:
            return local_loss
        average_gradients(params, self.world)
        return mean_over_ranks(local_loss, self.world)

    def should_stop(self, local_flag: bool) -> bool:
        """Did any rank get Ctrl-C? Every rank gets the same answer, so all stop at the same step."""
        return any_rank(local_flag) if self.world.size > 1 else bool(local_flag)

    def before_save(self, optimizer, state: dict) -> bool:
        """Prepare a checkpoint on every rank (collective); returns True on the rank that writes it.

        A sharded optimizer gathers its state to rank 0, and every rank's RNG state is put into
        ``state`` (the checkpoint's extra data), so each rank continues its own stream.
        """
        if isinstance(optimizer, ZeroRedundancyOptimizer):
            optimizer.consolidate_state_dict(to=0)
        if self.world.size > 1:
            state[RNG_KEY] = self.world.all_gather_json(backend.get_rng_state())
        else:
            state.pop(RNG_KEY, None)
        return self.is_main

    def report_memory(self, optimizer, step: int, log) -> None:
        """With ZeRO-1 (collective): log, and print on rank 0, each rank's optimizer bytes against plain DP's."""
        report = optimizer_memory_report(optimizer)
        if report is None:
            return
        log.write({"step": step, **report})
        if self.is_main:
            per_rank = ", ".join(f"{b / 2**20:.2f}" for b in report["optimizer_bytes_per_rank"])
            print(f"ZeRO-1: optimizer state per rank {per_rank} MiB; plain data parallelism would keep "
                  f"{report['optimizer_bytes_plain_dp'] / 2**20:.2f} MiB on every rank")


def optimizer_memory_report(optimizer) -> dict | None:
    """Per-rank optimizer-state bytes against plain data parallelism (collective), for ZeRO-1."""
    return optimizer.memory_report() if isinstance(optimizer, ZeroRedundancyOptimizer) else None


# ---------------------------------------------------------------------------------- for the commands
def is_main() -> bool:
    """True on rank 0 (and without MPI): the rank that writes files and prints."""
    return get_world().rank == 0


def writes_here() -> bool:
    """Wait until every rank has got here, then say whether this rank writes the run's files (rank 0).

    Call it between the checks of a run directory and the first write into it: otherwise rank 0
    could already have written there when another rank checks that the directory is free.
    """
    world = get_world()
    world.barrier()
    return world.rank == 0


USER_ERRORS = (FileNotFoundError, ValueError, KeyError)  # the CLI reports these as "error: ..." (code 2)


def run_command(command, *args):
    """Run a CLI command; under MPI an error on any rank is shown and ends every rank.

    On one rank a raised error would make that rank exit while the others wait in their next
    collective for it: a hang. So under MPI an exception, or a non-zero exit code, is printed with
    the rank and turned into ``MPI_Abort`` with the exit code the CLI would have used (2 for bad
    input, 1 otherwise); ``mpiexec`` then returns that code. Without MPI this is ``command(*args)``.
    """
    world = get_world()
    if world.size == 1:
        return command(*args)
    if world.rank > 0:  # rank 0 speaks for the job; errors still reach stderr from every rank
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  (for the life of the process)
    where = f"[rank {world.rank} of {world.size}]"
    try:
        code = command(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001  (reported, then the whole job ends)
        if isinstance(error, SystemExit) and not error.code:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if not isinstance(error, USER_ERRORS):
            sys.stderr.write(where + " " + "".join(traceback.format_exception(error)))
        sys.stderr.write(f"{where} error: {message}\n{where} aborting every rank\n")
        world.abort(2 if isinstance(error, USER_ERRORS) else 1)
    if code:
        sys.stderr.write(f"{where} exit code {code}: aborting every rank\n")
        world.abort(int(code))
    return code


class SilentLog:
    """What ranks other than 0 use instead of ``TrainingLog``: it keeps entries but writes no file."""

    def __init__(self):
        self.entries: list[dict] = []

    def start(self, keep_until_step: int = 0) -> None:
        self.entries = []

    def write(self, entry: dict) -> None:
        self.entries.append(dict(entry))

    def plot(self) -> None:
        return None
