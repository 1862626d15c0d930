"""Training on several processes: data parallelism (DDP) and sharded optimizer state (ZeRO-1).

    pip install 'minillm[distributed]'                       # mpi4py + mpich
    mpiexec -n 2 minillm finetune --model M --data D --out runs/dp --batch-size 16
    mpiexec -n 2 minillm finetune ... --shard-optimizer     # ZeRO stage 1

Read in this order:

    communicator.py   init(), rank(), world_size(), is_main(); all_reduce, broadcast, all_gather
                      over MPI; abort-on-error and the collective timeout (no hangs)
    sampler.py        each rank's disjoint share of every global batch
    data_parallel.py  broadcast the weights once, average the gradients in 25 MB buckets;
                      why N ranks on B/N examples each equal one process on B
    zero.py           ZeRO stage 1: each rank keeps AdamW's moments for its parameters only
    nccl.py           the same collectives on GPUs, over NCCL through CuPy
    trainer_hooks.py  DataParallel: the one object ``minillm.training.Trainer`` holds (a no-op in
                      one process); the commands' ``run_command`` (an error on one rank ends all)

One process without MPI is the default and needs no MPI installed: every collective of a
one-rank world returns its input. docs/distributed.md is the long version, with measurements.
"""
from .communicator import (Communicator, MPICommunicator, SingleProcess, get_world, init, is_main,
                           launched_by_mpi, rank, world_size)
from .data_parallel import (BUCKET_CAP_MB, any_rank, average_gradients, broadcast_parameters,
                            communicator_for, global_token_weight, mean_over_ranks, sum_over_ranks)
from .sampler import DistributedSampler
from .zero import ZeroRedundancyOptimizer, partition_by_size, state_bytes

__all__ = ["BUCKET_CAP_MB", "Communicator", "DistributedSampler", "MPICommunicator", "SingleProcess",
           "ZeroRedundancyOptimizer", "any_rank", "average_gradients", "broadcast_parameters",
           "communicator_for", "get_world", "global_token_weight", "init", "is_main", "launched_by_mpi",
           "mean_over_ranks", "partition_by_size", "rank", "state_bytes", "sum_over_ranks", "world_size"]
