"""The calls ``minillm.training.Trainer`` makes so that one loop trains on one process or on N.

With one process every function here is the identity (or a no-op), so the Trainer reads as the
single-process loop with a handful of calls at the places data parallelism touches:

    start        same weights everywhere (broadcast), a different dropout stream per rank
    each batch   this rank's share of the global batch (``DistributedSampler``)
    each step    the token count of the whole batch, gradients averaged after backward,
                 Ctrl-C on any rank stops every rank at the same step
    saving       only rank 0 writes; a sharded optimizer's state is first gathered to it;
                 the checkpoint holds every rank's random-number state, so resuming on the
                 same number of ranks is bit-identical (on another number it still works)
    errors       an exception on one rank ends the job with the message shown, never a hang
"""
from __future__ import annotations

import os
import sys
import traceback

from .. import backend
from .communicator import get_world
from .data_parallel import any_rank, average_gradients, broadcast_parameters, mean_over_ranks, sum_over_ranks
from .sampler import DistributedSampler
from .zero import ZeroRedundancyOptimizer

RNG_KEY = "rng_state_by_rank"  # in the checkpoint's extra state


def is_main() -> bool:
    """True on rank 0 (and without MPI): the rank that writes files and prints."""
    return get_world().rank == 0


def check_batch_size(batch_size: int) -> DistributedSampler:
    """The sampler of this rank; refuses a global batch smaller than the number of ranks."""
    sampler = DistributedSampler()
    sampler.check_batch_size(batch_size)
    return sampler


def check_same_data(fingerprint: str) -> None:
    """Refuse to train when the ranks tokenized different data (a collective; nothing on one rank).

    Every rank reads and tokenizes the data itself. Different files, or a tokenizer trained
    separately on each rank and come out differently, would make the ranks train on
    different examples without any error: this compares a hash of each rank's examples.
    """
    world = get_world()
    if world.size == 1:
        return
    prints = world.all_gather_json(fingerprint)
    if len(set(prints)) > 1:
        raise ValueError(f"the ranks tokenized different training data (fingerprints by rank: {prints}); every "
                         f"rank must read the same files with the same tokenizer (train a tokenizer once and "
                         f"pass it with --tokenizer)")


def writes_here() -> bool:
    """Wait until every rank has got here, then say whether this rank writes the run's files (rank 0).

    Call it between the checks of a run directory and the first write into it: otherwise rank 0
    could already have written there when another rank checks that the directory is free.
    """
    world = get_world()
    world.barrier()
    return world.rank == 0


def maybe_shard_optimizer(optimizer, shard: bool):
    """``optimizer`` itself, or wrapped in ZeRO-1 when ``shard`` (a no-op wrapper on one rank)."""
    return ZeroRedundancyOptimizer(optimizer) if shard else optimizer


def start(model, seed: int) -> None:
    """Seed this rank's dropout with seed + rank, and give every rank rank 0's weights."""
    world = get_world()
    backend.manual_seed(seed + world.rank)
    broadcast_parameters(model, world)


def token_divisor(local_tokens: int) -> float:
    """What each micro-batch's token count is divided by: the step's tokens per rank (T / N).

    One process: its own total T. N ranks: the mean over ranks, so that averaging the ranks'
    gradients gives the gradient of the mean loss over all T tokens (see data_parallel.py).
    """
    world = get_world()
    return float(local_tokens) if world.size == 1 else mean_over_ranks(float(local_tokens), world)


def after_backward(params, local_loss: float) -> float:
    """Average the gradients over the ranks; returns the step's loss over the whole global batch."""
    world = get_world()
    if world.size == 1:
        return local_loss
    average_gradients(params, world)
    return mean_over_ranks(local_loss, world)


def global_tokens(local_tokens: int) -> int:
    """Tokens processed by all ranks together (for tokens/s)."""
    return int(sum_over_ranks(local_tokens)) if get_world().size > 1 else int(local_tokens)


def stop_requested(local_flag: bool) -> bool:
    """Did any rank get Ctrl-C? Every rank gets the same answer, so all stop at the same step."""
    return any_rank(local_flag) if get_world().size > 1 else bool(local_flag)


def before_checkpoint(optimizer, state: dict) -> bool:
    """Prepare a save on every rank; returns True on the rank that writes (rank 0).

    Collective: a sharded optimizer gathers its state to rank 0, and every rank's RNG state is
    put into ``state`` (the checkpoint's extra data), so each rank continues its own stream.
    """
    world = get_world()
    if isinstance(optimizer, ZeroRedundancyOptimizer):
        optimizer.consolidate_state_dict(to=0)
    if world.size > 1:
        state[RNG_KEY] = world.all_gather_json(backend.get_rng_state())
    else:
        state.pop(RNG_KEY, None)
    return world.rank == 0


def after_resume(state: dict, model) -> None:
    """Each rank takes back its own RNG state when the checkpoint was saved on as many ranks.

    On another number of ranks (or one saved without MPI) rank r keeps the checkpoint's main
    state if r is 0, and seed-derived streams otherwise: training continues correctly, but
    dropout draws differ from a run that never stopped, which no N-independent scheme can avoid.
    """
    world = get_world()
    saved = state.pop(RNG_KEY, None)
    if saved is not None and len(saved) == world.size:
        backend.set_rng_state(saved[world.rank])
    elif world.rank > 0:
        backend.manual_seed(backend.get_rng_state()["seed"] + world.rank)
    broadcast_parameters(model, world)


def optimizer_memory_report(optimizer) -> dict | None:
    """Per-rank optimizer-state bytes against plain data parallelism (collective), for ZeRO-1."""
    return optimizer.memory_report() if isinstance(optimizer, ZeroRedundancyOptimizer) else None


def report_optimizer_memory(optimizer, step: int, log) -> None:
    """With ZeRO-1: log (and print, on rank 0) each rank's optimizer bytes against plain DP's."""
    report = optimizer_memory_report(optimizer)
    if report is None:
        return
    log.write({"step": step, **report})
    if is_main():
        per_rank = ", ".join(f"{b / 2**20:.2f}" for b in report["optimizer_bytes_per_rank"])
        print(f"ZeRO-1: optimizer state per rank {per_rank} MiB; plain data parallelism would keep "
              f"{report['optimizer_bytes_plain_dp'] / 2**20:.2f} MiB on every rank")


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
