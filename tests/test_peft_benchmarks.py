"""benchmarks/peft_compare.py and benchmarks/forgetting.py: they run (smoke sizes), write what they
promise, give the same table twice, and their verdict sentences follow from the numbers."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(method, mean, sd, seeds=3, pct=5.0):
    keys = {k: mean for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    return {"method": method, "seeds": seeds, "trainable_pct": pct, **keys,
            **{k + "_sd": sd for k in keys}}


def test_verdict_states_the_gap_and_its_tolerance():
    pc = load("peft_compare")
    table = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 60.0, 3.0, pct=100.0),
             row("LoRA q,v", 50.0, 4.0), row("adapters", 55.0, 1.0, pct=3.0)]
    # standard error of a difference of two means over 3 seeds: sqrt(3^2/3 + 4^2/3) = 5/sqrt(3)
    tol = 2 * 5 / math.sqrt(3)
    sentences = pc.verdict(table, {}, 228864)
    assert "is +10.0 ROUGE-L points from full fine-tuning" in sentences[0]
    assert f"= {tol:.1f} points" in sentences[0] and "apart: full fine-tuning is better" in sentences[0]
    assert "The best parameter-efficient method was adapters" in sentences[2]
    close = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 60.0, 3.0), row("LoRA q,v", 57.0, 4.0)]
    assert "indistinguishable" in pc.verdict(close, {}, 1)[0]  # 3.0 < 5.8


def test_sweep_sentence_says_whether_the_gap_shrinks():
    pc = load("peft_compare")
    table = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 60.0, 1.0), row("LoRA q,v", 59.0, 1.0)]
    small = {"params": 1000, "gap": 20.0, "gap_se": 1.0}
    big = {"params": 9000, "gap": 2.0, "gap_se": 1.0}
    assert "it shrinks" in pc.verdict(table, {"a": small, "b": big}, 1)[-1]
    assert "does not change beyond its noise" in pc.verdict(table, {"a": small, "b": {**big, "gap": 19.0}}, 1)[-1]


def test_peft_compare_runs_writes_json_and_png_and_repeats_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    pc = load("peft_compare")
    first = pc.main(["--no-sweep", "--out", str(tmp_path / "a")])
    second = pc.main(["--no-sweep", "--out", str(tmp_path / "b")])
    saved = json.loads((tmp_path / "a" / "peft_compare.json").read_text())
    assert [t["method"] for t in saved["table"]] == ["base (no tuning)"] + list(pc.LR_GRID)
    without_time = lambda r: [{k: v for k, v in t.items() if k != "step_ms"} for t in r["table"]]  # noqa: E731
    assert without_time(first) == without_time(second) and first["verdict"] == second["verdict"]
    for t in saved["table"][1:]:  # PEFT's trainable%, from the counts in the same row
        assert t["trainable_pct"] == pytest.approx(100 * t["trainable"] / t["all_params"])
        assert t["checkpoint_bytes"] > 4 * t["trainable"]  # safetensors: 4 bytes a number plus a header
    pytest.importorskip("matplotlib")
    assert (tmp_path / "a" / "peft_compare.png").stat().st_size > 1000


def test_forgetting_verdict_counts_only_known_tasks():
    fg = load("forgetting")
    stats = {"full fine-tuning on D": {"gain": (20.0, 2.0), "bwt": (-10.0, 1.0), "seeds": 4,
                                       "change": {"translation": (-10.0, 1.0), "sentiment": (-1.0, 1.0)}},
             "multitask (D + A, B, C)": {"gain": (10.0, 2.0), "bwt": (-2.5, 1.0), "seeds": 4,
                                         "change": {"translation": (-2.5, 1.0), "sentiment": (0.0, 1.0)}}}
    lines = fg.verdict(stats, ["translation"], {"translation": 1.0, "sentiment": 1.0})
    assert "kept none, lost ground on translation" in lines[0]
    assert "75% of full fine-tuning's forgetting avoided" in lines[1]  # 1 - 2.5 / 10
    assert "lost ground on translation" in lines[1]  # -2.5 < -2 * sqrt(1 + (1/2)^2) = -2.24
    assert "full fine-tuning on D, multitask (D + A, B, C)" in lines[-1]
    assert fg.verdict(stats, [], {})[0].startswith("The base beat the constant answer on no old task")
