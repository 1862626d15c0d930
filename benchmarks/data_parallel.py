"""Data parallelism on this machine: tokens/s on 1 and 2 processes, scaling efficiency, all-reduce time.

The same training step (a T5, a global batch of B examples, AdamW, one CPU thread per process) runs

    1 process      python benchmarks/data_parallel.py --worker ...
    2 processes    mpiexec -n 2 python benchmarks/data_parallel.py --worker ...   (B/2 examples each)

and each step is split into its parts, timed on every rank:

    compute    forward + backward on this rank's share
    wait       a barrier before the all-reduce: how long this rank waited for the slower one
    all-reduce averaging the gradients (minillm.distributed.average_gradients, 25 MB buckets)
    update     clipping + AdamW (+ ZeRO-1's all-gather of the updated weights, in the ZeRO-1 rows)

    tokens/s             = (source + target tokens of all ranks) / wall time of the timed steps
    scaling efficiency   = tokens/s on 2 processes / (2 x tokens/s on 1 process)

1.0 would be perfect scaling. On a 2-core machine that other programs share, two processes can
only gain when a second core is idle; the figures are printed as measured, whatever they show.

The peer: PyTorch's DistributedDataParallel (gloo backend, the transformers T5 of the same size,
AdamW, one thread per process) runs the same global batch on 1 and 2 processes, launched by the
same mpiexec, so the two scaling efficiencies are measured side by side on the same machine.
PyTorch overlaps its all-reduce with backward, so only its whole step is timed. Skipped when torch
or transformers is absent (``--no-torch`` skips it too). The settings run interleaved, each
``--repeats`` times, and each keeps its fastest run (other programs only ever slow a run down).
The run also reports the optimizer memory per rank with and without ZeRO-1 (measured from the
arrays each rank holds after a step).

Usage:
    python benchmarks/data_parallel.py [--steps 20] [--batch-size 16] [--d-model 128] [--repeats 2]
    MINILLM_SMOKE=1 python benchmarks/data_parallel.py        # tiny, a minute with the PyTorch peer
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = os.environ.get("MINILLM_SMOKE", "").strip() not in ("", "0", "false", "False")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3 if SMOKE else 20, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=1 if SMOKE else 3)
    p.add_argument("--batch-size", type=int, default=8 if SMOKE else 16, help="the global batch")
    p.add_argument("--d-model", type=int, default=32 if SMOKE else 128)
    p.add_argument("--layers", type=int, default=1 if SMOKE else 2)
    p.add_argument("--vocab", type=int, default=256 if SMOKE else 2000)
    p.add_argument("--source-length", type=int, default=16 if SMOKE else 48)
    p.add_argument("--target-length", type=int, default=8 if SMOKE else 24)
    p.add_argument("--shard-optimizer", action="store_true", help="(worker) ZeRO-1")
    p.add_argument("--no-torch", action="store_true", help="do not run the PyTorch DDP peer")
    p.add_argument("--repeats", type=int, default=1 if SMOKE else 2, help="runs of each setting (fastest kept)")
    p.add_argument("--framework", default="minillm", choices=["minillm", "torch"], help="(worker) which one")
    p.add_argument("--worker", action="store_true", help="(internal) run the timed loop on this rank")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- the worker
def worker(args) -> None:
    """The timed loop on one rank; rank 0 prints one line 'RESULT {json}'."""
    import minillm  # noqa: PLC0415
    from minillm import distributed  # noqa: PLC0415
    from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: PLC0415
    from minillm.optim import AdamW, clip_grad_norm_  # noqa: PLC0415

    world = distributed.init()
    minillm.set_num_threads(1)
    minillm.manual_seed(0)
    config = T5Config(vocab_size=args.vocab, d_model=args.d_model, d_kv=args.d_model // 4, d_ff=4 * args.d_model,
                      num_layers=args.layers, num_heads=4, dropout_rate=0.0)
    model = T5ForConditionalGeneration(config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, lr=1e-3)
    if args.shard_optimizer:
        optimizer = distributed.ZeroRedundancyOptimizer(optimizer)
    pairs, collate = synthetic_batch(args)
    share = distributed.DistributedSampler().shard(list(range(args.batch_size)))
    batch = collate([pairs[i] for i in share])
    local_tokens = int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())
    distributed.broadcast_parameters(model)
    timings = {"compute": 0.0, "wait": 0.0, "all_reduce": 0.0, "update": 0.0}
    calls = 0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            world.barrier()
            timings = dict.fromkeys(timings, 0.0)
            started = time.perf_counter()
        t0 = time.perf_counter()
        model(**batch).loss.backward()
        t1 = time.perf_counter()
        world.barrier()
        t2 = time.perf_counter()
        calls = distributed.average_gradients(params)
        t3 = time.perf_counter()
        clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        t4 = time.perf_counter()
        for key, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            timings[key] += seconds
    world.barrier()
    wall = time.perf_counter() - started
    tokens = distributed.sum_over_ranks(local_tokens) * args.steps
    per_rank = world.all_gather_json({k: v / args.steps * 1e3 for k, v in timings.items()})
    optimizer_bytes = world.all_gather_json(
        optimizer.local_state_bytes() if args.shard_optimizer else distributed.state_bytes(optimizer))
    if world.rank == 0:
        print("RESULT " + json.dumps({
            "processes": world.size, "tokens_per_s": tokens / wall, "step_ms": wall / args.steps * 1e3,
            "ms_per_step_by_rank": per_rank, "all_reduce_calls_per_step": calls,
            "gradient_bytes": int(sum(p.data.nbytes for p in params)), "parameters": int(sum(p.data.size for p in params)),
            "optimizer_bytes_by_rank": optimizer_bytes}), flush=True)


def synthetic_batch(args):
    """The global batch: B pairs of fixed lengths (so both frameworks pad nothing), as NumPy arrays."""
    import numpy as np  # noqa: PLC0415

    from minillm.data.collate import collate  # noqa: PLC0415

    rng = np.random.default_rng(1)
    return [(rng.integers(3, args.vocab, args.source_length).tolist() + [1],
             rng.integers(3, args.vocab, args.target_length).tolist() + [1]) for _ in range(args.batch_size)], collate


def torch_worker(args) -> None:
    """PyTorch DDP (gloo) on this rank: the same step, timed whole; rank 0 prints 'RESULT {json}'."""
    # This script's folder (first on sys.path) holds kernels.py, which would shadow the `kernels`
    # package transformers probes for.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch  # noqa: PLC0415
    import torch.distributed as tdist  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    rank, size = int(os.environ.get("PMI_RANK", 0)), int(os.environ.get("PMI_SIZE", 1))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if size > 1:
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MINILLM_BENCH_PORT']}",
                                 rank=rank, world_size=size)
    config = transformers.T5Config(vocab_size=args.vocab, d_model=args.d_model, d_kv=args.d_model // 4,
                                   d_ff=4 * args.d_model, num_layers=args.layers, num_heads=4, dropout_rate=0.0,
                                   decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(config)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if size > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pairs, collate = synthetic_batch(args)
    local = collate(pairs[rank::size])
    batch = {k: torch.from_numpy(v) for k, v in local.items()}
    local_tokens = int(local["attention_mask"].sum() + (local["labels"] != -100).sum())
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if size > 1:
                tdist.barrier()
            started = time.perf_counter()
        ddp(**batch).loss.backward()  # DDP all-reduces the gradients during backward
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    if size > 1:
        tdist.barrier()
    wall = time.perf_counter() - started
    if rank == 0:
        print("RESULT " + json.dumps({"processes": size, "tokens_per_s": local_tokens * size * args.steps / wall,
                                      "step_ms": wall / args.steps * 1e3}), flush=True)
    if size > 1:
        tdist.destroy_process_group()


# ---------------------------------------------------------------------------------- the driver
def launch(args, processes: int, shard: bool = False, framework: str = "minillm") -> dict:
    """Run the worker on ``processes`` processes; returns rank 0's result."""
    options = [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--batch-size={args.batch_size}",
               f"--d-model={args.d_model}", f"--layers={args.layers}", f"--vocab={args.vocab}",
               f"--source-length={args.source_length}", f"--target-length={args.target_length}", "--worker",
               f"--framework={framework}"]
    command = [sys.executable, str(Path(__file__).resolve()), *options, *(["--shard-optimizer"] if shard else [])]
    if processes > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec"), "-n", str(processes), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MINILLM_BENCH_PORT": str(_free_port())}
    for var in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK"):
        env.pop(var, None)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])


def _free_port() -> int:
    """A TCP port nothing listens on now (for PyTorch's rendezvous)."""
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401, PLC0415
        import transformers  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        (torch_worker if args.framework == "torch" else worker)(args)
        return 0
    try:
        import mpi4py  # noqa: F401, PLC0415
    except ImportError:
        print("needs the distributed extra: pip install 'minillm[distributed]'")
        return 1
    load_before = os.getloadavg()[0]
    # Interleaved, each setting --repeats times, keeping each one's fastest run: other programs on
    # the machine only ever slow a run down, so the fastest is the least disturbed.
    settings = {"one": (1, False, "minillm"), "two": (2, False, "minillm"), "zero": (2, True, "minillm")}
    if not args.no_torch and _torch_available():
        settings.update(torch_one=(1, False, "torch"), torch_two=(2, False, "torch"))
    runs: dict = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, (processes, shard, framework) in settings.items():
            runs[name].append(launch(args, processes, shard, framework))
    best = {name: max(results, key=lambda r: r["tokens_per_s"]) for name, results in runs.items()}
    one, two, zero = best["one"], best["two"], best["zero"]
    peer = [best["torch_one"], best["torch_two"]] if "torch_one" in best else None
    efficiency = two["tokens_per_s"] / (2 * one["tokens_per_s"])
    print(f"T5 d_model={args.d_model}, {args.layers}+{args.layers} layers, {one['parameters']:,} parameters; "
          f"global batch {args.batch_size} x ({args.source_length + 1} + {args.target_length + 1}) tokens; "
          f"1 thread per process; {args.steps} timed steps, fastest of {args.repeats} runs; {os.cpu_count()} "
          f"CPU core(s); load average "
          f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after (other programs share the cores)\n")
    print("| processes | tokens/s | step (ms) | compute (ms) | wait (ms) | all-reduce (ms) | update (ms) |")
    print("|---|---|---|---|---|---|---|")
    for result, label in ((one, ""), (two, ""), (zero, ", ZeRO-1")):
        for rank, t in enumerate(result["ms_per_step_by_rank"]):
            print(f"| {result['processes']} (rank {rank}{label}) | {result['tokens_per_s']:.0f} | {result['step_ms']:.1f} | "
                  f"{t['compute']:.1f} | {t['wait']:.2f} | {t['all_reduce']:.2f} | {t['update']:.1f} |")
    reduce_share = max(t["all_reduce"] for t in two["ms_per_step_by_rank"]) / two["step_ms"]
    print(f"\nscaling efficiency on 2 processes: {efficiency:.2f} (speed-up {2 * efficiency:.2f}x of an ideal 2x)")
    peer_efficiency = None
    if peer:
        peer_efficiency = peer[1]["tokens_per_s"] / (2 * peer[0]["tokens_per_s"])
        print(f"PyTorch DDP (gloo), same model and batch: {peer[0]['tokens_per_s']:.0f} tokens/s on 1 process, "
              f"{peer[1]['tokens_per_s']:.0f} on 2; scaling efficiency {peer_efficiency:.2f}; minillm/PyTorch "
              f"tokens/s ratio {one['tokens_per_s'] / peer[0]['tokens_per_s']:.2f} (1 process), "
              f"{two['tokens_per_s'] / peer[1]['tokens_per_s']:.2f} (2 processes)")
    print(f"all-reduce of {two['gradient_bytes'] / 2**20:.2f} MB of gradients in "
          f"{two['all_reduce_calls_per_step']} bucket(s): {reduce_share:.1%} of the 2-process step")
    plain, sharded = two["optimizer_bytes_by_rank"], zero["optimizer_bytes_by_rank"]
    print(f"optimizer state per rank: plain DP {plain} bytes, ZeRO-1 {sharded} bytes "
          f"({max(sharded) / max(plain):.0%} of plain); ZeRO-1 tokens/s {zero['tokens_per_s']:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"one": one, "two": two, "zero1": zero, "efficiency": efficiency,
                                               "all_reduce_share": reduce_share, "torch": peer, "all_runs": runs,
                                               "torch_efficiency": peer_efficiency}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
