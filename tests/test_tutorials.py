"""Every tutorial runs in smoke mode, and the claims its prose makes hold in the numbers it computed.

Each tutorial ends by printing ``SUMMARY {json}`` and writing the same dict to
``$MINILLM_TUTORIAL_OUT/<tutorial>/summary.json``, with the names of the figures it saved under
``"figures"``. The tests run the script as a learner would (a subprocess, ``MINILLM_SMOKE=1``),
then hand that summary to the tutorial's own check.

Adding a tutorial is one entry in ``TUTORIALS``: the script's file name and a function
``check(summary, out_dir)`` that asserts its key claims.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL_DIR = REPO / "tutorials"
SMOKE_BUDGET_S = 30     # what MINILLM_SMOKE=1 promises on 2 CPU cores
SMOKE_TIMEOUT_S = 180   # the hard limit here: CI machines are shared, so leave room
MAX_LINES = 420         # "keep each tutorial under ~400 lines"


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _expect_figures(summary: dict, out_dir: Path, *names: str) -> None:
    """The named PNG files were saved (when matplotlib is there to draw them)."""
    if not _matplotlib_available():
        return
    for name in names:
        assert name in summary["figures"], f"{name} not among the saved figures {summary['figures']}"
        assert (out_dir / name).stat().st_size > 1000, f"{name} is empty"


# ---- the claims of each tutorial ----------------------------------------------------------------

def check_autograd(summary: dict, out_dir: Path) -> None:
    """01: backward agrees with central differences and with the chain rule by hand; sum_to works."""
    assert summary["gradcheck_max_rel_err"] < 1e-6
    assert summary["hand_vs_autograd_max_abs_diff"] < 1e-5  # float32 forward vs a float64 hand formula
    assert 1e-9 <= summary["best_step_size"] <= 1e-3        # neither truncation nor rounding dominates
    assert summary["broadcast_grads_ok"] and summary["sum_to_matches_numpy"]
    assert summary["grad_accumulates"]
    _expect_figures(summary, out_dir, "gradcheck_step_size.png")


def check_attention(summary: dict, out_dir: Path) -> None:
    """02: hand attention = library attention; masks hide what they should; rows are distributions."""
    assert summary["by_hand_vs_library_max_abs_diff"] < 1e-5
    assert summary["masked_vs_library_max_abs_diff"] < 1e-5
    assert summary["causal_mask_lower_triangular"]
    assert summary["causal_prob_above_diagonal_max"] == 0.0
    assert summary["padding_prob_max"] == 0.0
    assert summary["masked_rows_sum_max_dev"] < 1e-5
    assert summary["exact_bucket_distances"] == 8              # 32 buckets: 16 per direction, half exact
    assert summary["mha_vs_numpy_max_abs_diff"] < 1e-5
    assert summary["attention_rows_sum_max_dev"] < 1e-5
    assert summary["recompute_vs_layer_max_abs_diff"] < 1e-5   # the heat-map shows the model's real P
    assert summary["loss_last"] < summary["loss_first"]
    assert 0.0 <= summary["best_mirror_attention"] <= 1.0
    _expect_figures(summary, out_dir, "relative_position_buckets.png", "attention_heatmap.png", "loss_curve.png")


def check_gpu_kernels(summary: dict, out_dir: Path) -> None:
    """10: the CUDA sources, run on the CPU emulator, match NumPy; no GPU means no timings."""
    assert summary["tiled_numpy_max_abs_err"] < 1e-10
    assert summary["online_softmax_max_abs_err"] < 1e-10
    assert summary["tile16_read_reduction"] > 8
    from tests.kernels.emulator import compiler_available  # noqa: PLC0415

    if compiler_available():
        assert summary["emulated"]
        assert summary["matmul_emulated_match"] and summary["matmul_cases"] >= 3
        assert summary["attention_emulated_match"]
        assert summary["p_from_lse_max_abs_err"] < 1e-5
        _expect_figures(summary, out_dir, "attention_probabilities.png")
    else:
        assert not summary["emulated"]
    if not summary["gpu"]:
        assert summary["gpu_timings_ms"] == {}


class Tutorial(NamedTuple):
    script: str
    check: Callable[[dict, Path], None]


TUTORIALS = [
    Tutorial("01_autograd.py", check_autograd),
    Tutorial("02_attention_and_transformer.py", check_attention),
    Tutorial("10_gpu_kernels.py", check_gpu_kernels),
]


# ---- running one ----------------------------------------------------------------------------------

def run_tutorial(script: str, out_root: Path, extra_env: dict | None = None) -> tuple[dict, Path, float, str]:
    """Run tutorials/<script> in smoke mode; returns (summary, its output folder, seconds, stdout)."""
    env = {**os.environ, "MINILLM_SMOKE": "1", "MINILLM_TUTORIAL_OUT": str(out_root), "MPLBACKEND": "Agg",
           **(extra_env or {})}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(TUTORIAL_DIR / script)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, f"{script} printed {len(lines)} SUMMARY lines"
    out_dir = out_root / Path(script).stem
    summary = json.loads(lines[0][len("SUMMARY "):])
    assert json.loads((out_dir / "summary.json").read_text()) == summary, "summary.json differs from SUMMARY"
    return summary, out_dir, seconds, result.stdout


@pytest.fixture
def emulator_cache_env(request) -> dict:
    """Share the kernel tests' emulator build cache, so tutorial 10 does not recompile each run."""
    cache = getattr(request.config, "cache", None)
    return {"MINILLM_EMU_CACHE": str(cache.mkdir("minillm-emu"))} if cache is not None else {}


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[t.script for t in TUTORIALS])
def test_tutorial_runs_in_smoke_mode_and_its_claims_hold(tutorial, tmp_path, emulator_cache_env):
    summary, out_dir, seconds, _ = run_tutorial(tutorial.script, tmp_path, emulator_cache_env)
    for name in summary.get("figures", []):
        assert (out_dir / name).is_file(), f"{name} is listed but was not saved in {out_dir}"
    tutorial.check(summary, out_dir)
    if seconds > SMOKE_BUDGET_S:  # a shared machine can be slow; say so without failing
        print(f"note: {tutorial.script} took {seconds:.0f} s in smoke mode (budget {SMOKE_BUDGET_S} s)")


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[t.script for t in TUTORIALS])
def test_tutorial_is_a_percent_notebook_that_states_its_goals(tutorial):
    text = (TUTORIAL_DIR / tutorial.script).read_text(encoding="utf-8")
    assert "# %% [markdown]" in text and "\n# %%" in text, "not in jupytext percent format"
    first_cell = text.split("# %% [markdown]", 1)[1].split("\n# %%", 1)[0]
    assert "Learning goals" in first_cell, "the first markdown cell must state the learning goals"
    assert len(text.splitlines()) <= MAX_LINES
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}


def test_readme_lists_every_tutorial_with_how_to_run_it():
    readme = (TUTORIAL_DIR / "README.md").read_text(encoding="utf-8")
    for tutorial in TUTORIALS:
        assert tutorial.script in readme
    for phrase in ("MINILLM_SMOKE=1", "MINILLM_TUTORIAL_OUT", "jupytext --to notebook"):
        assert phrase in readme
