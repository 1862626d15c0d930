"""benchmarks/train_step.py: its timing schedule, its op instrumentation, and a smoke run.

The benchmark's figures are the evidence for docs/speed.md, so the machinery that produces them
is tested: each framework's timed steps follow an untimed one of its own (no step is timed right
after the other framework's), and the per-op timer counts each op once, fast or reference.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minillm
from minillm import Tensor, ops
from minillm.fast.cpu_linalg import ThreadedMatMul
from minillm.ops.linalg import MatMul

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark module, imported with a clean command line (it parses sys.argv on import)."""
    monkeypatch.setattr(sys, "argv", [str(SCRIPT)])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # it sets these
        monkeypatch.setenv(var, os.environ.get(var, ""))
    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("train_step_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path[:] = path  # it points sys.path[0] at the repository root
    return module


def test_each_timed_step_follows_an_untimed_step_of_the_same_framework(bench):
    log = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("a", "b")}
    seconds, faults = bench.time_in_blocks(calls, repeats=3, warmup=2, block=2)
    assert log[:4] == ["a", "b", "a", "b"]  # warm-up: each once per round
    assert log[4:] == (["a"] * 3 + ["b"] * 3) * 3  # per turn: one untimed, then two timed
    assert set(seconds) == set(faults) == {"a", "b"}
    assert all(s >= 0 for s in seconds.values()) and all(f >= 0 for f in faults.values())


def test_instrumented_ops_reports_each_op_once_and_restores_the_classes(bench):
    events = []
    originals = {cls: (cls.__dict__["forward"], cls.__dict__["backward"]) for cls in (MatMul, ThreadedMatMul)}
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones((3, 2)), requires_grad=True)
    with bench.instrumented_ops(lambda cls, phase, seconds, out: events.append((cls, phase))):
        ops.matmul(a, b).sum().backward()  # a vector: ThreadedMatMul hands it to MatMul.forward
    matmul_events = [e for e in events if issubclass(e[0], MatMul)]
    expected = ThreadedMatMul if minillm.fast_paths_enabled() else MatMul
    assert matmul_events == [(expected, "forward"), (expected, "backward")]
    for cls, (forward, backward) in originals.items():
        assert cls.__dict__["forward"] is forward and cls.__dict__["backward"] is backward


def test_instrumented_ops_can_be_limited_to_the_reference_ops(bench):
    names = set()
    with bench.instrumented_ops(lambda cls, *_: names.add(cls.__module__), modules=("minillm.ops",)):
        ops.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3)))).sum()
    assert names and all(name.startswith("minillm.ops") for name in names)


def test_smoke_run_prints_the_tables_and_the_breakdown(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    env = dict(os.environ, MINILLM_SMOKE="1")
    done = subprocess.run([sys.executable, str(SCRIPT), "--settings", "hf-0.0", "--no-reference", "--breakdown"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "where a step goes, hf init, dropout 0.0" in out
    assert "For a step ratio of 0.9 with these products" in out
    row = next(line for line in out.splitlines() if line.startswith("hf init, dropout 0.0"))
    minillm_s, pytorch_s, ratio = (float(x) for x in row.split()[4:7])
    # Each figure is printed rounded (seconds to 0.0005, the ratio to 0.005): the ratio must lie
    # within what the rounded seconds allow.
    low = (minillm_s - 5e-4) / (pytorch_s + 5e-4) - 5e-3
    high = (minillm_s + 5e-4) / max(pytorch_s - 5e-4, 1e-9) + 5e-3
    assert low <= ratio <= high
    assert "page faults/step" in out
    verdict = next(line for line in out.splitlines() if line.startswith("train-step target met in"))
    assert verdict.startswith(f"train-step target met in {int(ratio <= 0.9)} of 1 settings")
