"""The course base's recipe at smoke size: build, same bytes twice, cache key, lock, resume, card."""
import dataclasses
import fcntl
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minillm.course import BaseRecipe, BuildInterrupted, HELD_IN, HELD_OUT, NEW_TASK, ensure_base, recipe_key
from minillm.course import build as course_build
from minillm.course.cache import base_folder, is_built, work_folder
from minillm.course.card import compare_with_constant, constant_answer, verdict
from minillm.data import Tokenizer, get_task
from minillm.models import T5ForConditionalGeneration

# Files whose bytes two builds must share (README.md also states the build's wall time).
SAME_BYTES = ("config.json", "model.safetensors", "tokenizer.json", "card.json", "recipe.json")
REPO = Path(__file__).resolve().parents[1]


def smoke_recipe(**overrides) -> BaseRecipe:
    return BaseRecipe.smoke(**overrides)


def build_in(cache: Path, monkeypatch, recipe=None, messages=None) -> Path:
    monkeypatch.setenv("MINILLM_CACHE", str(cache))
    echo = messages.append if messages is not None else (lambda text: None)
    return ensure_base(smoke=True, echo=echo, recipe=recipe, progress=False)


def test_task_design_names_known_tasks():
    assert len(HELD_IN) >= 5
    for name in HELD_IN + [HELD_OUT, NEW_TASK]:
        get_task(name)
    assert HELD_OUT == "dialogue_summary" and HELD_OUT not in HELD_IN and NEW_TASK not in HELD_IN
    assert "paraphrase" not in HELD_IN and "arithmetic" not in HELD_IN  # replaced, not eased under their names
    assert any(get_task(t).metric == "rouge" for t in HELD_IN)  # another summarization family is held in


def test_smoke_build_makes_a_loadable_base_with_a_card(tmp_path, monkeypatch):
    messages = []
    folder = build_in(tmp_path, monkeypatch, messages=messages)
    assert folder.parent == tmp_path and is_built(folder)
    assert "building it into" in messages[0] and "about 10 seconds" in messages[0]
    assert not work_folder(folder).exists() and not folder.with_name(folder.name + ".tmp").exists()
    model = T5ForConditionalGeneration.from_pretrained(folder)
    tokenizer = Tokenizer.from_pretrained(str(folder))
    assert model.config.vocab_size >= tokenizer.vocab_size
    card = json.loads((folder / "card.json").read_text())
    assert [r["task"] for r in card["tasks"]] == HELD_IN + [HELD_OUT, NEW_TASK]
    assert all(r["n"] == BaseRecipe.smoke().card_examples for r in card["tasks"])
    readme = (folder / "README.md").read_text()
    assert card["verdict"] in readme and "| news_summary | held in | rougeL |" in readme
    assert json.loads((folder / "recipe.json").read_text())["d_model"] == BaseRecipe.smoke().d_model
    # A second call finds it and builds nothing.
    again = []
    assert build_in(tmp_path, monkeypatch, messages=again) == folder and not any("building" in m for m in again)


def test_built_twice_the_same_bytes(tmp_path, monkeypatch):
    first = build_in(tmp_path / "a", monkeypatch)
    second = build_in(tmp_path / "b", monkeypatch)
    assert first.name == second.name
    for name in SAME_BYTES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_cache_key_follows_the_recipe():
    recipe = smoke_recipe()
    assert recipe_key(recipe) == recipe_key(smoke_recipe())
    assert len(recipe_key(recipe)) == 16 and int(recipe_key(recipe), 16) >= 0
    changes = dict(seed=1, threads=2, vocab_size=301, d_model=48, tune_steps=5, pretrain_learning_rate=1e-3,
                   held_in=tuple(HELD_IN[:-1]), task_weights="sentiment=2", card_examples=5)
    keys = {recipe_key(dataclasses.replace(recipe, **{name: value})) for name, value in changes.items()}
    assert len(keys) == len(changes) and recipe_key(recipe) not in keys
    # The printed estimate is not part of the recipe.
    assert recipe_key(dataclasses.replace(recipe, estimate_seconds=99.0)) == recipe_key(recipe)
    assert recipe_key(BaseRecipe()) != recipe_key(recipe)


def test_cache_folder_from_the_environment(tmp_path, monkeypatch):
    recipe = smoke_recipe()
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "own"))
    assert base_folder(recipe) == tmp_path / "own" / f"base-{recipe_key(recipe)}"
    monkeypatch.delenv("MINILLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert base_folder(recipe).parent == tmp_path / "xdg" / "minillm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert base_folder(recipe).parent == tmp_path / "home" / ".cache" / "minillm"


_CHILD = """
import sys
from minillm.course import ensure_base
folder = ensure_base(smoke=True, echo=lambda text: print(text, flush=True), progress=False)
print("FOLDER", folder, flush=True)
"""


def _locked(path: Path) -> bool:
    if not path.exists():
        return False
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_two_processes_build_once(tmp_path):
    env = {**os.environ, "MINILLM_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    folder = base_folder(smoke_recipe(), tmp_path)
    lock = folder.with_name(folder.name + ".lock")
    first = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _locked(lock):  # the first process holds the lock: it is building
        assert first.poll() is None and time.monotonic() < deadline, "the first process never took the lock"
        time.sleep(0.01)
    second = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)
    out_first, _ = first.communicate(timeout=120)
    out_second, _ = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0
    assert "building it into" in out_first
    assert "building it into" not in out_second  # it waited, then found the finished base
    assert f"FOLDER {folder}" in out_first and f"FOLDER {folder}" in out_second
    assert is_built(folder) and sorted(p.name for p in tmp_path.iterdir()) == [folder.name, lock.name]


def test_an_interrupted_build_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    recipe = smoke_recipe(pretrain_steps=6, tune_steps=6, save_every=2)
    complete = build_in(tmp_path / "whole", monkeypatch, recipe)

    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "cut"))
    folder = base_folder(recipe)
    calls = []

    def stop_in_tuning(trainer, step, logs):
        calls.append(step)
        if len(calls) == 6 + 3:  # all 6 pretraining steps, then 3 of tuning
            raise KeyboardInterrupt

    with pytest.raises(BuildInterrupted):
        course_build.build_base(recipe, folder, echo=lambda text: None, progress=False, callbacks=[stop_in_tuning],
                                smoke=True)
    work = work_folder(folder)
    assert not folder.exists()
    assert (work / "pretrain" / "done.json").is_file() and not (work / "tune" / "done.json").exists()
    state = json.loads((work / "tune" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 3
    steps = []
    course_build.build_base(recipe, folder, echo=lambda text: None, progress=False, smoke=True,
                       callbacks=[lambda trainer, step, logs: steps.append(step)])
    assert steps == [4, 5, 6]  # pretraining was kept, tuning continued from its checkpoint
    for name in SAME_BYTES:
        assert (folder / name).read_bytes() == (complete / name).read_bytes(), name


def test_compare_with_constant_hand_worked():
    refs, preds = ["a", "a", "b", "b"], ["a", "a", "b", "a"]
    row = compare_with_constant("accuracy", preds, "a", refs)
    # base 3/4, constant 2/4; differences 0,0,1,0: mean 1/4, sd sqrt(1/4 * 4 ... ) = 0.5, se 0.5/2
    assert row["value"] == 0.75 and row["constant"] == 0.5 and row["margin"] == 0.25
    assert math.isclose(row["margin_stderr"], 0.25) and not row["beats"]
    assert math.isclose(row["stderr"], np.std([1, 1, 1, 0], ddof=1) / 2)
    many = compare_with_constant("accuracy", ["b"] * 20 + ["a"] * 20, "a", ["b"] * 20 + ["a"] * 20)
    assert many["margin"] == 0.5 and math.isclose(many["margin_stderr"], np.std([1] * 20 + [0] * 20, ddof=1) / math.sqrt(40))
    assert many["beats"]  # 0.5 > 2 * 0.080
    assert constant_answer(["no", "yes", "yes", "no", "maybe"]) == "no"  # a tie goes to the first alphabetically


def test_verdict_is_computed_from_the_rows():
    rows = [{"task": "x", "role": "held in", "beats": True, "margin": 0.3, "margin_stderr": 0.05},
            {"task": "y", "role": "held in", "beats": False, "margin": 0.01, "margin_stderr": 0.02},
            {"task": "z", "role": "held out", "beats": False, "margin": 0.0, "margin_stderr": 0.0}]
    assert verdict(rows).startswith("1 of 2 held-in tasks") and "y (margin 0.01" in verdict(rows)
    assert verdict(rows[:1] + rows[2:]).startswith("Every one of the 1 held-in tasks")


def test_cli_base_path_card_build(tmp_path, monkeypatch, capsys):
    from minillm.cli.main import main

    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path))
    folder = base_folder(smoke_recipe(), tmp_path)
    assert main(["base", "path", "--smoke"]) == 0 and capsys.readouterr().out == f"{folder}\n"
    assert main(["base", "card", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not built yet" in err and "minillm base build" in err
    assert main(["base", "build", "--smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "building it into" in out and out.endswith(f"{folder}\n") and is_built(folder)
    assert main(["base", "card", "--smoke"]) == 0
    assert capsys.readouterr().out == (folder / "README.md").read_text()
