"""Ctrl-C during training: finish the step, save a checkpoint, then stop.

A KeyboardInterrupt can arrive anywhere, for instance between two parameters' updates, which
would leave a model that is half of step k and half of step k+1. ``DeferSigint`` turns the first
Ctrl-C into a request that the loop honours at the next step boundary, where the state is
consistent and can be saved; a second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import signal

from tqdm.auto import tqdm


class DeferSigint:
    """While active, the first Ctrl-C only sets ``requested``; the loop stops at the next step
    boundary, where the state is consistent and can be saved. A second Ctrl-C interrupts at once.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing and
    Ctrl-C raises KeyboardInterrupt as usual.
    """

    def __init__(self):
        self.requested, self.forced, self._previous = False, False, None

    def _handler(self, signum, frame):
        if self.requested:  # the second press: the user wants out now
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this step and saving a checkpoint (press again to quit now)")

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
