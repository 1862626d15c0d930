"""Which examples each rank trains on: a disjoint share of every global batch.

The data order stays exactly what one process would use: the ``Batcher`` shuffles with the run's
seed and cuts global batches of ``batch_size`` examples. Each global batch is then dealt out like
cards, example k to rank k mod N:

    global batch [e0 e1 e2 e3 e4 e5 e6]      N = 2
    rank 0       [e0    e2    e4    e6]
    rank 1       [   e1    e3    e5   ]

Together the ranks see every example of the batch exactly once, so the averaged gradient is the
whole batch's. Dealing (rather than cutting the batch in N contiguous pieces) matters because
the Batcher sorts each batch by length: contiguous pieces would give one rank all the short
examples and another all the long ones, and the fast rank would wait for the slow one.

``torch.utils.data.DistributedSampler`` deals whole examples the same way (``indices[rank::N]``);
it shares out an epoch, this shares out each batch, so ``--batch-size`` keeps meaning the
global batch and one step on N ranks is one step on one process.
"""
from __future__ import annotations

from typing import Sequence

from .communicator import get_world


class DistributedSampler:
    """Give this rank its share of each global batch (see the module docstring).

    Args:
        rank: this process's rank (default: the world's).
        world_size: the number of ranks (default: the world's).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None):
        world = get_world() if rank is None or world_size is None else None
        self.rank = world.rank if rank is None else int(rank)
        self.world_size = world.size if world_size is None else int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"DistributedSampler: rank {self.rank} is not in a world of {self.world_size}")

    def shard(self, batch: Sequence[int]) -> list[int]:
        """This rank's examples of ``batch`` (a list of example indices): ``batch[rank::N]``.

        A batch with fewer examples than ranks leaves some ranks an empty share; those ranks
        contribute a zero gradient to that step (and zero tokens to its mean).
        """
        return list(batch[self.rank::self.world_size])

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch that cannot give every rank at least one example."""
        if batch_size < self.world_size:
            raise ValueError(f"--batch-size is the global batch: {batch_size} example(s) cannot be shared "
                             f"out over {self.world_size} processes; use at least {self.world_size}")

    def __repr__(self) -> str:
        return f"DistributedSampler(rank={self.rank}, world_size={self.world_size})"
