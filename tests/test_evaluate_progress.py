"""``minillm evaluate`` like ``finetune``: progress on stderr whether or not it is a terminal, length
limits for --data with the truncation report, and --batch-size."""
import io
import json

import pytest

from minillm.cli.evaluate import main
from minillm.data import Tokenizer
from minillm.evaluation import progress
from minillm.models import T5Config, T5ForConditionalGeneration


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    tokenizer = Tokenizer.train([" ".join(words)] * 8, vocab_size=80, num_sentinels=2)
    T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16,
                                        num_layers=1, num_heads=2, dropout_rate=0.0)).save_pretrained(root / "run")
    tokenizer.save(str(root / "run"))
    long_prompt = " ".join(words * 10)  # 100 words: far more than 20 tokens
    records = [{"prompt": long_prompt, "completion": "alpha beta"}] + [
        {"prompt": "alpha beta", "completion": "gamma"} for _ in range(6)]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_data_prompts_cut_by_max_source_length_are_reported(run, capsys):
    assert main(["--model", str(run / "run"), "--data", str(run / "data.jsonl"), "--max-source-length", "20",
                 "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "7 examples: 1 prompts and 0 completions truncated" in out
    assert main(["--model", str(run / "run"), "--data", str(run / "data.jsonl"), "--max-source-length", "1000",
                 "--max-target-length", "1", "--max-new-tokens", "2"]) == 0
    assert "7 examples: 0 prompts and 7 completions truncated" in capsys.readouterr().out  # + </s>: 2 tokens or more


def test_progress_lines_when_stderr_is_not_a_terminal(run, capsys):
    assert main(["--model", str(run / "run"), "--data", str(run / "data.jsonl"), "--batch-size", "3",
                 "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    # 7 records in batches of 3: 3 batches for the loss, 3 for generation; a start and an end line each
    assert "minillm evaluate: eval loss, batches: 0/3" in err and "eval loss, batches: 3/3 done" in err
    assert "minillm evaluate: generating, batches: 0/3" in err and "generating, batches: 3/3 done" in err


def test_track_is_silent_outside_reporting_and_draws_a_bar_on_a_terminal(monkeypatch, capsys):
    assert list(progress.track(range(3), 3, "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress.reporting("minillm evaluate"):
        assert list(progress.track(range(3), 3, "work")) == [0, 1, 2]
    drawn = terminal.getvalue()
    assert "\rwork:   0%|" in drawn and "minillm evaluate: work" not in drawn  # tqdm's bar, not plain lines


def test_a_line_every_few_seconds_on_long_loops(monkeypatch, capsys):
    clock = iter(range(0, 1000, 4))  # each call: 4 s later
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with progress.reporting("cmd", every_seconds=10):
        list(progress.track(range(10), 10, "w"))
    lines = capsys.readouterr().err.splitlines()
    # start at t=0, then item i ends at t=4(i+1): lines at 12 s (3 done), 24 s (6), 36 s (9), end (10)
    assert lines == ["cmd: w: 0/10", "cmd: w: 3/10 (12 s)", "cmd: w: 6/10 (24 s)", "cmd: w: 9/10 (36 s)",
                     "cmd: w: 10/10 done (44 s)"]
