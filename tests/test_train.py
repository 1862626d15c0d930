"""Specification of the Trainer: exact resume, the nan guard, Ctrl-C, gradient accumulation,
frozen parameters, the run directory (log, plot, best model) and its arguments."""
import json
import os
import re

import numpy as np
import pytest

import minillm
from minillm.training.checkpoint import load_checkpoint
from minillm.data import Tokenizer, build_mixture
from minillm.data.collate import collate, tokenize_records
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.training.trainer import NonFiniteLossError, Trainer, TrainingArguments


@pytest.fixture(scope="module")
def records():
    return build_mixture(examples_per_task=16, seed=0)


@pytest.fixture(scope="module")
def eval_records():
    return build_mixture(examples_per_task=2, split="validation", seed=0)


@pytest.fixture(scope="module")
def tokenizer(records):
    texts = [t for r in records for t in (r.prompt, r.completion)]
    return Tokenizer.train(texts, vocab_size=300, num_sentinels=4)


def tiny_model(tokenizer, dropout=0.1, seed=0):
    """A T5 small enough that a step takes milliseconds; dropout > 0 exercises the RNG state."""
    minillm.manual_seed(seed)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, dropout_rate=dropout)
    return T5ForConditionalGeneration(config)


def make_args(tmp_path, name="run", **overrides):
    base = dict(output_dir=str(tmp_path / name), max_steps=6, batch_size=8, learning_rate=3e-3,
                warmup_steps=2, log_every=1, max_source_length=48, max_target_length=16,
                eval_max_new_tokens=6, eval_num_examples=6, progress=False)
    return TrainingArguments(**{**base, **overrides})


def state_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def stop_at(step):
    """A callback that presses "Ctrl-C" (raises KeyboardInterrupt) after the given step."""
    def callback(trainer, current, logs):
        if current == step:
            raise KeyboardInterrupt
    return callback


def test_resume_after_interrupt_is_bit_identical_to_an_uninterrupted_run(tmp_path, tokenizer, records):
    straight = tiny_model(tokenizer)
    Trainer(straight, tokenizer, make_args(tmp_path, "straight", gradient_accumulation_steps=2, log_every=2),
            records).train()

    first = tiny_model(tokenizer)
    args = make_args(tmp_path, "resumed", gradient_accumulation_steps=2, log_every=2)
    result = Trainer(first, tokenizer, args, records, callbacks=[stop_at(3)]).train()
    assert result.interrupted and result.global_step == 3

    minillm.manual_seed(123)  # a different RNG state and a different initialization: both restored
    second = tiny_model(tokenizer, seed=7)
    resumed = Trainer(second, tokenizer, args, records).train(resume_from=os.path.join(args.output_dir, "checkpoint"))
    assert resumed.global_step == 6 and not resumed.interrupted
    expected, got = state_of(straight), state_of(second)
    assert expected.keys() == got.keys()
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
    # The resumed log has each logged step once, with the same (windowed mean) losses as the
    # uninterrupted run, although the interruption fell inside a logging window (step 3 of 2-4).
    read = lambda d: [json.loads(x) for x in open(tmp_path / d / "log.jsonl")]  # noqa: E731
    losses = lambda d: [(e["step"], e["loss"]) for e in read(d) if "loss" in e]  # noqa: E731
    assert losses("resumed") == losses("straight")


def test_ctrl_c_saves_a_checkpoint_of_the_last_finished_step_and_returns(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer)
    args = make_args(tmp_path)
    result = Trainer(model, tokenizer, args, records, callbacks=[stop_at(2)]).train()
    assert result.interrupted and result.global_step == 2
    fresh = tiny_model(tokenizer, seed=5)
    assert load_checkpoint(os.path.join(args.output_dir, "checkpoint"), fresh)["step"] == 2
    for name, array in state_of(model).items():
        assert np.array_equal(array, fresh.state_dict()[name])
    assert not os.path.exists(os.path.join(args.output_dir, "model.safetensors"))  # not a finished run


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer)
    real_forward = model.forward
    calls = {"n": 0}

    def forward_with_nan_at_step_4(**batch):
        calls["n"] += 1
        output = real_forward(**batch)
        if calls["n"] == 4:
            output.loss = output.loss * float("nan")
        return output

    model.forward = forward_with_nan_at_step_4
    args = make_args(tmp_path, save_every=1)
    trainer = Trainer(model, tokenizer, args, records)
    with pytest.raises(NonFiniteLossError, match="step 4") as error:
        trainer.train()
    assert error.value.step == 4 and error.value.checkpoint == trainer.checkpoint_dir
    assert "step 3" in str(error.value) and trainer.checkpoint_dir in str(error.value)
    # The checkpoint on disk is the one of step 3, and equals the (untouched) model.
    restored = tiny_model(tokenizer, seed=9)
    assert load_checkpoint(trainer.checkpoint_dir, restored)["step"] == 3
    for name, array in model.state_dict().items():
        assert np.array_equal(array, restored.state_dict()[name])
    last = json.loads(open(os.path.join(args.output_dir, "log.jsonl")).read().splitlines()[-1])
    assert last["step"] == 4 and "nan" in last["error"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf is the point
def test_a_huge_learning_rate_is_caught_before_any_parameter_turns_nan(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer, dropout=0.0)
    args = make_args(tmp_path, learning_rate=1e30, warmup_steps=0, lr_schedule="constant", max_grad_norm=0,
                     save_every=1, max_steps=20)
    with pytest.raises(NonFiniteLossError, match=r"training stopped at step \d+") as error:
        Trainer(model, tokenizer, args, records).train()
    assert error.value.step >= 2
    for name, array in model.state_dict().items():
        assert np.all(np.isfinite(array)), name


def test_gradient_accumulation_gives_the_gradient_of_one_big_batch(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer, dropout=0.0)
    trainer = Trainer(model, tokenizer, make_args(tmp_path), records)
    pairs, _ = tokenize_records(records[:8], tokenizer, 48, 16)
    # Micro-batches of different sizes and target lengths: a plain mean of batch means would be wrong.
    micro = [collate(pairs[:3]), collate(pairs[3:])]

    def gradients(batches):
        model.zero_grad()
        loss = trainer.training_step(batches, step=1)
        return loss, {name: p.grad.copy() for name, p in model.named_parameters()}

    big_loss, big = gradients([collate(pairs)])
    acc_loss, acc = gradients(micro)
    assert acc_loss == pytest.approx(big_loss, rel=1e-5)
    for name in big:
        np.testing.assert_allclose(acc[name], big[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_frozen_parameters_are_never_changed(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("decoder.block")
    before = state_of(model)
    trainer = Trainer(model, tokenizer, make_args(tmp_path, weight_decay=0.1), records)
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    trainer.train()
    for name, p in model.named_parameters():
        assert (id(p) in optimized) == p.requires_grad
        changed = not np.array_equal(before[name], p.data)
        assert changed == p.requires_grad, name


def test_a_model_with_everything_frozen_is_refused(tmp_path, tokenizer, records):
    model = tiny_model(tokenizer).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        Trainer(model, tokenizer, make_args(tmp_path), records)


def test_run_directory_holds_log_plot_best_model_and_final_model(tmp_path, tokenizer, records, eval_records):
    pytest.importorskip("matplotlib")
    args = make_args(tmp_path, eval_every=3, metric_for_best="eval_loss", eval_num_examples=10)
    result = Trainer(tiny_model(tokenizer), tokenizer, args, records, eval_data=eval_records).train()
    out = args.output_dir
    for name in ("log.jsonl", "loss_curve.png", "training_args.json", "tokenizer.json", "config.json",
                 "model.safetensors", "checkpoint/trainer_state.json", "best/model.safetensors",
                 "best/metrics.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert open(os.path.join(out, "loss_curve.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert all({"lr", "grad_norm", "tokens_per_sec"} <= e.keys() for e in log if "loss" in e)
    evals = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in evals] == [3, 6]
    assert result.best_metric == min(e["eval_loss"] for e in evals)
    assert json.load(open(os.path.join(out, "best", "metrics.json")))["step"] == result.best_step
    # The task metrics are there too (each built-in task's own metric).
    assert "translation/bleu" in result.metrics and "dialogue_summary/rougeL" in result.metrics
    assert TrainingArguments.load(os.path.join(out, "training_args.json")) == args
    reloaded = T5ForConditionalGeneration.from_pretrained(out)
    assert reloaded.config.d_model == 16


def test_epochs_set_the_number_of_steps_with_accumulation(tmp_path, tokenizer, records):
    args = make_args(tmp_path, max_steps=0, num_epochs=2, batch_size=16, gradient_accumulation_steps=2)
    trainer = Trainer(tiny_model(tokenizer), tokenizer, args, records)
    assert len(trainer.train_batches) == 5  # 80 records / 16
    assert trainer.total_steps == 5  # ceil(2 epochs x 5 batches / 2)


def test_evaluate_scores_generations_with_a_custom_metric(tmp_path, tokenizer, eval_records):
    trainer = Trainer(tiny_model(tokenizer), tokenizer, make_args(tmp_path, eval_num_examples=4), eval_records,
                      eval_data=eval_records, metric=lambda predictions, recs: {"n": len(predictions)})
    assert trainer.evaluate()["n"] == 4  # the periodic eval: the first eval_num_examples records
    results = trainer.evaluate(eval_records)  # records given explicitly: all of them
    assert results["n"] == len(eval_records) == 10 and results["eval_loss"] > 0


def test_training_arguments_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown key 'lr'.*cfg.json|cfg.json.*unknown key 'lr'"):
        TrainingArguments.from_dict({"lr": 1e-3}, source="cfg.json")
    with pytest.raises(ValueError, match="optimizer"):
        TrainingArguments(optimizer="sgd")
    with pytest.raises(ValueError, match="batch_size"):
        TrainingArguments(batch_size=0)
    args = TrainingArguments(output_dir="x", max_steps=3)
    assert TrainingArguments.from_dict(json.loads(json.dumps(args.to_dict()))) == args


# ---------------------------------------------------------------------------------- issue 13: resume, nan guard
def _diverges_above(model, trainer_ref, threshold):
    """Make ``model``'s loss nan whenever the trainer's current lr exceeds ``threshold`` (an unstable model)."""
    real_forward = model.forward

    def forward(**batch):
        output = real_forward(**batch)
        if trainer_ref[0].optimizer.param_groups[0]["lr"] > threshold:
            output.loss = output.loss * float("nan")
        return output
    model.forward = forward


def test_following_the_nan_guards_advice_resumes_with_the_lower_learning_rate(tmp_path, tokenizer, records):
    # lr ramps 0, 0.01, 0.02, 0.03 (warmup 5 to 0.05); the model diverges above 0.025, at step 4.
    options = dict(learning_rate=0.05, lr_schedule="constant_with_warmup", warmup_steps=5, save_every=1,
                   max_steps=6)
    model, ref = tiny_model(tokenizer), []
    trainer = Trainer(model, tokenizer, make_args(tmp_path, **options), records)
    ref.append(trainer)
    _diverges_above(model, ref, 0.025)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.train()
    message = str(error.value)
    assert error.value.step == 4 and "(step 3)" in message
    # The advice, as printed: "--resume <checkpoint> --learning-rate <lower>".
    printed = re.search(r"--resume (\S+) --learning-rate (\S+);", message)
    checkpoint, lower = printed.group(1), float(printed.group(2))
    assert checkpoint == trainer.checkpoint_dir and lower < 0.05

    resumed_model, ref2 = tiny_model(tokenizer, seed=3), []
    resumed = Trainer(resumed_model, tokenizer, make_args(tmp_path, **{**options, "learning_rate": lower}), records)
    ref2.append(resumed)
    _diverges_above(resumed_model, ref2, 0.025)
    result = resumed.train(resume_from=checkpoint)
    assert result.global_step == 6 and not result.interrupted
    assert all(np.all(np.isfinite(a)) for a in resumed_model.state_dict().values())
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    (note,) = [e for e in log if "resumed_from" in e]
    assert note["changed"] == {"learning_rate": [0.05, lower]}
    # Steps 4-6 used the lower rate through the same schedule: lower * min(1, t / 5) for t = 3, 4, 5.
    lrs = {e["step"]: e["lr"] for e in log if "lr" in e}
    assert [lrs[4], lrs[5], lrs[6]] == pytest.approx([lower * 3 / 5, lower * 4 / 5, lower])


def test_resume_refuses_options_that_would_change_the_run_and_says_why(tmp_path, tokenizer, records):
    from minillm.training.resume import ResumeMismatchError

    args = make_args(tmp_path, save_every=2)
    Trainer(tiny_model(tokenizer), tokenizer, args, records, callbacks=[stop_at(2)]).train()
    checkpoint = os.path.join(args.output_dir, "checkpoint")
    for change, reason in ((dict(batch_size=4), "batch_size=4.*made with 8.*position in the data"),
                           (dict(seed=1), "seed=1.*made with 0"),
                           (dict(optimizer="adafactor"), "optimizer.*moments")):
        trainer = Trainer(tiny_model(tokenizer), tokenizer, make_args(tmp_path, save_every=2, **change), records)
        with pytest.raises(ResumeMismatchError, match=reason):
            trainer.train(resume_from=checkpoint)
    other_data = Trainer(tiny_model(tokenizer), tokenizer, make_args(tmp_path, save_every=2), records[:-8])
    with pytest.raises(ResumeMismatchError, match="different training data") as error:
        other_data.train(resume_from=checkpoint)
    assert "trainer_state.json" in str(error.value)


def test_stale_temporaries_of_a_crashed_save_are_removed_and_an_orphaned_checkpoint_restored(tmp_path, tokenizer,
                                                                                           records):
    args = make_args(tmp_path, save_every=2)
    Trainer(tiny_model(tokenizer), tokenizer, args, records, callbacks=[stop_at(2)]).train()
    run = tmp_path / "run"
    (run / "checkpoint.tmp-abc123").mkdir()                      # a save that never swapped in
    (run / "checkpoint.tmp-abc123" / "model.safetensors").write_bytes(b"half")
    (run / "config.json.x1y2z3.tmp").write_text("{")              # an atomic write cut short
    os.replace(run / "checkpoint", run / "checkpoint.old-q9w8e7")  # the instant between the two renames
    Trainer(tiny_model(tokenizer), tokenizer, args, records).train(resume_from=str(run / "checkpoint"))
    assert sorted(os.listdir(run)) == sorted(n for n in os.listdir(run) if ".tmp" not in n and ".old-" not in n)
    assert (run / "checkpoint" / "trainer_state.json").is_file()


def test_a_nan_learning_rate_is_refused_before_step_one(tmp_path, tokenizer, records):
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(ValueError, match="learning_rate"):
            make_args(tmp_path, learning_rate=bad)
    with pytest.raises(ValueError, match="max_grad_norm must be a finite number"):
        make_args(tmp_path, max_grad_norm=float("inf"))
    # Set behind the arguments' back, the guard still stops before the update.
    model = tiny_model(tokenizer)
    trainer = Trainer(model, tokenizer, make_args(tmp_path), records)
    before = state_of(model)
    trainer.scheduler.base_lrs = [float("nan")] * len(trainer.optimizer.param_groups)
    trainer.scheduler.last_epoch = -1
    trainer.scheduler.step()
    trainer._apply_current_options = lambda step: None
    with pytest.raises(NonFiniteLossError, match="learning rate is nan"):
        trainer.train()
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_a_tokenizer_larger_than_the_model_is_refused_at_once(tmp_path, tokenizer, records):
    small = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size - 1, d_model=16, d_kv=8, d_ff=32,
                                                num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match=f"has {tokenizer.vocab_size} ids but the model has vocab_size"):
        Trainer(small, tokenizer, make_args(tmp_path), records)

