"""QuickstartConfig composes TrainingArguments: the quickstart's own knobs (data, model size) are its
fields, the training is one TrainingArguments, and the command's flags fill both."""
import dataclasses

import pytest

from minillm.cli import quickstart as quickstart_module
from minillm.cli.main import main
from minillm.cli.quickstart import QuickstartConfig, quickstart_training
from minillm.training.arguments import TrainingArguments


def test_the_config_holds_one_training_arguments_and_copies_none_of_its_fields():
    shared = {f.name for f in dataclasses.fields(QuickstartConfig)} & {f.name for f in
                                                                       dataclasses.fields(TrainingArguments)}
    assert shared == {"output_dir", "seed"}  # the run's folder and seed, handed to the training
    config = QuickstartConfig(output_dir="runs/x", seed=3)
    assert isinstance(config.training, TrainingArguments)
    assert (config.training.output_dir, config.training.seed) == ("runs/x", 3)
    assert config.max_steps == config.training.max_steps == 2200


def test_the_recipe_saves_at_each_evaluation_and_logs_fifty_times_unless_told_otherwise():
    recipe = quickstart_training()
    assert (recipe.learning_rate, recipe.warmup_steps, recipe.batch_size) == (2e-3, 200, 32)
    assert (recipe.eval_every, recipe.save_every, recipe.log_every) == (1200, 1200, 44)  # 2200 // 50
    short = quickstart_training(max_steps=30, eval_every=10)
    assert (short.save_every, short.log_every) == (10, 1)
    assert quickstart_training(max_steps=300, log_every=7, save_every=0).log_every == 7


def test_smoke_sends_each_override_to_the_quickstart_or_to_its_training():
    config = QuickstartConfig.smoke(seed=5, d_model=8, max_steps=6, progress=False, task_levels="")
    assert (config.seed, config.d_model, config.task_levels) == (5, 8, "")
    assert (config.training.max_steps, config.training.progress, config.training.seed) == (6, False, 5)
    assert (config.training.batch_size, config.training.eval_every, config.training.save_every) == (8, 2, 2)
    with pytest.raises(TypeError):
        QuickstartConfig.smoke(max_stepz=6)  # a misspelt name is refused, not dropped


def test_the_flags_fill_the_quickstart_and_its_training(tmp_path, monkeypatch):
    monkeypatch.delenv("MINILLM_SMOKE", raising=False)
    seen = []
    monkeypatch.setattr(quickstart_module, "run_quickstart", seen.append)
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--max-steps", "500", "--eval-every", "100",
                 "--learning-rate", "0.01", "--d-model", "64", "--bucket-pool", "1", "--no-progress"]) == 0
    (config,) = seen
    assert (config.d_model, config.bucket_pool, config.output_dir) == (64, 1, str(tmp_path / "qs"))
    training = config.training
    assert (training.max_steps, training.eval_every, training.save_every, training.log_every) == (500, 100, 100, 10)
    assert (training.learning_rate, training.progress, training.warmup_steps) == (0.01, False, 200)
    assert training.output_dir == str(tmp_path / "qs") and training.metric_for_best == "score"
