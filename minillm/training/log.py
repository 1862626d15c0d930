"""The training log: one JSON object per line, and a loss-curve PNG drawn from it.

JSON Lines is the simplest log that survives a crash: every line is complete on its own, so a
run killed halfway still leaves a readable log, and ``pandas.read_json(path, lines=True)`` or a
three-line loop reads it back. Typical lines:

    {"step": 10, "epoch": 0, "loss": 3.41, "lr": 0.001, "grad_norm": 1.7, "tokens_per_sec": 5120.0}
    {"step": 50, "eval_loss": 2.10, "translation/bleu": 31.2, "score": 0.54}
    {"step": 61, "error": "training stopped at step 61: the loss is nan. ..."}

The plot needs matplotlib, which is optional: it is imported only when a plot is drawn, and
through the Agg canvas directly (no pyplot, no window, no global backend switch), so plotting
works on a server and never disturbs a notebook's own matplotlib settings.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
from tqdm.auto import tqdm

from ..data.collate import IGNORE_INDEX
from ..files import append_line, atomic_write_text, input_lines, make_folder, parse_json


class TrainingLog:
    """Append-only JSONL log of a run, kept in memory too for plotting.

    Args:
        path: the ``log.jsonl`` file.
        plot_path: where ``plot()`` writes the PNG.
    """

    def __init__(self, path: str, plot_path: str):
        self.path, self.plot_path = path, plot_path
        self.entries: list[dict] = []

    def start(self, keep_until_step: int = 0) -> None:
        """Begin a run: keep earlier entries up to ``keep_until_step`` (a resume), drop the rest.

        A run resumed from step k repeats steps k+1, k+2, ... exactly; entries the interrupted
        run wrote after k would be duplicates, so they are removed. The kept entries are written
        back atomically (``files.atomic_write_text``), which also replaces a ``log.jsonl`` that
        is a symlink instead of writing through it.
        """
        self.entries = (read_log(self.path, keep_until_step) if keep_until_step > 0 and os.path.lexists(self.path)
                        else [])
        make_folder(os.path.dirname(os.path.abspath(self.path)))
        atomic_write_text(self.path, "".join(json.dumps(entry) + "\n" for entry in self.entries))

    def write(self, entry: dict) -> None:
        """Append one entry (nan/inf become strings, as JSON has neither), never through a symlink."""
        entry = {k: _jsonable(v) for k, v in entry.items()}
        self.entries.append(entry)
        append_line(self.path, json.dumps(entry))

    def plot(self) -> str | None:
        """Draw train and eval loss against the step into ``plot_path``; None without matplotlib."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
            from matplotlib.figure import Figure  # noqa: PLC0415
        except ImportError:
            return None
        train = [(e["step"], e["loss"]) for e in self.entries if isinstance(e.get("loss"), float)]
        evals = [(e["step"], e["eval_loss"]) for e in self.entries if isinstance(e.get("eval_loss"), float)]
        if not train and not evals:
            return None
        figure = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig renders with
        axes = figure.add_subplot(1, 1, 1)
        if train:
            axes.plot(*zip(*train), label="train loss")
        if evals:
            axes.plot(*zip(*evals), "o-", label="eval loss")
        axes.set_xlabel("step")
        axes.set_ylabel("cross-entropy per token")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(self.plot_path)
        return self.plot_path


def read_log(path: str, keep_until_step: int, report: bool = True) -> list[dict]:
    """The entries of ``path`` up to ``keep_until_step``; a last line cut off by a crash is dropped
    (and reported, with ``report``).

    Raises:
        ValueError: naming the file and line, for any other line that is not a JSON object.
    """
    kept, torn = [], None
    for number, raw in input_lines(path, "training log"):
        if torn is not None:  # a bad line with more after it: not a crash's cut-off line
            raise ValueError(f"{path}, line {torn}: not a JSON object; the log is damaged")
        if not raw.strip():
            continue
        try:
            entry = parse_json(raw.decode("utf-8"), path, "training log", line_offset=number - 1)
        except (json.JSONDecodeError, UnicodeDecodeError):
            torn = number
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object; the log is damaged")
        if entry.get("step", 0) <= keep_until_step and "error" not in entry:
            kept.append(entry)
    if torn is not None and report:
        tqdm.write(f"{path}: dropped line {torn}, the last line, which was cut off (the run was interrupted "
                   "while writing it)")
    return kept


def _jsonable(value):
    """NumPy scalars as Python numbers; nan/inf as the strings "nan"/"inf" (JSON has neither)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    return value


class StepMeter:
    """Losses of a run's steps, and tokens per second of training time (evaluation excluded)."""

    def __init__(self):
        self.losses, self.tokens, self.seconds = [], 0, 0.0

    def add(self, loss: float, batches: list[dict], seconds: float) -> float:
        """Record one step; returns the tokens per second so far."""
        self.losses.append(loss)
        for batch in batches:  # source tokens read + target tokens predicted
            targets = np.asarray(batch["labels"]) != IGNORE_INDEX
            self.tokens += int(np.sum(batch["attention_mask"])) + int(np.sum(targets))
        self.seconds += seconds
        return self.tokens / max(self.seconds, 1e-9)

    def mean_loss(self) -> float:
        """The mean training loss of the recorded steps (nan when none)."""
        return float(np.mean(self.losses)) if self.losses else math.nan
