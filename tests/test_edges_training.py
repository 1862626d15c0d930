"""Edges of runs, checkpoints and resuming, pinned by hand (issue 26).

* a failed checkpoint save puts the previous checkpoint back, byte for byte;
* a changed weight decay is applied on resume (and the lr is recomputed at the restored step);
* ``--overwrite`` removes exactly what a run writes, ``best/`` included, and nothing else;
* the model kept in ``best/`` after ``metric_for_best`` changes on resume;
* ``confined_path`` against a sibling folder that shares a prefix (``runs/a`` and ``runs/ab``).

The Trainer tests replace ``evaluate`` with a script of metrics, so which step is "best" is known
by hand without generating a single token.
"""
import json
import os

import numpy as np
import pytest

import minillm
from minillm.cli.folders import clear_old_run
from minillm.files import confined_path
from minillm.nn import Parameter
from minillm.optim import AdamW, get_scheduler
from minillm.training import resume
from minillm.training.checkpoint import load_checkpoint, save_checkpoint

# ------------------------------------------------------------------------------ confined_path


@pytest.mark.parametrize("relative, inside", [
    ("f.safetensors", True),
    ("sub/f.safetensors", True),
    ("sub/../f.safetensors", True),        # climbs and comes back: still inside
    (".", True),                           # the folder itself
    ("../a/f.safetensors", True),          # out and back into the same folder
    ("../ab/f.safetensors", False),        # the sibling "ab": shares the prefix "a", is outside
    ("../ab", False),
    ("..", False),
    ("../a", True),                        # exactly the folder, reached from outside
])
def test_confined_path_tells_the_folder_from_a_sibling_sharing_its_prefix(tmp_path, relative, inside):
    folder = tmp_path / "runs" / "a"
    (tmp_path / "runs" / "ab").mkdir(parents=True)
    folder.mkdir()
    if inside:
        got = confined_path(str(folder), relative, "shard", "index.json")
        assert got == (folder / relative).resolve()
    else:
        with pytest.raises(ValueError, match=r"index\.json: shard .* points outside .*; refused"):
            confined_path(str(folder), relative, "shard", "index.json")


@pytest.mark.parametrize("relative", ["", "/etc/passwd", "a\\..\\..\\x", None, 3])
def test_confined_path_refuses_empty_absolute_backslashed_and_non_string_names(tmp_path, relative):
    with pytest.raises(ValueError, match="index.json: shard .* must be a file name inside"):
        confined_path(str(tmp_path), relative, "shard", "index.json")


def test_confined_path_refuses_a_link_that_leads_to_the_sibling(tmp_path):
    folder, sibling = tmp_path / "a", tmp_path / "ab"
    folder.mkdir()
    sibling.mkdir()
    (folder / "link").symlink_to(sibling)
    with pytest.raises(ValueError, match="points outside"):
        confined_path(str(folder), "link/f", "shard", "index.json")


# ------------------------------------------------------------------------------ checkpoint rollback


class _Model(minillm.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.w = Parameter(np.full((2, 3), value, dtype=np.float32))


def test_a_save_that_fails_while_swapping_puts_the_previous_checkpoint_back(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoint"
    save_checkpoint(directory, _Model(1.0), step=3, extra={"epoch": 1})
    before = {name: (directory / name).read_bytes() for name in os.listdir(directory)}

    real_replace = os.replace

    def failing_replace(src, dst):
        # The new checkpoint (checkpoint.tmp-XXXX) cannot be moved in: a full disk, say.
        if os.path.basename(os.fspath(src)).startswith("checkpoint.tmp-"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(directory, _Model(2.0), step=4)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]            # no .tmp- or .old- left behind
    assert {name: (directory / name).read_bytes() for name in os.listdir(directory)} == before
    model = _Model(0.0)
    assert load_checkpoint(directory, model)["step"] == 3
    assert model.w.data.tolist() == [[1.0] * 3] * 2


def test_a_save_that_fails_while_writing_leaves_the_previous_checkpoint_untouched(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoint"
    save_checkpoint(directory, _Model(1.0), step=3)
    import minillm.training.checkpoint as checkpoint

    def broken_json(path, obj):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing the new checkpoint

    monkeypatch.setattr(checkpoint, "_write_json", broken_json)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(directory, _Model(2.0), step=4)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    assert load_checkpoint(directory, _Model(0.0))["step"] == 3


def test_a_first_save_that_fails_leaves_nothing(tmp_path, monkeypatch):
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(5, "I/O error"))
                        if os.path.basename(os.fspath(src)).startswith("checkpoint.tmp-") else real_replace(src, dst))
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "checkpoint", _Model(2.0), step=1)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------ --overwrite


def test_overwrite_removes_exactly_what_a_run_writes_best_included(tmp_path):
    out = tmp_path / "run"
    written_by_a_run = ["checkpoint/", "best/", "training_args.json", "log.jsonl", "results.json",
                        "run_config.json", "model.safetensors", "config.json", "adapter_model.safetensors",
                        "adapter_config.json", "loss_curve.png", "tokenizer.json", "tokenizer_config.json"]
    users_own = ["notes.txt", "data.jsonl", "mydata/", "best.txt", "checkpoint-old/", "model.safetensors.bak"]
    for name in written_by_a_run + users_own:
        path = out / name.rstrip("/")
        if name.endswith("/"):
            path.mkdir(parents=True)
            (path / "inner.bin").write_bytes(b"x")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    clear_old_run(str(out))
    assert sorted(os.listdir(out)) == sorted(n.rstrip("/") for n in users_own)
    assert (out / "mydata" / "inner.bin").exists()
    clear_old_run(str(out))                                  # nothing left to remove: no error
    assert sorted(os.listdir(out)) == sorted(n.rstrip("/") for n in users_own)


# ------------------------------------------------------------------------------ resume: weight decay


def test_apply_current_options_sets_this_runs_weight_decay_and_the_lr_at_the_restored_step():
    decayed, plain = Parameter(np.ones(2)), Parameter(np.ones(1))
    opt = AdamW([{"params": [decayed], "weight_decay": 0.01}, {"params": [plain], "weight_decay": 0.0}], lr=0.1)
    scheduler = get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=5)
    resume.apply_current_options(opt, scheduler, 0.5, [0.2, 0.0], step=3)
    # linear, w = 2, T = 5, at t = 3: λ = (5 - 3)/(5 - 2) = 2/3, lr = 0.5 · 2/3.
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1 / 3)] * 2
    assert [g["initial_lr"] for g in opt.param_groups] == [0.5, 0.5] and scheduler.base_lrs == [0.5, 0.5]
    assert scheduler.last_epoch == 3
    # The decay acts in the next step: with a zero gradient AdamW's moments stay 0, so only the
    # decoupled decay moves θ: θ ← θ (1 - lr λ) = 1 - (1/3)(0.2) for the decayed group, 1 for the other.
    decayed.grad, plain.grad = np.zeros(2), np.zeros(1)
    with minillm.fast_paths(False):
        opt.step()
    np.testing.assert_allclose(decayed.data, 1 - 0.2 / 3, rtol=1e-12)
    np.testing.assert_array_equal(plain.data, [1.0])
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * 1 / 3)            # t = 4: λ = 1/3


def test_compare_options_sorts_changes_into_applied_and_refused():
    saved = {"learning_rate": 0.1, "weight_decay": 0.0, "batch_size": 8, "seed": 0, "output_dir": "a"}
    same = dict(saved)
    assert resume.compare_options(saved, same, "f0", "f0", "ck") == {}
    assert resume.compare_options(None, {**saved, "seed": 5}, None, "f1", "ck") == {}   # no record: nothing to compare
    changed = resume.compare_options(saved, {**saved, "weight_decay": 0.1, "output_dir": "b", "new": 1},
                                     None, "f1", "ck")
    assert changed == {"weight_decay": (0.0, 0.1)}    # output_dir ignored; an option the record lacks too
    with pytest.raises(resume.ResumeMismatchError) as info:
        resume.compare_options(saved, {**saved, "batch_size": 16}, "f0", "f0", "ck")
    message = str(info.value)
    assert message.startswith("ck/trainer_state.json: cannot resume with batch_size=16: the checkpoint was made "
                              "with 8, and the checkpoint's position in the data counts batches of the old size.")
    assert "Resume with batch_size=8 (--batch-size 8), or start a new run." in message
    with pytest.raises(resume.ResumeMismatchError) as info:
        resume.compare_options(saved, same, "f0", "f1", "ck")
    assert str(info.value) == (
        "ck/trainer_state.json: cannot resume on different training data: the checkpoint's position in the data "
        "refers to other examples (fingerprint f0, now f1). Resume with the same data, or start a new run from "
        "the checkpoint's weights instead.")
    with pytest.raises(resume.ResumeMismatchError, match=r"\(--max-source-length 8\)"):
        resume.compare_options({"max_source_length": 8}, {"max_source_length": 9}, None, "f", "ck")


def test_data_fingerprint_tells_apart_the_order_and_the_source_target_boundary():
    a = resume.data_fingerprint([([1, 2], [3])])
    assert len(a) == 16 and int(a, 16) >= 0
    assert a == resume.data_fingerprint([(np.array([1, 2]), np.array([3]))])
    assert a == resume.data_fingerprint([(np.array([1, 2], dtype=np.int32), np.array([3], dtype=np.uint16))])
    assert a != resume.data_fingerprint([([1], [2, 3])])                  # the same ids, cut elsewhere
    assert resume.data_fingerprint([([1], [2]), ([3], [4])]) != resume.data_fingerprint([([3], [4]), ([1], [2])])


def test_data_fingerprint_is_the_format_old_checkpoints_recorded():
    # A checkpoint stores the fingerprint; a resume recomputes it, so the formula is a file format:
    # SHA-256 over each pair's int64 source bytes, "|", int64 target bytes, ";", first 16 hex digits.
    import hashlib

    by_hand = hashlib.sha256(np.array([5, 6], "<i8").tobytes() + b"|" + np.array([7], "<i8").tobytes() + b";"
                             + np.array([8], "<i8").tobytes() + b"|" + np.array([], "<i8").tobytes() + b";")
    assert resume.data_fingerprint([([5, 6], [7]), ([8], [])]) == by_hand.hexdigest()[:16]


def test_report_resume_prints_and_logs_the_changes(tmp_path, capsys):
    class Log:
        entries = []

        def write(self, entry):
            self.entries.append(entry)

    log = Log()
    resume.report_resume(log, str(tmp_path / "ck"), 3, {"weight_decay": (0.0, 0.1), "learning_rate": (1, 2)})
    resume.report_resume(log, str(tmp_path / "ck"), 4, {})
    out = capsys.readouterr().out
    assert (f"resuming from step 3 of {tmp_path / 'ck'} with changed options (applied): "
            "learning_rate 1 -> 2, weight_decay 0.0 -> 0.1") in out
    assert f"resuming from step 4 of {tmp_path / 'ck'} with the same options" in out
    assert log.entries == [
        {"step": 3, "resumed_from": str(tmp_path / "ck"), "changed": {"weight_decay": [0.0, 0.1],
                                                                       "learning_rate": [1, 2]}},
        {"step": 4, "resumed_from": str(tmp_path / "ck"), "changed": {}}]


# ------------------------------------------------------------------------------ the Trainer

@pytest.fixture(scope="module")
def setup():
    from minillm.data import Tokenizer, build_mixture

    records = build_mixture(examples_per_task=2, seed=0)
    tokenizer = Tokenizer.train([t for r in records for t in (r.prompt, r.completion)], vocab_size=200,
                                num_sentinels=2)
    return records, tokenizer


def _trainer(setup, tmp_path, metrics, **options):
    from minillm.models import T5Config, T5ForConditionalGeneration
    from minillm.training.trainer import Trainer, TrainingArguments

    records, tokenizer = setup
    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=8,
                                                num_layers=1, num_heads=2))
    base = dict(output_dir=str(tmp_path / "run"), max_steps=4, batch_size=4, learning_rate=1e-3,
                log_every=0, eval_every=2, max_source_length=16, max_target_length=8, progress=False)
    trainer = Trainer(model, tokenizer, TrainingArguments(**{**base, **options}), records, eval_data=records[:1])
    script = iter(metrics)
    trainer.evaluate = lambda records=None: dict(next(script))  # the scripted evaluation, one per call
    trainer.log.plot = lambda *args, **kwargs: None  # the loss plot (85% of the time here) is not under test
    return trainer


def _best_step(tmp_path):
    return json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())["step"]


@pytest.mark.parametrize("metric, later, best, step", [
    # The first run keeps eval_loss 0.5 (step 4). Resumed on "score" (higher is better), the old
    # best, a loss, says nothing about scores: the first score (step 6, 0.2) is the new best, and
    # 0.15 at step 8 does not beat it. Kept on eval_loss, neither 0.7 nor 0.6 beats 0.5.
    ("score", [{"eval_loss": 0.4, "score": 0.2}, {"eval_loss": 0.3, "score": 0.15}], 0.2, 6),
    ("eval_loss", [{"eval_loss": 0.7, "score": 0.9}, {"eval_loss": 0.6, "score": 0.95}], 0.5, 4),
])
def test_the_best_model_after_metric_for_best_changes_on_resume(setup, tmp_path, metric, later, best, step):
    first = _trainer(setup, tmp_path, [{"eval_loss": 1.0, "score": 0.3}, {"eval_loss": 0.5, "score": 0.1}])
    result = first.train()
    assert (result.best_metric, result.best_step, _best_step(tmp_path)) == (0.5, 4, 4)
    resumed = _trainer(setup, tmp_path, later, max_steps=8, metric_for_best=metric)
    result = resumed.train(resume_from=str(tmp_path / "run" / "checkpoint"))
    assert (result.best_metric, result.best_step, _best_step(tmp_path)) == (best, step, step)


def test_a_changed_weight_decay_is_applied_on_resume(setup, tmp_path):
    metrics = [{"eval_loss": 1.0}] * 4
    _trainer(setup, tmp_path, metrics, weight_decay=0.0).train()
    resumed = _trainer(setup, tmp_path, metrics, max_steps=6, weight_decay=0.25)
    seen = []
    resumed.callbacks.append(lambda trainer, step, logs: seen.append(
        (step, [g["weight_decay"] for g in trainer.optimizer.param_groups])))
    resumed.train(resume_from=str(tmp_path / "run" / "checkpoint"))
    # Matrices are decayed with this run's 0.25; vectors (layer norms) never.
    assert seen == [(5, [0.25, 0.0]), (6, [0.25, 0.0])]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    (note,) = [e for e in log if "resumed_from" in e]
    assert note["changed"]["weight_decay"] == [0.0, 0.25]


def test_recorded_options_leave_out_where_the_run_is_written_and_how_it_shows_progress():
    class Args:
        def to_dict(self):
            return {"learning_rate": 0.1, "output_dir": "runs/a", "progress": True, "seed": 3}

    assert resume.recorded_options(Args()) == {"learning_rate": 0.1, "seed": 3}


def test_prepare_resume_puts_back_a_checkpoint_left_aside_by_an_interrupted_save(tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", _Model(1.0), step=2)
    os.rename(run / "checkpoint", run / "checkpoint.old-ab12")      # killed between the two renames
    resume.prepare_resume(str(run / "checkpoint"))
    assert sorted(os.listdir(run)) == ["checkpoint"]
    assert "checkpoint.old-ab12 (restored as checkpoint), left by an interrupted save" in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoint", _Model(0.0))["step"] == 2
    resume.prepare_resume(str(run / "checkpoint"))                   # nothing to recover: nothing printed
    assert capsys.readouterr().out == ""
    with pytest.raises(FileNotFoundError, match=f"--resume {tmp_path / 'none'}: no such checkpoint directory"):
        resume.prepare_resume(str(tmp_path / "none"))


def test_check_checkpoint_fits_refuses_full_weights_for_a_peft_run(tmp_path):
    save_checkpoint(tmp_path / "ck", _Model(1.0), step=1)
    resume.check_checkpoint_fits(str(tmp_path / "ck"), _Model(0.0))                 # the same model: fits
    resume.check_checkpoint_fits(str(tmp_path / "no-weights"), _Model(0.0))         # no file: load names it
    with pytest.raises(resume.ResumeMismatchError) as info:
        resume.check_checkpoint_fits(str(tmp_path / "ck"), _Model(0.0), peft=True)
    assert "model.safetensors holds a full model's weights (1 tensors, e.g. w), but this run trains a PEFT " \
           "adapter; resume with --method full" in str(info.value)


class _Three(minillm.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (Parameter(np.zeros(2, dtype=np.float32)) for _ in range(3))


def test_the_full_weights_refusal_names_two_of_the_tensors_and_the_way_out(tmp_path):
    save_checkpoint(tmp_path / "ck", _Three(), step=1)
    with pytest.raises(resume.ResumeMismatchError) as info:
        resume.check_checkpoint_fits(str(tmp_path / "ck"), _Three(), peft=True)
    assert str(info.value) == (
        f"{tmp_path / 'ck' / 'model.safetensors'} holds a full model's weights (3 tensors, e.g. a, b), but this run "
        "trains a PEFT adapter; resume with --method full, or start a new run from those weights (--model)")


class _Wide(minillm.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = Parameter(np.zeros((2, 4), dtype=np.float32))


def test_check_checkpoint_fits_refuses_weights_of_another_shape(tmp_path):
    save_checkpoint(tmp_path / "ck", _Model(1.0), step=1)
    with pytest.raises(ValueError, match=r"does not match the model: 1 tensor\(s\) of another shape "
                                         r"\(file vs model\): w \[2, 3\] vs \[2, 4\]"):
        resume.check_checkpoint_fits(str(tmp_path / "ck"), _Wide())
