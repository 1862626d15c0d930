"""One training step in one place: ``Trainer.optimizer_step`` calls forward -> backward (per micro-batch)
-> all-reduce -> clip -> optimizer -> schedule in that order, on one list of trainable parameters; the
Trainer talks to distribution through one object whose every method does nothing in one process."""
import ast
import inspect
import textwrap

import numpy as np
import pytest

import minillm
from minillm.data import Tokenizer, build_mixture
from minillm.data.collate import collate, tokenize_records
from minillm.distributed.trainer_hooks import DataParallel
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.training import trainer as trainer_module
from minillm.training.trainer import Trainer, TrainingArguments


@pytest.fixture(scope="module")
def records():
    return build_mixture(examples_per_task=8, seed=0)


@pytest.fixture(scope="module")
def tokenizer(records):
    return Tokenizer.train([t for r in records for t in (r.prompt, r.completion)], vocab_size=300, num_sentinels=4)


def make_trainer(tmp_path, tokenizer, records, **overrides):
    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32,
                                                num_layers=1, num_heads=2, dropout_rate=0.0))
    args = TrainingArguments(**{**dict(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=4,
                                       learning_rate=1e-3, log_every=1, progress=False), **overrides})
    return Trainer(model, tokenizer, args, records)


class Recorder:
    """Stands in front of an object and writes ``prefix.method`` into ``calls`` before each call."""

    def __init__(self, target, prefix, calls, methods):
        self._target, self._calls = target, calls
        for name in methods:
            setattr(self, name, self._wrap(f"{prefix}.{name}", getattr(target, name)))

    def _wrap(self, label, method):
        def call(*args, **kwargs):
            self._calls.append(label)
            return method(*args, **kwargs)
        return call

    def __getattr__(self, name):
        return getattr(self._target, name)


class RecordingModel:
    """The model, recording each forward and the backward of each loss it returns."""

    def __init__(self, model, calls):
        self.model, self.calls = model, calls

    def __call__(self, **batch):
        self.calls.append("forward")
        output = self.model(**batch)
        loss, calls = output.loss, self.calls

        class Loss:
            data = loss.data

            def __mul__(self, weight):
                scaled = loss * weight
                return Recorder(scaled, "loss", calls, ["backward"])

        output.loss = Loss()
        return output

    def __getattr__(self, name):
        return getattr(self.model, name)


def instrument(trainer, calls, monkeypatch):
    trainer.model = RecordingModel(trainer.model, calls)
    trainer.optimizer = Recorder(trainer.optimizer, "optimizer", calls, ["step", "zero_grad"])
    trainer.scheduler = Recorder(trainer.scheduler, "scheduler", calls, ["step"])
    trainer.parallel = Recorder(trainer.parallel, "parallel", calls, ["tokens_per_rank", "all_reduce"])
    seen = {}

    def clip(params, max_norm):
        calls.append("clip")
        seen["clipped"] = params
        return minillm.optim.clip_grad_norm_(params, max_norm)

    monkeypatch.setattr(trainer_module, "clip_grad_norm_", clip)
    return seen


def test_one_step_runs_forward_backward_allreduce_clip_update_schedule_in_order(tmp_path, tokenizer, records,
                                                                                 monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, records)
    pairs, _ = tokenize_records(records[:6], tokenizer, 48, 16)
    calls = []
    seen = instrument(trainer, calls, monkeypatch)
    logs = trainer.optimizer_step([collate(pairs[:2]), None, collate(pairs[2:])], step=1)
    assert calls == ["parallel.tokens_per_rank", "forward", "loss.backward", "forward", "loss.backward",
                     "parallel.all_reduce", "clip", "optimizer.step", "scheduler.step", "optimizer.zero_grad"]
    assert set(logs) == {"loss", "lr", "grad_norm"} and np.isfinite(logs["loss"])
    assert seen["clipped"] is trainer.trainable  # the one list, built once in __init__


def test_training_step_is_the_gradient_half_and_updates_nothing(tmp_path, tokenizer, records, monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, records)
    pairs, _ = tokenize_records(records[:4], tokenizer, 48, 16)
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    calls = []
    instrument(trainer, calls, monkeypatch)
    trainer.training_step([collate(pairs)], step=1)
    assert calls == ["parallel.tokens_per_rank", "forward", "loss.backward", "parallel.all_reduce"]
    assert all(np.array_equal(before[k], v) for k, v in trainer.model.model.state_dict().items())
    assert any(p.grad is not None and np.any(p.grad) for p in trainer.trainable)


def test_the_step_function_fits_on_a_screen():
    source = textwrap.dedent(inspect.getsource(Trainer.optimizer_step))
    assert len(source.splitlines()) <= 40
    calls = [ast.unparse(node.func) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    for name in ("self.model", "clip_grad_norm_", "self.optimizer.step", "self.scheduler.step",
                 "self.parallel.all_reduce"):
        assert name in calls, name  # written out in the function, not behind a helper


def test_the_trainable_list_is_in_the_optimizers_order_and_holds_only_trainable_parameters(tmp_path, tokenizer,
                                                                                         records):
    trainer = make_trainer(tmp_path, tokenizer, records)
    in_groups = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in trainer.trainable] == [id(p) for p in in_groups]
    assert [p.ndim >= 2 for p in trainer.trainable] == sorted((p.ndim >= 2 for p in in_groups), reverse=True)


def test_a_whole_run_asks_distribution_only_through_the_one_object(tmp_path, tokenizer, records):
    trainer = make_trainer(tmp_path, tokenizer, records, save_every=2, eval_every=0)
    calls = []
    methods = [name for name, _ in inspect.getmembers(DataParallel, inspect.isfunction) if not name.startswith("_")]
    trainer.parallel = Recorder(trainer.parallel, "p", calls, methods)
    trainer.train()
    used = sorted({c.split(".")[1] for c in calls})
    assert used == ["all_reduce", "before_save", "report_memory", "shard", "should_stop", "start",
                    "tokens_per_rank"]
    source = inspect.getsource(trainer_module)
    assert "trainer_hooks import DataParallel, SilentLog" in source and "parallel." not in source.replace(
        "self.parallel.", "")


def test_in_one_process_every_method_of_the_object_does_nothing(tmp_path, tokenizer, records):
    parallel = DataParallel(batch_size=1)
    trainer = make_trainer(tmp_path, tokenizer, records)
    assert parallel.is_main and parallel.wrap_optimizer(trainer.optimizer) is trainer.optimizer
    assert parallel.shard([5, 3, 9]) == [5, 3, 9] and parallel.tokens_per_rank(37) == 37.0
    for p in trainer.trainable:
        p.grad = np.full(p.shape, 0.25, dtype=p.data.dtype)
    assert parallel.all_reduce(trainer.trainable, 1.5) == 1.5
    assert all(np.all(p.grad == 0.25) for p in trainer.trainable)
    assert parallel.should_stop(False) is False and parallel.should_stop(True) is True
    state = {"step": 3, "rng_state_by_rank": ["stale"]}
    assert parallel.before_save(trainer.optimizer, state) is True and state == {"step": 3}
    weights = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    minillm.manual_seed(99)
    parallel.start(trainer.model, seed=11, fingerprint="x")  # a fresh run: seed + rank 0
    assert all(np.array_equal(weights[k], v) for k, v in trainer.model.state_dict().items())
    assert minillm.backend.get_rng_state()["seed"] == 11


def test_one_module_is_named_evaluation_and_the_trainer_imports_from_where_things_are_defined():
    import importlib.util

    from minillm.evaluation import held_out

    assert importlib.util.find_spec("minillm.training.evaluation") is None
    for name in ("as_record", "generate_texts", "evaluate_model", "count_target_tokens"):
        defined_in = getattr(trainer_module, name).__module__
        assert defined_in != "minillm.training.evaluation", name
    assert held_out.evaluate_model.__module__ == "minillm.evaluation.held_out"
    assert trainer_module.count_target_tokens({"labels": np.array([[4, -100, 7], [-100, -100, 2]])}) == 3


def _readme_trail() -> list[str]:
    """The files of the README's "Follow one training step" list, in order."""
    import os
    import re

    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"),
                  encoding="utf-8").read()
    section = readme.split("### Follow one training step", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\d+\. `(minillm/[\w/]+\.py)`", section, flags=re.M)


def test_the_readme_trail_is_at_most_twelve_files_each_run_by_one_step(tmp_path, tokenizer, records):
    import os
    import sys

    trail = _readme_trail()
    assert 6 <= len(trail) <= 12 and len(set(trail)) == len(trail), trail
    assert trail[0].startswith("minillm/data/") and trail[-1] == "minillm/optim/schedules.py"
    trainer = make_trainer(tmp_path, tokenizer, records)
    batch = next(trainer._micro_batches(0, 0))[2]
    root = os.path.dirname(os.path.dirname(os.path.abspath(minillm.__file__)))
    executed = set()

    def profile(frame, event, arg):
        if event == "call":
            executed.add(os.path.relpath(frame.f_code.co_filename, root).replace(os.sep, "/"))

    with minillm.fast_paths(False):  # the formulas: the files a reader follows
        sys.setprofile(profile)
        try:
            trainer.optimizer_step([batch], step=1)
        finally:
            sys.setprofile(None)
    assert [f for f in trail if f not in executed] == []
