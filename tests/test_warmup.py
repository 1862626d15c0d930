"""Warmup that fits the run: --warmup-ratio, and a warning when the warmup is not shorter than the run."""
import pytest

import minillm
from minillm.cli.main import main
from minillm.data import Tokenizer
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.training.trainer import Trainer, TrainingArguments


@pytest.mark.parametrize("ratio, steps, total, expected", [
    (0.1, 30, 95, 10),   # ceil(9.5): the ratio decides when set
    (0.25, 0, 4, 1),
    (0.0, 30, 95, 30),   # no ratio: warmup_steps
    (0.0, 0, 95, 0),
])
def test_the_warmup_is_the_ratio_of_the_run_when_set_else_warmup_steps(ratio, steps, total, expected):
    assert TrainingArguments(warmup_ratio=ratio, warmup_steps=steps).num_warmup_steps(total) == expected


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_a_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ValueError, match=rf"warmup_ratio must be in \[0, 1\), got {ratio}"):
        TrainingArguments(warmup_ratio=ratio)


def test_a_warmup_that_outlasts_the_run_is_reported_with_the_peak_it_reaches(capsys):
    # 4 steps run at 0/30, 1/30, 2/30, 3/30 of the learning rate: the peak is 1e-3 * 3/30 = 1e-4
    TrainingArguments(warmup_steps=30, learning_rate=1e-3).num_warmup_steps(4)
    err = capsys.readouterr().err
    assert "the warmup (30 steps) is not shorter than the run (4 steps)" in err
    assert "peaks at 0.0001, not 0.001" in err
    TrainingArguments(warmup_steps=3, learning_rate=1e-3).num_warmup_steps(4)  # step 3 runs at 3/3: no warning
    assert capsys.readouterr().err == ""


def test_the_trainer_schedules_the_ratio_and_warns(tmp_path, capsys):
    tokenizer = Tokenizer.train(["one two three four five six"] * 4, vocab_size=60, num_sentinels=2)
    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16,
                                                num_layers=1, num_heads=2))
    records = [{"prompt": "one two", "completion": "three"}] * 8
    args = TrainingArguments(output_dir=str(tmp_path / "r"), max_steps=4, batch_size=4, learning_rate=1e-2,
                             warmup_ratio=0.5, progress=False)
    trainer = Trainer(model, tokenizer, args, records)
    lrs = []
    for _ in range(4):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.scheduler.step()
    assert lrs == pytest.approx([0.0, 5e-3, 1e-2, 5e-3])  # 2 warmup steps, then linear decay to 0 at step 4
    assert "warning" not in capsys.readouterr().err
    Trainer(model, tokenizer, TrainingArguments(output_dir=str(tmp_path / "s"), max_steps=4, batch_size=4,
                                                warmup_steps=10, progress=False), records)
    assert "the warmup (10 steps) is not shorter than the run (4 steps)" in capsys.readouterr().err


def test_finetune_has_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "--warmup-ratio" in capsys.readouterr().out
