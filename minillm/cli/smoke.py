"""``MINILLM_SMOKE=1``: every command shrinks its model, data and steps to run in seconds.

The numbers a smoke run prints are meaningless; what it shows is that every step of the command
runs, which is what tests and tutorials need.
"""
from __future__ import annotations

import os

__all__ = ["SMOKE", "apply_smoke", "smoke_mode"]

# What MINILLM_SMOKE=1 forces, so that every command finishes in seconds.
SMOKE = dict(max_steps=3, batch_size=4, gradient_accumulation_steps=1, eval_every=2, save_every=2, log_every=1,
             eval_num_examples=4, eval_max_new_tokens=4, eval_batch_size=4, d_model=16, d_ff=32, num_layers=1,
             num_heads=2, vocab_size=300, examples_per_task=8, num_documents=60, max_new_tokens=4,
             num_examples=4)


def smoke_mode() -> bool:
    """True when the environment asks for the seconds-long smoke version (``MINILLM_SMOKE=1``)."""
    return os.environ.get("MINILLM_SMOKE", "").strip() not in ("", "0", "false", "False")


def apply_smoke(args) -> None:
    """Under MINILLM_SMOKE=1, shrink every size option the command has (see SMOKE)."""
    if not smoke_mode():
        return
    for name, value in SMOKE.items():
        if hasattr(args, name):
            current = getattr(args, name)
            setattr(args, name, min(current, value) if isinstance(current, int) and current > 0 else value)
