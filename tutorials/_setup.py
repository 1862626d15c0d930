"""The setup every tutorial starts with: smoke mode, the output folder, figures and tables.

Each tutorial writes its tables to the terminal and its figures (PNG) and ``summary.json`` to
``tutorials/out/<tutorial>/``, or to ``$MINILLM_TUTORIAL_OUT/<tutorial>/`` when that is set.
``MINILLM_SMOKE=1`` asks for the seconds-long version (tiny sizes; numbers are not meaningful).
Tutorials run on one CPU thread unless ``MINILLM_THREADS`` says otherwise.

This file is shared by the tutorials; it is not part of the library.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import minillm  # the tutorials put this checkout first on sys.path before importing this file

SMOKE = os.environ.get("MINILLM_SMOKE", "").strip() not in ("", "0", "false", "False")

# Toy matrices are small: one thread is fastest, and on a busy machine extra BLAS threads only
# spin. MINILLM_THREADS=n gives the tutorial n threads instead (see minillm/fast/threads.py).
minillm.set_num_threads(int(os.environ.get("MINILLM_THREADS", "1")))

try:
    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")  # write PNG files; no window needed
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed, so this run saves no figures (pip install matplotlib).")


def tutorial_output(tutorial: str):
    """Create the tutorial's output folder; return (folder, list of saved figures, save_figure)."""
    out = Path(os.environ.get("MINILLM_TUTORIAL_OUT") or Path(__file__).resolve().parent / "out") / tutorial
    out.mkdir(parents=True, exist_ok=True)
    figures = []

    def save_figure(fig, name):
        """Save a figure as OUT/name (PNG) and remember it for the summary."""
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.show() if "ipykernel" in sys.modules else plt.close(fig)  # inline in a notebook
        figures.append(name)
        print(f"saved figure {out / name}")

    return out, figures, save_figure


def print_table(headers, rows):
    """Print rows as a Markdown table (numbers in short scientific notation)."""
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")
