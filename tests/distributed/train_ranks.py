"""Entry script of the distributed tests: train a tiny T5 with the Trainer, on 1 process or N ranks.

    python tests/distributed/train_ranks.py OUT [options]            # one process, no MPI
    mpiexec -n 2 python tests/distributed/train_ranks.py OUT [...]   # two ranks

The data are random token-id pairs of varying lengths (no tokenizer), the same on every rank
and in every run: the Trainer's Batcher cuts global batches of --batch-size from them.
Rank 0 writes OUT/run/ (model.safetensors, checkpoint/, log.jsonl) and OUT/result.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import minillm  # noqa: E402
from minillm import distributed  # noqa: E402
from minillm.data.collate import Batcher  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.training import Trainer, TrainingArguments  # noqa: E402

VOCAB = 48


def make_pairs(n: int, seed: int = 123) -> list:
    """n (source, target) id lists of lengths 3..12 and 2..7, each ending in </s> = 1."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        src = rng.integers(3, VOCAB, size=int(rng.integers(2, 12))).tolist() + [1]
        tgt = rng.integers(3, VOCAB, size=int(rng.integers(1, 7))).tolist() + [1]
        pairs.append((src, tgt))
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--shard-optimizer", action="store_true")
    parser.add_argument("--resume", action="store_true", help="resume from OUT/run/checkpoint")
    parser.add_argument("--stop-at", type=int, default=0, help="raise KeyboardInterrupt after this step")
    parser.add_argument("--raise-on-rank", type=int, default=-1, help="this rank raises at step 2")
    parser.add_argument("--hang-on-rank", type=int, default=-1, help="this rank sleeps at step 2")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each step")
    parser.add_argument("--save-every", type=int, default=0)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient_accumulation_steps")
    args = parser.parse_args(argv)

    world = distributed.init()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pid.{world.rank}").write_text(str(os.getpid()))  # lets a test signal one rank alone
    minillm.set_num_threads(1)
    minillm.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      dropout_rate=args.dropout)
    model = T5ForConditionalGeneration(config)
    if world.rank > 0:  # a different initialisation: the Trainer must broadcast rank 0's weights
        for p in model.parameters():
            p.data[...] = 0.5
    batches = Batcher(make_pairs(args.examples), args.batch_size, shuffle=True, seed=7)
    targs = TrainingArguments(output_dir=str(out / "run"), max_steps=args.steps, batch_size=args.batch_size,
                              learning_rate=3e-3, warmup_steps=1, log_every=1, save_every=args.save_every,
                              weight_decay=0.01, progress=False, shard_optimizer=args.shard_optimizer,
                              gradient_accumulation_steps=args.accumulate)

    def callback(trainer, step, logs):
        if step == 2 and world.rank == args.raise_on_rank:
            raise ValueError(f"planted failure on rank {world.rank} at step {step}")
        if step == 2 and world.rank == args.hang_on_rank:
            time.sleep(3600)
        if args.sleep:
            time.sleep(args.sleep)
            if world.rank == 0:
                (out / "progress").write_text(str(step))
        if step == args.stop_at:
            raise KeyboardInterrupt

    trainer = Trainer(model, None, targs, batches, callbacks=[callback])
    result = trainer.train(resume_from=str(out / "run" / "checkpoint") if args.resume else None)
    report = distributed.trainer_hooks.optimizer_memory_report(trainer.optimizer)
    if world.rank == 0:
        summary = {"world_size": world.size, "step": result.global_step, "interrupted": result.interrupted,
                   "train_loss": result.train_loss, "memory": report,
                   "losses": [e["loss"] for e in trainer.log.entries if "loss" in e],
                   "grad_norms": [e["grad_norm"] for e in trainer.log.entries if "grad_norm" in e]}
        (out / "result.json").write_text(json.dumps(summary))
    distributed.data_parallel.assert_same_on_every_rank(model)
    print(f"rank {world.rank} of {world.size}: {result.global_step} steps, pid {os.getpid()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
