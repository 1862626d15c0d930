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
             row("LoRA q,v", 50.0, 4.0, pct=1.3), row("adapters", 55.0, 1.0, pct=3.0)]
    # standard error of a difference of two means over 3 seeds: sqrt(3^2/3 + 4^2/3) = 5/sqrt(3)
    tol = 2 * 5 / math.sqrt(3)
    sentences = pc.verdict(table, 228864)
    assert "is +10.0 ROUGE-L points from full fine-tuning" in sentences[0]
    assert f"= {tol:.1f} points" in sentences[0] and "apart: full fine-tuning is better" in sentences[0]
    assert "LoRA q,v reached 67% ± " in sentences[1] and "is missed" in sentences[1]  # (50-30)/(60-30)
    assert sentences[-1].startswith("The best parameter-efficient method was adapters")
    close = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 60.0, 3.0), row("LoRA q,v", 57.0, 4.0, pct=1.3)]
    assert "indistinguishable" in pc.verdict(close, 1)[0]  # 3.0 < 5.8
    assert "LoRA q,v reached 90% ± " in pc.verdict(close, 1)[1] and "is met" in pc.verdict(close, 1)[1]
    assert "is missed" in pc.verdict([*close[:2], row("LoRA q,v", 57.0, 4.0, pct=2.5)], 1)[1]  # over the 2% budget


def test_gain_share_and_its_standard_error_by_hand():
    pc = load("peft_compare")
    table = [row("base (no tuning)", 20.0, 0.0), row("full fine-tuning", 60.0, 2.0, seeds=4),
             row("LoRA q,v", 50.0, 4.0, seeds=4)]
    share, se = pc.gain_share(table, "LoRA q,v")
    # a = 30 (se 4/2 = 2), b = 40 (se 2/2 = 1): share 0.75, se 0.75 * sqrt((2/30)^2 + (1/40)^2)
    assert share == pytest.approx(75.0)
    assert se == pytest.approx(75.0 * math.sqrt((2 / 30) ** 2 + (1 / 40) ** 2))


def test_a_lagging_prompt_tuning_is_named_with_the_reason():
    pc = load("peft_compare")
    table = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 60.0, 1.0), row("LoRA q,v", 58.0, 1.0),
             row("prompt tuning", 33.0, 1.0, pct=0.07), row("adapters", 57.0, 1.0)]
    lines = pc.verdict(table, 1)
    prompt = next(line for line in lines if line.startswith("prompt tuning"))
    assert "10% ± " in prompt and "clearly short of the target" in prompt and "Lester et al. 2021" in prompt
    adapters = next(line for line in lines if line.startswith("adapters"))
    assert "90% ± " in adapters and "short" not in adapters
    no_gain = [row("base (no tuning)", 30.0, 0.0), row("full fine-tuning", 29.0, 1.0), row("LoRA q,v", 31.0, 1.0)]
    assert "did not raise ROUGE-L above the base" in pc.verdict(no_gain, 1)[1]


def test_peft_compare_runs_writes_json_and_png_and_repeats_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "cache"))  # the smoke stand-in base, built once
    pc = load("peft_compare")
    first = pc.main(["--out", str(tmp_path / "a")])
    second = pc.main(["--out", str(tmp_path / "b")])
    saved = json.loads((tmp_path / "a" / "peft_compare.json").read_text())
    assert Path(saved["base"]).parent == tmp_path / "cache"  # it started from the course base
    assert [t["method"] for t in saved["table"]] == ["base (no tuning)"] + list(pc.LR_GRID)
    without_time = lambda r: [{k: v for k, v in t.items() if k != "step_ms"} for t in r["table"]]  # noqa: E731
    assert without_time(first) == without_time(second) and first["verdict"] == second["verdict"]
    for t in saved["table"][1:]:  # PEFT's trainable%, from the counts in the same row
        assert t["trainable_pct"] == pytest.approx(100 * t["trainable"] / t["all_params"])
        assert t["checkpoint_bytes"] > 4 * t["trainable"]  # safetensors: 4 bytes a number plus a header
    pytest.importorskip("matplotlib")
    assert (tmp_path / "a" / "peft_compare.png").stat().st_size > 1000


def test_forgetting_verdict_counts_only_known_tasks_against_the_targets():
    fg = load("forgetting")
    full, multi = fg.FULL, fg.MULTI
    stats = {full: {"gain": (20.0, 2.0), "bwt": (-10.0, 1.0), "seeds": 4,
                    "change": {"translation": (-10.0, 1.0), "sentiment": (-1.0, 1.0), "news_summary": (-8.0, 2.0)}},
             multi: {"gain": (10.0, 2.0), "bwt": (-2.5, 1.0), "seeds": 4,
                     "change": {"translation": (-2.5, 1.0), "sentiment": (0.0, 1.0), "news_summary": (1.0, 2.0)}}}
    err = {"translation": 1.0, "sentiment": 1.0, "news_summary": 1.0}
    lines = fg.verdict(stats, ["translation", "news_summary"], err)
    # lost: change below -2 * sqrt(1 + (sd/2)^2): translation -10 < -2.24, news_summary -8 < -2.83
    assert lines[0].startswith("Single-task full fine-tuning on D lowered 2 of 2 known held-in tasks")
    assert "(translation, news_summary)" in lines[0] and "is missed" in lines[0]  # 2 < 3
    assert "kept none, lost ground on translation, news_summary" in lines[1]
    # multitask on those two: drops 2.5 and 0 (a rise counts as 0), mean 1.25, against (10 + 8) / 2 = 9
    assert "fell 1.2 points on average against 9.0: 86% of the drop removed (target >= 70%: met)" in lines[2]
    assert "lost ground on translation" in lines[2]  # -2.5 < -2.24
    assert "full fine-tuning on D, multitask (D + held-in)" in lines[-1]
    assert fg.verdict(stats, [], {})[0].startswith("The base beat the constant answer on no old task")
    stats[full]["change"]["sentiment"] = (-5.0, 1.0)  # now three tasks fall by more than 2.24
    assert "lowered 3 of 3 known held-in tasks" in fg.verdict(stats, ["translation", "sentiment", "news_summary"], err)[0]
    assert "is met" in fg.verdict(stats, ["translation", "sentiment", "news_summary"], err)[0]


def test_replay_takes_an_equal_share_of_every_held_in_task():
    fg = load("forgetting")
    old = {"a": [("a", str(i)) for i in range(10)], "b": [("b", str(i)) for i in range(10)],
           "c": [("c", str(i)) for i in range(10)]}
    mixed = fg.replay(old, 9)
    assert [task for task, _ in mixed] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_forgetting_runs_on_the_course_base_in_smoke_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "cache"))
    fg = load("forgetting")
    monkeypatch.setattr(fg, "SMOKE", True)
    assert fg.main(["--seeds", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"base: {tmp_path / 'cache'}" in printed  # the course base's cache folder
    assert "multitask (D + held-in)" in printed and "total time" in printed


def test_lora_rank_is_the_largest_within_the_trainable_budget():
    pc = load("peft_compare")
    from minillm.models import T5Config  # noqa: PLC0415

    config = T5Config(vocab_size=200, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4, dropout_rate=0.0)
    # q and v of the encoder's self-attention and the decoder's self- and cross-attention: 6 matrices of
    # 16 x 16, so one rank trains 6 * (16 + 16) = 192 numbers
    n = sum(p.size for p in pc.T5ForConditionalGeneration(config).parameters())
    pct = lambda r: 100 * r * 192 / (n + r * 192)  # noqa: E731  (PEFT's trainable %)
    for budget in (5.0, 10.0, 20.0):
        r = pc.lora_qv_rank(config, budget_pct=budget, r_max=64)
        assert pct(r) <= budget < pct(r + 1), budget
    assert pc.lora_qv_rank(config, budget_pct=50.0) == 8  # capped at r_max
    assert pct(1) > 1.0 and pc.lora_qv_rank(config, budget_pct=1.0) == 1  # never below rank 1


def test_qv_energy_share_by_hand():
    pc = load("peft_compare")
    import numpy as np  # noqa: PLC0415

    zero = np.zeros((2, 2))
    base = {"enc.q.weight": zero, "enc.v.weight": zero, "enc.o.weight": zero}
    # q moves by diag(3, 4): sigma^2 = 16, 9, so its top direction holds 16/25; v moves by rank 1: all of it;
    # o is no q or v matrix and is left out however it moved
    tuned = {"enc.q.weight": np.diag([3.0, 4.0]), "enc.v.weight": np.array([[1.0, 2.0], [2.0, 4.0]]),
             "enc.o.weight": np.eye(2)}
    assert pc.qv_energy_share(tuned, base, 1) == pytest.approx(100 * (16 / 25 + 1.0) / 2)
    assert pc.qv_energy_share(tuned, base, 2) == pytest.approx(100.0)
    assert math.isnan(pc.qv_energy_share(base, base, 1))  # nothing moved: no share to state


def test_a_missed_target_is_explained_by_the_measured_energy_and_losses():
    pc = load("peft_compare")
    full = {**row("full fine-tuning", 60.0, 1.0, pct=100.0), "loss_tail": 0.5, "qv_energy_top_r": 45.3, "energy_rank": 6}
    lora = {**row("LoRA q,v", 40.0, 1.0, pct=1.7), "loss_tail": 1.4}
    adapters = {**row("adapters", 35.0, 1.0, pct=1.6), "loss_tail": 1.9}
    lines = pc.verdict([row("base (no tuning)", 2.5, 0.0), full, lora, adapters], 1)
    assert "is missed" in lines[1]  # (40 - 2.5) / (60 - 2.5) = 65%
    why = lines[2]
    assert why.startswith("Why it falls short: the base scored ROUGE-L 2.5")
    assert "keeps 45% of its energy in its top 6 singular directions" in why
    assert "1.40 against full fine-tuning's 0.50, so LoRA underfits" in why
    assert "its training loss ended at 1.90 against full fine-tuning's 0.50" in lines[3]  # adapters lag
    met = [row("base (no tuning)", 2.5, 0.0), full, {**lora, "rougeL": 58.0}]
    assert not any(line.startswith("Why it falls short") for line in pc.verdict(met, 1))
