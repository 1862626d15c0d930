"""Ctrl-C or SIGTERM during training: finish the step, save a checkpoint, then stop.

A KeyboardInterrupt can arrive anywhere, for instance between two parameters' updates, which
would leave a model that is half of step k and half of step k+1. ``DeferSigint`` turns the first
Ctrl-C into a request that the loop honours at the next step boundary, where the state is
consistent and can be saved; a second Ctrl-C interrupts at once.

SIGTERM is what a scheduler (Slurm, Kubernetes, ``timeout``) sends before it kills a job, and
its default action ends Python without a word, a checkpoint or a ``finally``. It is handled
exactly as Ctrl-C is: the first one stops the run after the step, with a checkpoint saved.

Work done inside a compiled library cannot be stopped midway, and may not even see Ctrl-C:
``tokenizers``' trainer iterates a Python list without running Python code, and a Ctrl-C there
was lost (training went on to the end). ``interrupt_after`` holds Ctrl-C during such a call and
raises KeyboardInterrupt as soon as it returns.
"""
from __future__ import annotations

import contextlib
import signal

from tqdm.auto import tqdm

SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class DeferSigint:
    """While active, the first Ctrl-C (or SIGTERM) only sets ``requested``; the loop stops at the
    next step boundary, where the state is consistent and can be saved. A second one interrupts
    at once. ``received`` names the signal ("Ctrl-C" or "SIGTERM").

    Signal handlers can only be installed from the main thread; elsewhere this does nothing and
    Ctrl-C raises KeyboardInterrupt as usual.
    """

    def __init__(self):
        self.requested, self.forced, self.received = False, False, None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.requested:  # the second signal: the user (or the scheduler) wants out now
            self.forced = True
            raise KeyboardInterrupt
        self.requested, self.received = True, SIGNALS[signum]
        tqdm.write(f"{self.received}: stopping after this step and saving a checkpoint "
                   "(send it again to quit now)")

    def __enter__(self):
        try:
            self._previous = {signum: signal.signal(signum, self._handler) for signum in SIGNALS}
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False


@contextlib.contextmanager
def interrupt_after(what: str):
    """Inside the block, Ctrl-C is remembered (and acknowledged) instead of raised; KeyboardInterrupt
    is raised when the block ends. For a call into a library that cannot be stopped midway.

    Outside the main thread this does nothing (signal handlers belong to the main thread).
    """
    received = []

    def remember(signum, frame):
        received.append(signum)
        tqdm.write(f"Ctrl-C: stopping once {what} returns (it cannot be stopped midway)")

    try:
        previous = signal.signal(signal.SIGINT, remember)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
