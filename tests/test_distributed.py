"""Specification of minillm.distributed: one process by default, and N ranks that train as one.

The 2-process tests run ``mpiexec -n 2`` on tests/distributed/train_ranks.py (a tiny T5 and the
Trainer); they skip with a reason when mpi4py or mpiexec is absent (``pip install
'minillm[distributed]'``; CI installs it). Each run takes a few seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minillm
from minillm import distributed
from minillm.distributed import DistributedSampler, ZeroRedundancyOptimizer, partition_by_size
from minillm.distributed.communicator import SingleProcess
from minillm.distributed.data_parallel import _buckets
from minillm.nn import Linear
from minillm.optim import AdamW

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "distributed" / "train_ranks.py"
RUN_TIMEOUT_S = 120  # a hung job fails the test instead of hanging CI
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    # A broken job aborts itself (collective timeout) well before the test's own timeout kills it.
    env.update(MINILLM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MINILLM_DIST_TIMEOUT="30")
    env.update(extra)
    return env


def _mpiexec() -> str | None:
    try:
        import mpi4py  # noqa: F401, PLC0415
    except ImportError:
        return None
    candidate = Path(sys.executable).parent / "mpiexec"
    return str(candidate) if candidate.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py/mpiexec not installed: pip install 'minillm[distributed]'")


def run_ranks(n: int, out: Path, *options, timeout: float = RUN_TIMEOUT_S, env=None, check=True):
    """Run train_ranks.py on n ranks (n = 0: plain python, no MPI); returns the CompletedProcess."""
    command = [sys.executable, str(SCRIPT), str(out), *map(str, options)]
    if n:
        command = [MPIEXEC, "-n", str(n), *command]
    result = subprocess.run(command, cwd=REPO, env=env or _clean_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def load_weights(out: Path) -> dict:
    from safetensors.numpy import load_file  # noqa: PLC0415

    return load_file(str(out / "run" / "model.safetensors"))


# ---------------------------------------------------------------------------------- one process
def test_one_process_is_the_default_and_needs_no_mpi(tmp_path):
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"  # as if mpi4py were not installed
        "import numpy as np\n"
        "from minillm import distributed as d\n"
        "w = d.init()\n"
        "a = np.arange(3.0); d.get_world().all_reduce(a); d.get_world().broadcast(a)\n"
        "print(type(w).__name__, d.rank(), d.world_size(), d.is_main(), a.tolist(), d.any_rank(False))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SingleProcess", "0", "1", "True", "[0.0,", "1.0,", "2.0]", "False"]


def test_launched_by_mpiexec_without_mpi4py_says_what_to_install():
    code = "import sys; sys.modules['mpi4py'] = None\nfrom minillm import distributed as d\nprint(d.init())\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_clean_env(PMI_RANK="0", PMI_SIZE="2"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "pip install 'minillm[distributed]'" in result.stderr
    # a launcher that starts a single process (srun -n 1, mpiexec -n 1) needs no MPI at all
    alone = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_clean_env(PMI_RANK="0", PMI_SIZE="1"),
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0 and "SingleProcess" in alone.stdout, alone.stderr


def test_collectives_check_their_arguments():
    world = SingleProcess()
    with pytest.raises(ValueError, match="op must be"):
        world.all_reduce(np.zeros(2), op="prod")
    with pytest.raises(ValueError, match="rank 1 does not exist"):
        world.broadcast(np.zeros(2), root=1)
    with pytest.raises(ValueError, match="counts"):
        world.all_gather(np.zeros(2), np.zeros(3), [3])
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
        distributed.init(timeout=0)


# ---------------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_sampler_deals_each_global_batch_into_disjoint_balanced_shares(world_size):
    batch = [17, 3, 9, 40, 22, 5, 11]
    shares = [DistributedSampler(rank=r, world_size=world_size).shard(batch) for r in range(world_size)]
    flat = [i for share in shares for i in share]
    assert sorted(flat) == sorted(batch)                                  # every example exactly once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1             # balanced
    for share in shares:                                                  # order within a share kept
        assert share == [i for i in batch if i in share]


def test_sampler_refuses_a_global_batch_smaller_than_the_world():
    with pytest.raises(ValueError, match="--batch-size is the global batch"):
        DistributedSampler(rank=0, world_size=4).check_batch_size(3)
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        DistributedSampler(rank=2, world_size=2)


# ---------------------------------------------------------------------------------- buckets, partition
class _P:
    def __init__(self, n, dtype=np.float32):
        self.data = np.zeros(n, dtype=dtype)


def test_buckets_are_runs_of_at_most_the_cap_in_order():
    params = [_P(2), _P(2), _P(2), _P(10), _P(1)]  # 8, 8, 8, 40, 4 bytes
    buckets = _buckets(params, cap_bytes=20)
    assert [[params.index(p) for p in b] for b in buckets] == [[0, 1], [2], [3], [4]]
    assert len(_buckets([_P(1), _P(1, np.float64)], cap_bytes=100)) == 2  # one dtype per flat buffer


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_zero_partition_gives_each_parameter_one_owner_and_balances_the_load(world_size):
    sizes = [4096, 16, 4096, 128, 2048, 16, 512, 4096]
    owner = partition_by_size(sizes, world_size)
    assert len(owner) == len(sizes) and set(owner) <= set(range(world_size))
    loads = [sum(s for s, o in zip(sizes, owner) if o == r) for r in range(world_size)]
    assert max(loads) - min(loads) <= max(sizes)  # greedy's guarantee: within one parameter


# ---------------------------------------------------------------------------------- ZeRO on one rank
def _two_layer(seed):
    minillm.manual_seed(seed)
    return [Linear(6, 5), Linear(5, 3)]


def test_zero_on_one_rank_steps_exactly_like_the_optimizer_it_wraps():
    layers_a, layers_b = _two_layer(1), _two_layer(1)
    params_a = [p for layer in layers_a for p in layer.parameters()]
    params_b = [p for layer in layers_b for p in layer.parameters()]
    plain = AdamW(params_a, lr=1e-2)
    zero = ZeroRedundancyOptimizer(AdamW(params_b, lr=1e-2), world=SingleProcess())
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = [rng.standard_normal(p.data.shape).astype(np.float32) for p in params_a]
        for p, q, g in zip(params_a, params_b, grads):
            p.grad, q.grad = g.copy(), g.copy()
        plain.step()
        zero.step()
    for p, q in zip(params_a, params_b):
        np.testing.assert_array_equal(p.data, q.data)
    saved = zero.state_dict()
    assert set(saved["state"]) == set(plain.state_dict()["state"])
    for i, entry in plain.state_dict()["state"].items():
        np.testing.assert_array_equal(entry["exp_avg_sq"], saved["state"][i]["exp_avg_sq"])
    with pytest.raises(ValueError, match="before its first step"):
        ZeroRedundancyOptimizer(plain, world=SingleProcess())


def test_zero_state_dict_loads_into_a_plain_optimizer_and_back():
    params = [p for layer in _two_layer(2) for p in layer.parameters()]
    zero = ZeroRedundancyOptimizer(AdamW(params, lr=1e-2), world=SingleProcess())
    for p in params:
        p.grad = np.ones_like(p.data)
    zero.step()
    plain = AdamW(params, lr=5.0)
    plain.load_state_dict(zero.state_dict())
    assert plain.param_groups[0]["lr"] == 1e-2
    again = ZeroRedundancyOptimizer(AdamW(params, lr=5.0), world=SingleProcess())
    again.load_state_dict(plain.state_dict())
    assert again.local_state_bytes() == zero.local_state_bytes() > 0


# ---------------------------------------------------------------------------------- NCCL (no GPU here)
def test_nccl_module_imports_and_checks_its_arguments_without_a_gpu():
    from minillm.distributed import nccl  # noqa: PLC0415

    assert nccl.nccl_dtype(np.float32) == "NCCL_FLOAT32" and nccl.nccl_op("sum") == "NCCL_SUM"
    with pytest.raises(ValueError, match="NCCL has no data type for complex64"):
        nccl.nccl_dtype(np.complex64)
    with pytest.raises(ValueError, match="must be one of"):
        nccl.nccl_op("mean")
    if not minillm.backend.cuda_available():
        with pytest.raises((ImportError, RuntimeError)):
            nccl.NcclCommunicator(SingleProcess())


# ---------------------------------------------------------------------------------- 2 processes
COLLECTIVES = """
import json, numpy as np
from minillm import distributed as d
w = d.init(timeout=30)
r = w.rank

class P:  # a parameter: data and grad
    def __init__(self, data, grad):
        self.data, self.grad = data, grad

# rank r's gradients: g = (r + 1) * base; p2 has a gradient on rank 0 only, p3 on no rank
base = [np.arange(6, dtype=np.float32).reshape(2, 3), np.full(300, 0.5, np.float32), np.ones(4, np.float32)]
params = [P(np.zeros_like(b), (r + 1) * b) for b in base[:2]]
params.append(P(np.zeros(4, np.float32), base[2].copy() if r == 0 else None))
params.append(P(np.zeros(3, np.float32), None))
calls = d.average_gradients(params, bucket_cap_mb=1000 / 2**20)  # 1000-byte buckets: several calls
model_state = {"a": P(np.full(3, float(r), np.float32), None)}
class M:
    def named_parameters(self):
        return model_state.items()
d.broadcast_parameters(M())
out = np.empty(5, np.float32)
w.all_gather(np.full(2 + r, 10.0 + r, np.float32), out, [2, 3])
if r == 0:
    print("RESULT " + json.dumps({"grads": [None if p.grad is None else p.grad.tolist() for p in params],
          "calls": calls, "broadcast": model_state["a"].data.tolist(), "gathered": out.tolist(),
          "any": d.any_rank(False), "mean": d.mean_over_ranks(r + 1.0)}))
else:
    d.any_rank(True); d.mean_over_ranks(r + 1.0)
"""


@needs_mpi
def test_collectives_on_two_ranks_average_broadcast_and_gather():
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", COLLECTIVES], cwd=REPO, env=_clean_env(),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.split("RESULT ", 1)[1])
    # oracle: the mean of (1 * base) and (2 * base) is 1.5 * base; p2 is (base + 0) / 2; p3 stays None
    assert got["grads"][0] == (1.5 * np.arange(6).reshape(2, 3)).tolist()
    assert got["grads"][1] == [0.75] * 300
    assert got["grads"][2] == [0.5] * 4
    assert got["grads"][3] is None
    assert got["calls"] == 3  # reverse order, 1000-byte cap: [p2], [p1] (1200 bytes, alone), [p0]
    assert got["broadcast"] == [0.0, 0.0, 0.0]
    assert got["gathered"] == [10.0, 10.0, 11.0, 11.0, 11.0]
    assert got["any"] is True and got["mean"] == 1.5


# Tolerance of "2 ranks with batch B == 1 process with batch B". Each rank sums the loss over its
# own tokens, then the ranks' gradients are added: the same terms as one process adds, in another
# order. float32 addition is not associative, so the loss and the gradients differ by rounding:
# relative 1e-5 allowed (sums of a few hundred float32 terms round at ~1e-6).
# The weights after 5 AdamW steps: AdamW divides each element's step by that element's own gradient
# size (m / sqrt(v)). Where an element's gradient is as small as the rounding error of the large
# terms summed into it, the two orders give it visibly different values and the normalised step
# inherits that (tutorial 11 shows a few such elements). So: all but 0.1% of the weights within 16
# ulps of the largest weight (float32 rounding with room), and none further than 1% of the
# distance lr x steps that AdamW can move a weight. Measured: every weight within 1 ulp (1.2e-7 on
# weights up to 3.9); the planted bugs in the report move weights by 1.6e-3 to 1.2e-2.
ULPS, LR, STEPS = 16, 3e-3, 5  # LR and STEPS: what tests/distributed/train_ranks.py uses


@needs_mpi
@pytest.mark.parametrize("accumulate", [1, 3])  # 3 micro-batches per step: the token count spans them all
def test_two_ranks_with_global_batch_b_equal_one_process_with_batch_b(tmp_path, accumulate):
    run_ranks(0, tmp_path / "one", "--accumulate", accumulate)
    run_ranks(2, tmp_path / "two", "--accumulate", accumulate)
    one, two = load_weights(tmp_path / "one"), load_weights(tmp_path / "two")
    scale = max(float(np.abs(w).max()) for w in one.values())
    rounding = ULPS * np.finfo(np.float32).eps * scale
    diffs = np.concatenate([np.abs(one[k] - two[k]).ravel() for k in one])
    assert np.mean(diffs <= rounding) >= 0.999, f"{np.sum(diffs > rounding)} weights beyond {rounding:.3g}"
    assert diffs.max() <= 0.01 * LR * STEPS, f"max |difference| {diffs.max():.3g}"
    losses_one = json.loads((tmp_path / "one" / "result.json").read_text())["losses"]
    losses_two = json.loads((tmp_path / "two" / "result.json").read_text())["losses"]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)  # the loss of the whole global batch
    # and its gradient: AdamW's update is blind to the gradient's scale, its norm is not
    norms_one = json.loads((tmp_path / "one" / "result.json").read_text())["grad_norms"]
    norms_two = json.loads((tmp_path / "two" / "result.json").read_text())["grad_norms"]
    np.testing.assert_allclose(norms_two, norms_one, rtol=1e-5)
    assert len(losses_two) == 5  # rank 0 alone wrote the log: one line per step, no duplicates


@needs_mpi
def test_zero1_gives_bitwise_the_weights_of_plain_data_parallelism(tmp_path):
    run_ranks(2, tmp_path / "dp")
    run_ranks(2, tmp_path / "zero", "--shard-optimizer")
    plain, sharded = load_weights(tmp_path / "dp"), load_weights(tmp_path / "zero")
    for name in plain:
        np.testing.assert_array_equal(sharded[name], plain[name], err_msg=name)
    memory = json.loads((tmp_path / "zero" / "result.json").read_text())["memory"]
    per_rank, full = memory["optimizer_bytes_per_rank"], memory["optimizer_bytes_plain_dp"]
    n_params = sum(w.size for w in plain.values())
    assert full == 2 * 4 * n_params           # AdamW: two float32 moments per parameter
    assert max(per_rank) < 0.6 * full         # each rank holds about half


@needs_mpi
def test_resume_on_two_ranks_is_bit_identical(tmp_path):
    options = ["--steps", "6", "--dropout", "0.1", "--shard-optimizer"]  # dropout: per-rank RNG streams
    run_ranks(2, tmp_path / "straight", *options)
    run_ranks(2, tmp_path / "resumed", *options, "--stop-at", "3")
    stopped = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert stopped["interrupted"] and stopped["step"] == 3
    run_ranks(2, tmp_path / "resumed", *options, "--resume")
    straight, resumed = load_weights(tmp_path / "straight"), load_weights(tmp_path / "resumed")
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


@needs_mpi
def test_a_two_rank_checkpoint_resumes_on_one_process(tmp_path):
    run_ranks(2, tmp_path / "run", "--steps", "6", "--stop-at", "3", "--shard-optimizer")
    run_ranks(0, tmp_path / "run", "--steps", "6", "--resume")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["step"] == 6


@needs_mpi
def test_a_rank_that_raises_stops_the_job_with_its_error(tmp_path):
    started = time.perf_counter()
    result = run_ranks(2, tmp_path / "run", "--raise-on-rank", "1", check=False, timeout=60)
    assert result.returncode != 0
    assert "planted failure on rank 1 at step 2" in result.stderr
    assert "[rank 1 of 2]" in result.stderr
    assert time.perf_counter() - started < 45  # ended by MPI_Abort, not by the test's timeout


@needs_mpi
def test_a_rank_that_hangs_is_stopped_by_the_collective_timeout(tmp_path):
    result = run_ranks(2, tmp_path / "run", "--hang-on-rank", "1", check=False, timeout=60,
                       env=_clean_env(MINILLM_DIST_TIMEOUT="3"))
    assert result.returncode != 0
    assert "waited more than 3 s for the other ranks" in result.stderr


@needs_mpi
@pytest.mark.parametrize("who", ["mpiexec", "rank 1"])  # Ctrl-C in the terminal; a signal to one rank
def test_ctrl_c_stops_every_rank_at_the_same_step_and_saves_once(tmp_path, who):
    out = tmp_path / "run"
    command = [MPIEXEC, "-n", "2", sys.executable, str(SCRIPT), str(out), "--steps", "500", "--sleep", "0.2"]
    process = subprocess.Popen(command, cwd=REPO, env=_clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "progress").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if who == "mpiexec":
            process.send_signal(signal.SIGINT)  # what Ctrl-C does; mpiexec forwards it to every rank
        else:  # only rank 1 hears it: the ranks must still agree on the step to stop after
            os.kill(int((out / "pid.1").read_text()), signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["interrupted"] and 1 <= result["step"] < 500
    assert stdout.count("steps, pid") == 2  # both ranks returned from train() normally
    saved = json.loads((out / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert saved["step"] == result["step"]
    assert len(saved["extra"]["rng_state_by_rank"]) == 2
    steps = [json.loads(line).get("step") for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, result["step"] + 1))  # one writer: no step logged twice


@needs_mpi
def test_mpiexec_minillm_pretrain_trains_once_and_rank_0_alone_speaks_and_writes(tmp_path):
    out = tmp_path / "pt"
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "minillm", "pretrain", "--out", str(out),
                             "--shard-optimizer"], cwd=REPO, env=_clean_env(MINILLM_SMOKE="1"),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished after step") == 1, result.stdout  # rank 1's stdout is silenced
    assert "ZeRO-1: optimizer state per rank" in result.stdout
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in entries if "loss" in e]
    assert steps == sorted(set(steps)) and steps  # one writer: every step logged once
    assert (out / "checkpoint" / "trainer_state.json").is_file() and (out / "model.safetensors").is_file()


@needs_mpi
def test_mpiexec_minillm_with_a_bad_file_fails_cleanly_on_every_rank(tmp_path):
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "minillm", "finetune", "--data",
                             str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "ft")], cwd=REPO,
                            env=_clean_env(MINILLM_SMOKE="1"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "missing.jsonl" in result.stderr and "Traceback" not in result.stderr
