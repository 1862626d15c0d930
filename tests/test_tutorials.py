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
import math
import os
import shutil
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
    assert summary["fast_vs_reference_max_abs_diff"] < 1e-3  # the switch changes float32 rounding only
    assert summary["fast_ms"] > 0 and summary["reference_ms"] > 0
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
    starts = summary["last_bucket_starts"]  # the prose: "the last bucket is reached before max_distance"
    assert 0 < starts["encoder"] < summary["max_distance"] and 0 < starts["decoder"] < summary["max_distance"]
    assert starts["decoder"] > starts["encoder"]  # 32 one-sided buckets reach further than 16
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
        # the padding keys lie where the causal mask lets queries see them, so only the key mask hides them
        assert summary["attention_padding_pairs_causal_allows"] > 0
        assert summary["attention_padding_grad_max"] == 0.0
        _expect_figures(summary, out_dir, "attention_probabilities.png")
    else:
        assert not summary["emulated"]
    if not summary["gpu"]:
        assert summary["gpu_timings_ms"] == {}


def check_lora(summary: dict, out_dir: Path) -> None:
    """07: LoraLinear is W + s B A (forward and both projected gradients); merging changes nothing."""
    assert summary["lora_forward_max_abs_err"] < 1e-6
    assert summary["lora_grad_A_max_abs_err"] < 1e-6       # dL/dA = s B^T G
    assert summary["lora_grad_B_max_abs_err"] < 1e-6       # dL/dB = s G A^T
    assert summary["frozen_weight_has_no_grad"] and summary["init_matches_base"]
    assert summary["delta_weight_rank"] == summary["lora_rank_demo"]
    sweep = summary["rank_sweep"]
    assert [row["r"] for row in sweep] == [2, 8, 32]
    for row in sweep:  # each rank keeps the rate with the best validation score (ties: the smaller rate)
        val = {float(k): v for k, v in row["validation_rougeL_by_lr"].items()}
        assert len(val) == 2 and row["lr"] == max(val, key=lambda lr: (val[lr], -lr))
    assert all(a["trainable"] < b["trainable"] for a, b in zip(sweep, sweep[1:]))  # linear in r
    assert all(row["optimizer_bytes"] == 8 * row["trainable"] for row in sweep)    # AdamW: 2 float32 each
    assert summary["trainable_pct_r8"] < 10
    for row in sweep:  # PEFT's definition: the adapter counts in "all" (LoRA adds parameters)
        assert math.isclose(row["trainable_pct"], 100 * row["trainable"] / (summary["total_params"] + row["trainable"]))
    assert summary["optimizer_state_ratio_full_over_r8"] > 5
    assert summary["merged_vs_unmerged_logits_max_abs_diff"] < 1e-4  # float32 rounding only
    assert summary["merged_generation_identical"]
    assert summary["lora_layers_after_merge"] == 0
    assert summary["merged_num_parameters"] == summary["total_params"]
    gain = summary["full_rougeL"] - summary["base_rougeL"]  # each rank's share of full fine-tuning's gain
    for row in sweep:
        share = summary["gain_share_by_rank"][str(row["r"])]
        assert math.isnan(share) if gain <= 0 else share == pytest.approx(100 * (row["rougeL"] - summary["base_rougeL"]) / gain)
    # the spectrum of full fine-tuning's update: cumulative energy shares, and a sentence that follows them
    assert summary["energy_ranks"] == list(range(1, 33)) and summary["delta_w_matrices"] > 0
    assert summary["energy_share_worked_example"] == pytest.approx([16 / 25, 1.0])  # sigma = 4, 3 by hand
    for key in ("delta_w_energy_share_mean", "delta_w_energy_share_min", "random_energy_share_mean"):
        shares = summary[key]
        assert all(0.0 < a <= b <= 1.0 + 1e-12 for a, b in zip(shares, shares[1:])), key  # cumulative
    assert all(m <= a + 1e-12 for m, a in zip(summary["delta_w_energy_share_min"], summary["delta_w_energy_share_mean"]))
    assert summary["delta_w_energy_r8"] == summary["delta_w_energy_share_mean"][7]
    concentrated = summary["delta_w_energy_r8"] > summary["random_energy_share_mean"][7]
    assert ("ΔW is more concentrated than noise" in summary["delta_w_energy_verdict"]) == concentrated
    assert f"{100 * summary['delta_w_energy_r8']:.1f}%" in summary["delta_w_energy_verdict"]
    _expect_figures(summary, out_dir, "rank_sweep.png")


def check_peft_methods(summary: dict, out_dir: Path) -> None:
    """08: every method is in the table; PEFT leaves frozen weights alone; adapters switch by name."""
    assert summary["methods"] == ["base (no tuning)", "full fine-tuning", "LoRA r=8", "adapters m=16",
                                  "prompt tuning n=20", "selective norms+last"]
    for row in summary["table"][2:]:
        assert row["frozen_unchanged"] is True and row["frozen_checked"] > 0, row["method"]
        assert 0 < row["trainable"] < summary["total_params"]
        # PEFT's trainable%: additive methods add their parameters to "all"; selective trains the base's own
        added = 0 if row["method"].startswith("selective") else row["trainable"]
        assert math.isclose(row["trainable_pct"], 100 * row["trainable"] / (summary["total_params"] + added)), row
    assert summary["table"][0]["frozen_unchanged"] is None  # the untuned base has nothing to check
    assert summary["table"][1]["trainable_pct"] == 100.0
    assert summary["frozen_base_unchanged_all"]
    assert summary["adapter_count_matches_formula"] and summary["adapter_init_max_abs_diff"] == 0.0
    assert summary["prompt_count_matches_formula"] and summary["prompt_input_length_added"] == 20
    assert summary["switch_changes_logits_max"] > 1e-3      # another adapter computes something else
    assert summary["switch_back_max_abs_diff"] == 0.0       # and switching back restores it exactly
    assert summary["disabled_vs_base_max_abs_diff"] == 0.0
    assert summary["multi_base_untouched"]
    assert set(summary["multi_task_scores"]) == {"base (disabled)", "dialogue_summary", "sentiment"}
    scores = summary["multi_task_scores"]  # the printed "best on its own task" agrees with the table
    assert summary["each_adapter_best_on_own_task"] == all(
        scores[t][t] >= max(scores["base (disabled)"][t], *(scores[o][t] for o in ("dialogue_summary", "sentiment")))
        for t in ("dialogue_summary", "sentiment"))
    _expect_figures(summary, out_dir, "method_comparison.png")


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def check_train_toy_t5(summary: dict, out_dir: Path) -> None:
    """03: the course recipe at a small scale; the loss fell in both phases; the saved model reloads and
    generates the same tokens; each task is judged by the model card's rule, stated once."""
    assert summary["pretrain_loss_last"] < summary["pretrain_loss_first"]
    assert summary["finetune_loss_last"] < summary["finetune_loss_first"]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (out_dir / "model" / name).is_file(), f"model/{name} was not saved"
    assert summary["reload_generates_same"]
    changes = summary["recipe_changes_from_full"]  # a smaller size of the same recipe: the tasks stay
    assert "d_model" in changes and "held_in" not in changes and "task_weights" not in changes
    rows = summary["rows_after"]
    assert [r["role"] for r in rows].count("held in") == 5 and {r["role"] for r in rows} == {"held in", "held out",
                                                                                             "new task"}
    for r in rows:  # the card's rule: margin > 2 standard errors of the margin
        assert math.isclose(r["margin"], r["value"] - r["constant"], abs_tol=1e-9)
        assert r["beats"] == (r["margin"] > 2 * r["margin_stderr"]), r["task"]
    held_in = [r for r in rows if r["role"] == "held in"]
    known = sum(r["beats"] for r in held_in)
    assert summary["known_verdict"].startswith("Every one" if known == len(held_in) else f"{known} of {len(held_in)}")
    # the fill-the-blank demo reports what the model wrote, measured against a rival, not a fixed claim
    assert summary["fill_blank_n"] > 0
    for key in ("fill_blank_exact", "fill_blank_first_token", "fill_blank_constant_first_token"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["fill_blank_exact"] <= summary["fill_blank_first_token"]
    _expect_figures(summary, out_dir, "loss_curves.png")


def check_prompting(summary: dict, out_dir: Path) -> None:
    """04: few-shot prompts hold their shots; decoding identities hold; every setting was scored."""
    assert summary["few_shot_prompt_contains_shots"]
    assert summary["greedy_equals_num_beams_1"] and summary["greedy_equals_top_k_1_sampling"]
    assert summary["same_seed_repeats"]
    for task, by_k in summary["icl_scores"].items():
        assert sorted(by_k) == sorted(str(k) for k in summary["icl_shot_counts"]), task
        assert all(0.0 <= v <= 100.0 for v in by_k.values()), task
    for task, by_k in summary["icl_scores"].items():  # the printed verdict follows from the numbers
        err = summary["icl_stderr"][task]
        better = [int(k) for k in by_k if k != "0" and by_k[k] - by_k["0"] > 2 * math.hypot(err[k], err["0"])]
        assert (f"{task}: better than 0-shot with {sorted(better)} shots" in summary["icl_verdict"]) == bool(better)
        assert summary["icl_better_worse"][task]["better"] == sorted(better)
    gained = sum(bool(v["better"]) for v in summary["icl_better_worse"].values())
    assert f"{gained} of {len(summary['icl_scores'])} tasks gained" in summary["icl_verdict"]
    assert ("did not help" in summary["icl_verdict"]) == (gained == 0)  # the course's note, checked not assumed
    tokens = summary["icl_prompt_tokens"]
    assert tokens["0"] < tokens["1"] < tokens["2"] < tokens["4"]  # each shot lengthens the prompt
    assert summary["tokens_kept"]["top-k=5"] == 5
    assert summary["tokens_kept"]["top-p=0.9"] <= summary["tokens_kept"]["T=1"]
    p = summary["top_token_prob_by_temperature"]
    assert p["T=0.5"] >= p["T=1"] >= p["T=2"]  # the top token: sharper when colder
    entropies = summary["step_entropies"]  # the distribution shown is the least sure step's
    assert entropies[summary["least_sure_step"]] == max(entropies) > 0
    assert set(summary["equal_to_reference"]) == set(summary["decoding"])
    assert summary["decoding"]["greedy"]["distinct"] == 1
    _expect_figures(summary, out_dir, "next_token_distribution.png")


def check_instruction_finetuning(summary: dict, out_dir: Path) -> None:
    """05: the JSONL round trip drops nothing; full fine-tuning changed every weight; ROUGE did not fall."""
    assert summary["jsonl_records_loaded"] == summary["jsonl_lines_written"] > 0
    assert summary["jsonl_blank_lines"] == 0
    assert "line 2" in summary["bad_line_error"]
    assert summary["parameter_tensors_changed"] == summary["parameter_tensors"]
    for key in ("rouge1", "rouge2", "rougeL", "translation_bleu"):
        assert _finite(summary["before"][key], summary["after"][key])
    assert math.isclose(summary["translation_bleu_change"],
                        summary["after"]["translation_bleu"] - summary["before"]["translation_bleu"])
    # the computed example: every name swapped, and ROUGE still rewards the summary
    from minillm.data.tasks_lexicon import NAMES  # noqa: PLC0415
    from minillm.metrics import rouge_score  # noqa: PLC0415

    wrong, ref = summary["names_swapped_summary"], summary["names_swapped_reference"]
    ref_names = {w.strip(".,") for w in ref.split()} & set(NAMES)
    wrong_names = {w.strip(".,") for w in wrong.split()} & set(NAMES)
    assert ref_names and not (ref_names & wrong_names) and len(wrong.split()) == len(ref.split())
    assert summary["names_swapped_rougeL"] == rouge_score(wrong, ref, rouge_types=("rougeL",))["rougeL"].fmeasure
    n, k = len(ref.split()), summary["names_swapped_count"]  # LCS keeps every word but the k names
    assert math.isclose(summary["names_swapped_rougeL"], (n - k) / n)
    assert 0 <= summary["summaries_with_wrong_names"] <= summary["n_test"]
    if not summary["smoke"]:  # a few smoke steps prove nothing about quality
        assert summary["after"]["rougeL"] >= summary["before"]["rougeL"]
        assert summary["loss_last"] < summary["loss_first"]
    _expect_figures(summary, out_dir, "rouge_before_after.png")


def check_forgetting(summary: dict, out_dir: Path) -> None:
    """06: each forgetting table has every task and a row per stage; BWT is the matrix's BWT."""
    tasks, learned_at = summary["tasks"], summary["learned_at"]
    assert set(summary["matrices"]) == {"single-task", "multitask"}
    for arm, matrix in summary["matrices"].items():
        assert matrix["tasks"] == tasks and len(matrix["R"]) == 2
        assert all(len(row) == len(tasks) for row in matrix["R"])
        old = [i for i, stage in enumerate(learned_at) if stage < 1]
        expected = sum(matrix["R"][1][i] - matrix["R"][0][i] for i in old) / len(old)
        assert abs(summary["bwt"][arm] - expected) < 1e-9, arm
        assert abs(matrix["backward_transfer"] - expected) < 1e-9, arm
        assert matrix["R"][0] == [summary["base_scores"][t] for t in tasks]
    base, level, err = summary["base_scores"], summary["constant_answer"], summary["base_stderr"]
    known = [t for t in tasks[:-1] if base[t] - level[t] > 2 * err[t]]
    assert summary["known_old_tasks"] == known
    new = tasks[-1]  # what multitask paid on the new task: printed from the arms' scores and errors
    diff = summary["arm_scores"]["single-task"][new] - summary["arm_scores"]["multitask"][new]
    se = math.hypot(summary["arm_stderr"]["single-task"][new], summary["arm_stderr"]["multitask"][new])
    assert ("multitask paid for it" in summary["new_task_verdict"]) == (diff > 2 * se)
    assert ("no cost showed" in summary["new_task_verdict"]) == (abs(diff) <= 2 * se)
    if not known:
        assert "cannot show forgetting" in summary["verdict"] and "tutorial 03" not in summary["verdict"]
    else:
        loss = {arm: sum(max(0.0, -summary["old_task_change"][arm][t]) for t in known) / len(known)
                for arm in ("single-task", "multitask")}
        assert f"single-task fine-tuning lost {loss['single-task']:.1f} points" in summary["verdict"]
        assert f"multitask {loss['multitask']:.1f}" in summary["verdict"]
        kept_all = all(summary["old_task_change"]["multitask"][t] >= -2 * err[t] for t in known)
        assert ("kept every known skill" in summary["verdict"]) == kept_all
    n = summary["n_eval"]  # a share's bar stays open at 0 (Wilson, z = 1): 0 of n allows 1 / (n + 1)
    for label, bars in summary["error_bars"].items():
        scores = summary["base_scores"] if label == "base" else summary["arm_scores"][label]
        for t in ("sentiment", "same_plan", "word_problem", "antonym"):
            assert bars[t][1] > 0, (label, t)
            if scores[t] == 0:
                assert bars[t] == [0, pytest.approx(100 / (n + 1))], (label, t)
    _expect_figures(summary, out_dir, "forgetting.png")


def check_data_parallelism(summary: dict, out_dir: Path) -> None:
    """11: broadcast makes the ranks' weights equal; token-weighted averaging equals one big batch."""
    assert summary["world_size"] == 2 and summary["all_reduce_ok"]
    assert summary["weights_differ_before_broadcast"] and summary["weights_equal_after_broadcast"]
    assert len(set(summary["token_counts_per_rank"])) == 2                 # unequal shares on purpose
    assert summary["dp_vs_big_batch_grad_max_rel_err"] < 1e-5              # float32 summation order only
    assert summary["naive_vs_big_batch_grad_max_rel_err"] > 1e-2           # per-rank means are wrong
    training = summary["dp_vs_one_process"]
    assert training["ranks_identical"] and training["max_diff_over_lr_steps"] < 1e-2
    assert training["beyond_16_ulps"] <= 0.001 * training["elements"]
    assert summary["plain_dp_optimizer_bytes"] == 8 * summary["parameters"]  # AdamW: m and v in float32
    assert sum(summary["zero1_optimizer_bytes_per_rank"]) == summary["plain_dp_optimizer_bytes"]
    assert max(summary["zero1_optimizer_bytes_per_rank"]) < 0.6 * summary["plain_dp_optimizer_bytes"]
    assert summary["zero1_equals_dp"]
    _expect_figures(summary, out_dir, "memory_per_rank.png")


def check_evaluation(summary: dict, out_dir: Path) -> None:
    """09: hand ROUGE and BLEU equal the library's; GLUE averages per task; HELM rows are sane."""
    assert summary["rouge_max_abs_diff"] < 1e-9
    for kind in ("rouge1", "rouge2", "rougeL"):
        assert all(abs(h - l) < 1e-9 for h, l in zip(summary["rouge_hand"][kind], summary["rouge_library"][kind]))
    assert abs(summary["sentence_bleu_hand"] - summary["sentence_bleu_library"]) < 1e-9
    assert abs(summary["corpus_bleu_hand"] - summary["corpus_bleu_library"]) < 1e-9
    assert summary["corpus_rougeL_max_abs_diff"] < 1e-9
    assert abs(summary["glue_score"] - summary["glue_score_by_hand"]) < 1e-9
    assert set(summary["glue_per_task"]) == {"news_summary", "translation", "sentiment", "same_plan", "word_problem",
                                             "dialogue_summary"}  # the base's held-in tasks and its held-out one
    assert [row["scenario"] for row in summary["helm"]] == ["sentiment", "same_plan", "word_problem"]
    for row in summary["helm"]:
        assert row["robustness"] <= row["accuracy"] + 1e-9  # worst case over clean and perturbed
        assert row["ece"] is None or 0.0 <= row["ece"] <= 1.0
    _expect_figures(summary, out_dir, "lcs_table.png", "helm_robustness.png")


class Tutorial(NamedTuple):
    script: str
    check: Callable[[dict, Path], None]
    processes: int = 1  # > 1: run under ``mpiexec -n processes`` (needs the distributed extra)


TUTORIALS = [
    Tutorial("01_autograd.py", check_autograd),
    Tutorial("02_attention_and_transformer.py", check_attention),
    Tutorial("03_train_toy_t5.py", check_train_toy_t5),
    Tutorial("04_prompting_and_generation.py", check_prompting),
    Tutorial("05_instruction_finetuning.py", check_instruction_finetuning),
    Tutorial("06_forgetting_and_multitask.py", check_forgetting),
    Tutorial("07_lora.py", check_lora),
    Tutorial("08_adapters_prompts_selective.py", check_peft_methods),
    Tutorial("09_evaluation_and_benchmarks.py", check_evaluation),
    Tutorial("10_gpu_kernels.py", check_gpu_kernels),
    Tutorial("11_data_parallelism.py", check_data_parallelism, processes=2),
]


# ---- running one ----------------------------------------------------------------------------------

def _mpiexec(processes: int) -> list[str]:
    """``[mpiexec, -n, processes]``, or a skip when the distributed extra is not installed."""
    pytest.importorskip("mpi4py", reason="needs the distributed extra: pip install 'minillm[distributed]'")
    launcher = Path(sys.executable).parent / "mpiexec"
    found = str(launcher) if launcher.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found")
    return [found, "-n", str(processes)]


def run_tutorial(script: str, out_root: Path, extra_env: dict | None = None,
                 processes: int = 1) -> tuple[dict, Path, float, str]:
    """Run tutorials/<script> in smoke mode; returns (summary, its output folder, seconds, stdout)."""
    env = {**os.environ, "MINILLM_SMOKE": "1", "MINILLM_TUTORIAL_OUT": str(out_root), "MPLBACKEND": "Agg",
           **(extra_env or {})}
    started = time.perf_counter()
    launcher = _mpiexec(processes) if processes > 1 else []
    result = subprocess.run([*launcher, sys.executable, str(TUTORIAL_DIR / script)], cwd=REPO, env=env,
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
def emulator_cache_env(request, tmp_path_factory) -> dict:
    """Share the kernel tests' emulator build cache, so tutorial 10 does not recompile each run, and
    one course-base cache (the smoke stand-in builds once, in seconds) among the tutorials."""
    cache = getattr(request.config, "cache", None)
    env = {"MINILLM_EMU_CACHE": str(cache.mkdir("minillm-emu"))} if cache is not None else {}
    course = cache.mkdir("minillm-course") if cache is not None else tmp_path_factory.mktemp("minillm-course")
    return {**env, "MINILLM_CACHE": str(course)}


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[t.script for t in TUTORIALS])
def test_tutorial_runs_in_smoke_mode_and_its_claims_hold(tutorial, tmp_path, emulator_cache_env):
    summary, out_dir, seconds, _ = run_tutorial(tutorial.script, tmp_path, emulator_cache_env, tutorial.processes)
    for name in summary.get("figures", []):
        assert (out_dir / name).is_file(), f"{name} is listed but was not saved in {out_dir}"
    tutorial.check(summary, out_dir)
    if tutorial.script[:2] in ("04", "05", "06", "07", "08", "09"):  # the lessons start from the course base
        assert summary["model_source"] == "course base"
        assert Path(summary["base_folder"]).parent == Path(emulator_cache_env["MINILLM_CACHE"])
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


# ---- the lessons start from the course base -----------------------------------------------------

# Run in full mode (no MINILLM_SMOKE), each lesson must ask minillm.course.ensure_base for the base
# before it builds any optimizer: an optimizer before the base means it trains a base of its own.
# The driver replaces both, records which came first, and stops the script there (seconds).
LESSONS = [f"tutorials/{t.script}" for t in TUTORIALS if t.script[:2] in ("04", "05", "06", "07", "08", "09")] + [
    "benchmarks/peft_compare.py", "benchmarks/forgetting.py"]
_FIRST_CALL_DRIVER = """
import json, runpy, sys
import minillm.course
from minillm.optim import optimizer
script, record = sys.argv[1], sys.argv[2]

def ensure_base(smoke=None, **kwargs):
    json.dump({"first": "ensure_base", "smoke": smoke}, open(record, "w"))
    raise SystemExit(0)

def optimizer_init(self, *args, **kwargs):
    json.dump({"first": "optimizer"}, open(record, "w"))
    raise SystemExit(0)

minillm.course.ensure_base = ensure_base
optimizer.Optimizer.__init__ = optimizer_init
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", LESSONS)
def test_lesson_in_full_mode_loads_the_course_base_before_training_anything(script, tmp_path):
    record = tmp_path / "first_call.json"
    env = {k: v for k, v in os.environ.items() if k != "MINILLM_SMOKE"}
    env.update({"MINILLM_TUTORIAL_OUT": str(tmp_path), "MPLBACKEND": "Agg", "MINILLM_CACHE": str(tmp_path / "cache")})
    result = subprocess.run([sys.executable, "-c", _FIRST_CALL_DRIVER, str(REPO / script), str(record)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert result.returncode == 0, f"{script}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert record.is_file(), f"{script} ended without asking for the course base or training anything"
    first = json.loads(record.read_text())
    assert first["first"] == "ensure_base", f"{script} built an optimizer before asking for the course base"
    assert first["smoke"] is False, f"{script} asked for the base with smoke={first['smoke']!r} in full mode"


def test_readme_lists_every_tutorial_with_how_to_run_it():
    readme = (TUTORIAL_DIR / "README.md").read_text(encoding="utf-8")
    for tutorial in TUTORIALS:
        assert tutorial.script in readme
    for phrase in ("MINILLM_SMOKE=1", "MINILLM_TUTORIAL_OUT", "jupytext --to notebook"):
        assert phrase in readme
