"""benchmarks/gpu_check.sh without a GPU: its syntax, its refusal without a device, and that one
failing step never stops the others (a stand-in python plays CuPy, pytest and the benchmarks)."""
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_script(tmp_path, env_extra):
    env = dict(os.environ, OUT=str(tmp_path / "out"), LOG_DIR=str(tmp_path / "logs"), **env_extra)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_without_a_device_it_exits_1_with_a_clear_message(tmp_path):
    stub = tmp_path / "stub" / "cupy"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(textwrap.dedent("""\
        __version__ = "0.0-stub"
        class runtime:
            @staticmethod
            def getDeviceCount():
                return 0
        class cuda:
            runtime = runtime
        """))
    result = run_script(tmp_path, {"PYTHONPATH": str(stub.parent)})
    assert result.returncode == 1
    assert "finds no CUDA device" in result.stdout
    assert "nothing was run" in result.stdout
    assert (tmp_path / "out" / "device.log").exists()  # logs reach $OUT even then


def test_a_failing_step_does_not_stop_the_later_ones(tmp_path):
    # A stand-in for python3: the device check passes, pytest fails, every benchmark prints a line.
    fake = tmp_path / "fake-python"
    fake.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        case "$*" in
            -) cat > /dev/null; echo "1 device(s); device 0: Stand-in GPU";;
            "-c import pytest_timeout") exit 1;;
            "-m pytest"*) echo "3 failed, 100 passed"; exit 1;;
            *kernels.py*) echo "table for: $*";;
            *) exit 0;;
        esac
        """))
    fake.chmod(0o755)
    result = run_script(tmp_path, {"PYTHON": str(fake)})
    assert result.returncode == 2, result.stdout
    for section in ("matmul", "attention", "t5"):
        assert f"table for: benchmarks/kernels.py --section {section}" in result.stdout
    assert "1 step(s) failed: gpu-tests (exit 1)" in result.stdout
    logs = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"gpu-tests.log", "bench-matmul.log", "bench-attention.log", "bench-t5-step.log"} <= logs


def load_kernels_benchmark(monkeypatch):
    """benchmarks/kernels.py with a stub ``cupy`` (only its CPU rows can run here)."""
    import importlib.util
    import sys
    import types

    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    spec = importlib.util.spec_from_file_location("benchmark_kernels", SCRIPT.parent / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_t5_timing_uses_train_steps_configuration_and_runs_on_numpy(monkeypatch):
    bench = load_kernels_benchmark(monkeypatch)
    setup = bench.toy_t5_setup()
    assert set(setup) == {"CONFIG", "BATCH", "SRC_LEN", "TGT_LEN"}, "train_step.py's names changed"
    assert setup["CONFIG"]["d_model"] >= 1 and setup["BATCH"] >= 1
    setup["CONFIG"].update(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, vocab_size=64)
    setup.update(BATCH=2, SRC_LEN=6, TGT_LEN=4)
    for fast in (True, False):
        assert bench.time_t5_step(setup, "cpu", steps=1, fast=fast) > 0
