"""Progress of a long evaluation, on a terminal and in a log file alike.

Generating answers for a few hundred prompts takes minutes, and a command that prints nothing for a
minute looks hung. The loops of an evaluation (``mean_loss``'s batches, ``generate_texts``'s
batches) go through ``track``; it does nothing unless a command turned reporting on with
``reporting(...)``, so library calls, tests and tutorials stay quiet. When it is on:

* on a terminal (stderr is a TTY), a tqdm bar that redraws itself;
* otherwise (a pipe, a log file, a scheduler's output), one plain line when a loop starts, then at
  most one every ``every_seconds``, and one when it ends: what tqdm's carriage returns would smear
  into a single unreadable line.
"""
from __future__ import annotations

import contextlib
import sys
import time

from tqdm import tqdm

_settings: dict | None = None  # {"name": command name, "every": seconds between lines}; None: quiet


@contextlib.contextmanager
def reporting(name: str, every_seconds: float = 10.0):
    """Within this block, ``track`` shows progress under ``name`` (e.g. "minillm evaluate")."""
    global _settings
    previous, _settings = _settings, {"name": name, "every": every_seconds}
    try:
        yield
    finally:
        _settings = previous


def track(iterable, total: int, what: str):
    """Yield from ``iterable`` (``total`` items), showing progress when ``reporting`` is on."""
    settings = _settings
    if settings is None:
        yield from iterable
        return
    if sys.stderr.isatty():
        yield from tqdm(iterable, total=total, desc=what, leave=False, file=sys.stderr)
        return
    start = last = time.perf_counter()
    print(f"{settings['name']}: {what}: 0/{total}", file=sys.stderr, flush=True)
    done = 0
    for done, item in enumerate(iterable, start=1):
        yield item
        now = time.perf_counter()
        if now - last >= settings["every"] and done < total:
            print(f"{settings['name']}: {what}: {done}/{total} ({now - start:.0f} s)", file=sys.stderr, flush=True)
            last = now
    print(f"{settings['name']}: {what}: {done}/{total} done ({time.perf_counter() - start:.0f} s)",
          file=sys.stderr, flush=True)
