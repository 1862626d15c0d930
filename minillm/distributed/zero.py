"""ZeRO stage 1: each rank keeps the optimizer state of its own slice of the parameters only.

In plain data parallelism every rank holds the same four things: weights θ, gradients g, and
AdamW's two moments m and v. With P float32 parameters that is 16 P bytes per rank, and m, v are
half of it. But after the gradient all_reduce every rank would compute *the same* update; the
work and the moments are duplicated N times. ZeRO (Rajbhandari et al., 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models") removes the duplication in stages:

    stage 1  partition the optimizer state   per rank: θ + g + (m, v)/N    4P + 4P + 8P/N bytes
    stage 2  ... and the gradients           θ + (g, m, v)/N                4P + 12P/N
    stage 3  ... and the weights (FSDP)      (θ, g, m, v)/N                 16P/N (+ the layer in use)

Stage 1, here: parameter i belongs to one rank, ``owner[i]``. One step is

    1. all_reduce the gradients (as plain DDP does): every rank has the full averaged g
    2. rank r updates only the parameters it owns, with moments it alone keeps
    3. all_gather: each rank sends its freshly updated parameters to every other rank

Step 2 runs the same element-wise update rule on the same numbers as plain DDP does, so the
weights are bit-for-bit those of plain data parallelism; only where the work happens changes.
The partition is by whole parameters, greedy by size (largest first, to the least-loaded rank),
as PyTorch's ``ZeroRedundancyOptimizer`` does; DeepSpeed cuts one flat vector into N equal
pieces instead, which balances exactly but splits tensors (and breaks factored optimizers such
as Adafactor, which this keeps working).

Checkpoints: ``consolidate_state_dict()`` (every rank calls it) sends each rank's moments to
rank 0, whose ``state_dict()`` is then exactly a plain optimizer's. So a checkpoint does not
know it was sharded: it resumes with or without ``--shard-optimizer`` and at any number of ranks.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from .communicator import Communicator, get_world
from .data_parallel import communicator_for


def partition_by_size(sizes: list[int], world_size: int) -> list[int]:
    """Owner rank of each parameter: largest first, each to the rank with the fewest elements so far."""
    loads = [0] * world_size
    owner = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = min(range(world_size), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += sizes[i]
    return owner


def state_bytes(optimizer) -> int:
    """Bytes of array state an optimizer holds (moments and the like; scalars not counted)."""
    state = optimizer.state.values() if optimizer is not None else ()
    return int(sum(v.nbytes for s in state for v in s.values() if hasattr(v, "nbytes") and np.ndim(v) > 0))


class ZeroRedundancyOptimizer:
    """Shard a freshly built optimizer's state over the ranks (ZeRO stage 1; module docstring).

    Args:
        optimizer: a minillm optimizer over all trainable parameters, with no state yet (built
            but never stepped). Its ``param_groups`` stay the full groups: schedules and
            gradient clipping see every parameter, as without sharding.
        world: the communicator (default: the world).
    """

    def __init__(self, optimizer, world: Communicator | None = None):
        if optimizer.state:
            raise ValueError("ZeroRedundancyOptimizer: wrap an optimizer before its first step (it has state)")
        self.world = world or get_world()
        self.full, self.param_groups, self.defaults = optimizer, optimizer.param_groups, optimizer.defaults
        self.params = [p for group in self.param_groups for p in group["params"]]
        dtypes = {p.data.dtype for p in self.params}
        if len(dtypes) > 1:
            raise ValueError(f"ZeroRedundancyOptimizer: all parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.owner = partition_by_size([p.data.size for p in self.params], self.world.size)
        self.global_index = {id(p): i for i, p in enumerate(self.params)}
        mine = {id(p) for p, r in zip(self.params, self.owner) if r == self.world.rank}
        # The local optimizer: the same class and options, over the groups' owned parameters only.
        self.local = copy.copy(optimizer)
        self.local.state = {}
        self.local.param_groups = [dict(g, params=[p for p in g["params"] if id(p) in mine])
                                   for g in self.param_groups]
        self._consolidated: dict | None = None

    # ------------------------------------------------------------------ the training-loop API
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every gradient (all ranks hold full gradients in stage 1)."""
        self.full.zero_grad(set_to_none)

    def step(self) -> None:
        """Update the owned parameters, then all_gather everyone's updated parameters."""
        for full, local in zip(self.param_groups, self.local.param_groups):
            local.update({k: v for k, v in full.items() if k != "params"})  # lr from the schedule
        if any(g["params"] for g in self.local.param_groups):
            self.local.step()
        self._all_gather_parameters()

    def _all_gather_parameters(self) -> None:
        """Every rank receives the parameters each owner just updated (one all_gather)."""
        by_rank = [[p for p, r in zip(self.params, self.owner) if r == rank] for rank in range(self.world.size)]
        xp = backend.get_array_module(self.params[0].data)
        mine = by_rank[self.world.rank]
        local = (xp.concatenate([p.data.reshape(-1) for p in mine]) if mine
                 else xp.zeros(0, dtype=self.params[0].data.dtype))
        counts = [sum(p.data.size for p in ps) for ps in by_rank]
        out = xp.empty(sum(counts), dtype=local.dtype)  # (all parameters,) in owner order
        communicator_for(out, self.world).all_gather(local, out, counts)
        offset = 0
        for rank, ps in enumerate(by_rank):
            for p in ps:
                if rank != self.world.rank:
                    p.data[...] = out[offset:offset + p.data.size].reshape(p.data.shape)
                offset += p.data.size

    # ------------------------------------------------------------------ memory
    def local_state_bytes(self) -> int:
        """Bytes of optimizer state on this rank."""
        return state_bytes(self.local)

    def memory_report(self) -> dict:
        """Optimizer-state bytes per rank, and what each rank would hold without sharding (collective).

        Every parameter's state lives on exactly one rank, so the sum over ranks is what plain
        data parallelism keeps on every rank.
        """
        per_rank = self.world.all_gather_json(self.local_state_bytes())
        return {"optimizer_bytes_per_rank": per_rank, "optimizer_bytes_plain_dp": sum(per_rank),
                "parameters_per_rank": [self.owner.count(r) for r in range(self.world.size)]}

    # ------------------------------------------------------------------ checkpoints
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Collect every rank's state on rank ``to`` (collective), for ``state_dict()`` there."""
        local = self.local.state_dict()
        local_to_global = [self.global_index[id(p)] for g in self.local.param_groups for p in g["params"]]
        entries = {local_to_global[int(i)]: s for i, s in local["state"].items()}
        if self.world.rank != to:
            self._send_state(entries, to)
            self._consolidated = None
            return
        for source in range(self.world.size):
            if source != to:
                entries.update(self._recv_state(source))
        full = self.full.state_dict()  # the groups, with global indices; the full optimizer has no state
        full["state"] = {i: entries[i] for i in sorted(entries)}
        self._consolidated = full

    def _send_state(self, entries: dict, dest: int) -> None:
        header = {str(i): {name: ({"shape": list(v.shape), "dtype": str(v.dtype)} if isinstance(v, np.ndarray)
                                  else {"scalar": v}) for name, v in s.items()} for i, s in entries.items()}
        self.world.send_json(header, dest)
        for i in sorted(entries):
            for name in sorted(entries[i]):
                if isinstance(entries[i][name], np.ndarray):
                    self.world.send(np.ascontiguousarray(entries[i][name]), dest)

    def _recv_state(self, source: int) -> dict:
        header = self.world.recv_json(source)
        entries = {}
        for i in sorted(header, key=int):
            entries[int(i)] = {}
            for name in sorted(header[i]):
                spec = header[i][name]
                entries[int(i)][name] = spec["scalar"] if "scalar" in spec else self.world.recv(
                    np.empty(spec["shape"], dtype=spec["dtype"]), source)
        return entries

    def state_dict(self) -> dict:
        """The whole optimizer's state as a plain optimizer would save it (after consolidation)."""
        if self.world.size == 1:
            self.consolidate_state_dict()
        if self._consolidated is None:
            raise RuntimeError(f"ZeroRedundancyOptimizer.state_dict on rank {self.world.rank}: call "
                               f"consolidate_state_dict() on every rank first; the state is on the rank given there")
        return self._consolidated

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a plain (full) optimizer state_dict; each rank keeps only its parameters' state."""
        self.full.load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})  # options, lr
        saved = {int(i): s for i, s in state_dict["state"].items()}
        local_state, local_groups, index = {}, [], 0
        for full, local in zip(self.param_groups, self.local.param_groups):
            local_groups.append({**{k: v for k, v in full.items() if k != "params"},
                                 "params": list(range(index, index + len(local["params"])))})
            for p in local["params"]:
                if self.global_index[id(p)] in saved:
                    local_state[index] = saved[self.global_index[id(p)]]
                index += 1
        self.local.load_state_dict({"state": local_state, "param_groups": local_groups})

    def __repr__(self) -> str:
        owned = self.owner.count(self.world.rank)
        return (f"ZeroRedundancyOptimizer(rank {self.world.rank} of {self.world.size}: {owned} of "
                f"{len(self.params)} parameters) over {type(self.full).__name__}")
