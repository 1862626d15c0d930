"""Hostile files and interrupted runs that need real processes (issue 23).

* the run lock: a process holds a run folder, and every command that writes one is refused at
  once with the holder's pid and command; a lock left by a dead process is taken over;
* signals: SIGTERM during ``pretrain`` stops after the step with a checkpoint and a message, and
  ``--resume`` continues; Ctrl-C at each stage of the quickstart ends with one line;
* a FIFO given to any loader is refused, in a subprocess whose timeout fails the test instead of
  hanging CI.

Every child process runs with a timeout; a child that outlives it fails its test.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from minillm import runlock
from minillm.cli.main import main
from minillm.data import Tokenizer
from minillm.models import T5Config, T5ForConditionalGeneration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120  # a child still running after this fails its test
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# A pretraining run small enough to take a few steps a second, long enough to be interrupted.
SMALL = ["--num-documents", "60", "--d-model", "16", "--d-ff", "32", "--num-layers", "1", "--num-heads", "2",
         "--vocab-size", "300", "--batch-size", "4", "--eval-every", "0", "--save-every", "0", "--log-every", "1"]


def _sigint_as_in_a_terminal() -> None:
    """A job started with ``&`` by a non-interactive shell inherits SIGINT ignored (POSIX), and Python
    then leaves it ignored, so Ctrl-C tests would pass or fail by how the suite was started. The
    child gets the default disposition, as in a terminal's foreground, and installs its own handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def python(code: str, env=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (cwd: the repository); fails the test on timeout."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              env=env or ENV, cwd=REPO, timeout=TIMEOUT_S, preexec_fn=_sigint_as_in_a_terminal)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child process did not end within its timeout:\n{code}")


def wait_for(condition, what: str, process=None, timeout: float = TIMEOUT_S) -> None:
    """Poll ``condition`` until it holds; fail (killing ``process``) if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            if process is not None and process.poll() is None:
                process.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def run_in_process(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny T5 folder (config.json, model.safetensors, tokenizer.json) for convert and finetune."""
    folder = tmp_path_factory.mktemp("model")
    tokenizer = Tokenizer.train([f"the {w} saw a {w} on day {i}." for i, w in enumerate("abcdefgh" * 4)],
                                vocab_size=80, num_sentinels=4)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(str(folder))
    tokenizer.save(str(folder))
    return folder


# ---------------------------------------------------------------------------------- the run lock
HOLDER = """
    import sys, time
    from minillm import runlock
    runlock.acquire(sys.argv[1], "minillm finetune --out the-holder")
    print("locked", flush=True)
    sys.stdin.read()  # held until the test closes our stdin
"""


@pytest.fixture
def held(tmp_path):
    """(folder, pid): a folder whose run lock another process holds for the length of the test."""
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield folder, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=TIMEOUT_S)
    assert not (folder / runlock.LOCK_NAME).exists()  # a holder that ends releases and removes its lock


# Every command that writes a run folder: (argv with OUT for the folder, MODEL for a model folder).
WRITERS = {
    "pretrain": ["pretrain", "--out", "OUT"],
    "finetune": ["finetune", "--model", "MODEL", "--out", "OUT"],
    "resume": ["pretrain", "--out", "OUT", "--resume", "OUT/checkpoint"],
    "quickstart": ["quickstart", "--out", "OUT"],
    "convert": ["convert", "--from-hf", "MODEL", "--out", "OUT", "--overwrite"],
    "train-tokenizer": ["train-tokenizer", "--out", "OUT"],
}


@pytest.mark.parametrize("command", WRITERS)
def test_a_second_writer_is_refused_at_once_with_the_holders_pid_and_command(command, held, model_dir, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    folder, pid = held
    argv = [str(folder) + a[3:] if a.startswith("OUT") else str(model_dir) if a == "MODEL" else a
            for a in WRITERS[command]]
    started = time.monotonic()
    code, output = run_in_process(argv, capsys)
    assert time.monotonic() - started < 30  # refused at once, not after loading or waiting
    assert code == 2 and "Traceback" not in output, output
    assert (f"{folder} is in use by another minillm process (pid {pid}: minillm finetune --out the-holder); "
            "nothing was changed") in output
    assert os.listdir(folder) == [runlock.LOCK_NAME]  # nothing written beside the holder's lock


def test_a_lock_left_by_a_dead_process_is_taken_over_and_reported(tmp_path, model_dir, capsys):
    folder = tmp_path / "run"
    died = python(f"""
        import os
        from minillm import runlock
        runlock.acquire({str(folder)!r}, "minillm convert (killed)")
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), 9)
    """)
    assert died.returncode == -9
    dead_pid = int(died.stdout.split()[0])
    assert json.loads((folder / runlock.LOCK_NAME).read_text())["pid"] == dead_pid  # the stale lock file
    code, output = run_in_process(["convert", "--from-hf", str(model_dir), "--out", str(folder)], capsys)
    assert code == 0, output
    assert (f"{folder}: took over the lock left by pid {dead_pid} (minillm convert (killed)), which ended "
            "without releasing it") in output
    assert (folder / "model.safetensors").exists() and not (folder / runlock.LOCK_NAME).exists()


def test_convert_refuses_its_own_source_and_a_finished_run(model_dir, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    code, output = run_in_process(["convert", "--to-hf", str(model_dir), "--out", str(model_dir), "--overwrite"],
                                  capsys)
    assert code == 2 and f"--out {model_dir}: is the folder being converted" in output
    other = tmp_path / "other"
    assert run_in_process(["convert", "--from-hf", str(model_dir), "--out", str(other)], capsys)[0] == 0
    code, output = run_in_process(["convert", "--from-hf", str(model_dir), "--out", str(other)], capsys)
    assert code == 2 and f"{other} already holds a run or model" in output and "--overwrite" in output
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


# ---------------------------------------------------------------------------------- SIGTERM, then resume
@pytest.fixture(scope="module")
def terminated(tmp_path_factory):
    """A pretraining run that a second process tried to join, then SIGTERM stopped: what each saw."""
    out = tmp_path_factory.mktemp("sigterm") / "run"
    command = [sys.executable, "-m", "minillm", "pretrain", "--out", str(out), "--max-steps", "100000", *SMALL]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    log = out / "log.jsonl"
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 3, "three logged steps", holder)
    second = subprocess.run([sys.executable, "-m", "minillm", "pretrain", "--out", str(out), *SMALL],
                            capture_output=True, text=True, env=ENV, timeout=TIMEOUT_S)
    holder.send_signal(signal.SIGTERM)
    try:
        output, _ = holder.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        holder.kill()
        pytest.fail("pretrain did not stop after SIGTERM")
    return {"out": out, "pid": holder.pid, "code": holder.returncode, "output": output, "second": second}


def test_a_second_real_process_on_the_same_run_is_refused_with_the_pid(terminated):
    second = terminated["second"]
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert f"is in use by another minillm process (pid {terminated['pid']}: minillm pretrain --out" in second.stderr


def test_sigterm_stops_after_the_step_saves_a_checkpoint_and_says_so(terminated):
    output = terminated["output"]
    assert terminated["code"] == 0 and "Traceback" not in output, output
    assert "SIGTERM: stopping after this step and saving a checkpoint" in output
    state = json.loads((terminated["out"] / "checkpoint" / "trainer_state.json").read_text())
    assert f"interrupted at step {state['step']};" in output
    logged = [json.loads(line)["step"] for line in (terminated["out"] / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, state["step"] + 1))  # every step up to the checkpoint, none after
    assert not (terminated["out"] / runlock.LOCK_NAME).exists()


def test_the_terminated_run_resumes_where_it_stopped(terminated):
    out = terminated["out"]
    step = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"]
    done = subprocess.run([sys.executable, "-m", "minillm", "pretrain", "--out", str(out), "--resume",
                           str(out / "checkpoint"), "--max-steps", str(step + 2), *SMALL],
                          capture_output=True, text=True, env=ENV, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert f"resuming from step {step} of {out / 'checkpoint'}" in done.stdout
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries if "loss" in e] == list(range(1, step + 3))
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == step + 2


# ---------------------------------------------------------------------------------- Ctrl-C in the quickstart
# Where the quickstart is interrupted: code run in the child before ``main``, which patches one
# stage so that the signal arrives inside it. The tokenizer's case sends it from the text iterator
# that the tokenizers library consumes, so it arrives inside the library's own loop.
STAGES = {
    "building the mixture": """
        import minillm.cli.quickstart as q
        real = q.build_mixture
        def build_mixture(*a, **k):
            os.kill(os.getpid(), signal.SIGINT)
            return real(*a, **k)
        q.build_mixture = build_mixture
    """,
    "training the tokenizer": """
        from minillm.data import Tokenizer
        real = Tokenizer.train.__func__
        def texts(items):
            for i, text in enumerate(items):
                if i == 10:
                    os.kill(os.getpid(), signal.SIGINT)
                yield text
        Tokenizer.train = classmethod(lambda cls, items, **k: real(cls, texts(items), **k))
    """,
    "training the model (SIGTERM)": """
        from minillm.optim import AdamW
        real = AdamW.step
        def step(self, *a, **k):
            os.kill(os.getpid(), signal.SIGTERM)
            return real(self, *a, **k)
        AdamW.step = step
    """,
    "scoring": """
        from minillm.training.trainer import Trainer
        real = Trainer.evaluate
        def evaluate(self, *a, **k):
            os.kill(os.getpid(), signal.SIGINT)
            return real(self, *a, **k)
        Trainer.evaluate = evaluate
    """,
}


@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_anywhere_in_the_quickstart_ends_with_one_line(stage, tmp_path):
    code = "import os, signal, sys\n" + textwrap.dedent(STAGES[stage]) + textwrap.dedent(f"""
        from minillm.cli.main import main
        sys.exit(main(["quickstart", "--out", {str(tmp_path / 'run')!r}]))
    """)
    done = python(code, env={**ENV, "MINILLM_SMOKE": "1"})
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "minillm quickstart: interrupted"
    assert not (tmp_path / "run" / "results.json").exists()  # it stopped: no scores were written


# ---------------------------------------------------------------------------------- FIFOs
FIFO_LOADERS = """
    import json, os, sys
    from tests.test_hostile_files import READERS
    from pathlib import Path
    folder = Path(sys.argv[1])
    for name, load in READERS.items():
        (folder / name).mkdir()
        path = folder / name / name
        os.mkfifo(path)
        try:
            load(path)
            print(json.dumps([name, "loaded"]), flush=True)
        except (ValueError, FileNotFoundError) as err:
            print(json.dumps([name, str(err)]), flush=True)
"""


def test_no_loader_blocks_on_a_fifo(tmp_path):
    from tests.test_hostile_files import READERS

    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(FIFO_LOADERS), str(tmp_path)], env=ENV,
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as stopped:
        pytest.fail(f"a loader blocked on a FIFO; it got as far as: {stopped.stdout!r}")
    assert done.returncode == 0, done.stderr
    results = dict(json.loads(line) for line in done.stdout.splitlines())
    assert list(results) == list(READERS)
    for name, message in results.items():
        assert message.startswith(str(tmp_path / name / name)), (name, message)
        assert "is a FIFO (named pipe), not a regular file" in message, (name, message)


def test_finetune_on_a_fifo_exits_2_at_once(tmp_path):
    os.mkfifo(tmp_path / "data.jsonl")
    try:
        done = subprocess.run([sys.executable, "-m", "minillm", "finetune", "--data", str(tmp_path / "data.jsonl"),
                               "--out", str(tmp_path / "out")], env={**ENV, "MINILLM_SMOKE": "1"},
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("finetune blocked on a FIFO given as --data")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{tmp_path / 'data.jsonl'}: is a FIFO (named pipe), not a regular file" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["data.jsonl"]  # --out was not even created
