"""benchmarks/forgetting.py: its training loop (warmup, linear decay, clipping), the LoRA arm that
can learn the held-out task (all linear layers plus a trainable copy of lm_head: it must update the
adapters and the lm_head copy, leave every base weight as it was, and print the arm's loss curve),
the format-collapse measure and the computed verdicts."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("forgetting", REPO / "benchmarks" / "forgetting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_setup(fg):
    import minillm  # noqa: PLC0415
    from minillm.data import Tokenizer  # noqa: PLC0415
    from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: PLC0415

    minillm.manual_seed(0)
    pairs = fg.records("antonym", 16, 0)
    tokenizer = Tokenizer.train([t for p in pairs for t in p], vocab_size=200, num_sentinels=2)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                      dropout_rate=0.0)
    return pairs, tokenizer, T5ForConditionalGeneration(config)


def test_lora_all_linear_arm_trains_its_lm_head_copy_and_leaves_the_base_alone(capsys):
    fg = load_benchmark()
    from minillm.peft import LoraConfig, get_peft_model  # noqa: PLC0415

    pairs, tokenizer, model = tiny_setup(fg)
    base_before = {k: v.copy() for k, v in model.state_dict().items()}
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, modules_to_save=["lm_head"],
                                            target_modules=["q", "k", "v", "o", "wi", "wo"]))
    head = dict(lora.named_parameters())["base_model.lm_head.modules_to_save.default.weight"]
    head_before = head.data.copy()
    fg.train(lora, pairs, tokenizer, steps=8, lr=3e-3, batch_size=4, seed=0, label="LoRA arm")

    assert np.abs(head.data - head_before).max() > 0, "the lm_head copy did not train"
    base_after = model.state_dict()
    frozen = [k for k in base_after if "lora_" not in k and "modules_to_save" not in k]
    assert len(frozen) == len(base_before)
    for key in frozen:
        original = key.replace(".base_layer", "")
        assert np.array_equal(base_after[key], base_before[original]), f"base weight {original} changed"
    printed = capsys.readouterr().out
    assert "LoRA arm: lr 0.003, 8 steps, mean loss per 2 steps" in printed
    assert len(printed.split("mean loss per 2 steps")[1].split()) == 4  # one mean per 2 of the 8 steps


def test_training_loop_lowers_the_loss_of_the_held_out_task():
    fg = load_benchmark()
    pairs, tokenizer, model = tiny_setup(fg)
    first = fg.train(model, pairs, tokenizer, steps=1, lr=1e-3, batch_size=16, seed=0)
    last = fg.train(model, pairs, tokenizer, steps=60, lr=1e-2, batch_size=16, seed=0)
    assert last < 0.7 * first


def test_training_loop_warms_up_decays_linearly_to_zero_and_clips(monkeypatch):
    fg = load_benchmark()
    pairs, tokenizer, model = tiny_setup(fg)
    lrs, grad_norms, norms_before = [], [], []

    class Recording(fg.AdamW):
        def step(self):
            lrs.append(self.param_groups[0]["lr"])
            grads = [p.grad for p in self.param_groups[0]["params"] if p.grad is not None]
            grad_norms.append(float(np.sqrt(sum(float((g * g).sum()) for g in grads))))
            super().step()

    def recording_clip(params, max_norm):
        norms_before.append(clip(params, max_norm))
        return norms_before[-1]

    clip = fg.clip_grad_norm_
    monkeypatch.setattr(fg, "AdamW", Recording)
    monkeypatch.setattr(fg, "clip_grad_norm_", recording_clip)
    fg.train(model, pairs, tokenizer, steps=20, lr=1e-2, batch_size=4, seed=0)
    # 20 steps: warmup over 2 (a tenth), lr 0 then 1e-2 / 2, then (20 - t) / 18 of 1e-2 down to 1/18 of it
    expected = [0.0, 5e-3] + [1e-2 * (20 - t) / 18 for t in range(2, 20)]
    assert np.allclose(lrs, expected, rtol=0, atol=1e-12)
    assert max(norms_before) > 1.0, "no gradient needed clipping: the check below could not fail"
    assert max(grad_norms) <= 1.0 + 1e-5


class Output:
    def __init__(self, predictions):
        self.predictions, self.targets = predictions, predictions


def test_answers_in_the_new_task_form_are_counted_on_written_tasks_only():
    fg = load_benchmark()
    outputs = {"news_summary": Output(["the dog is big", "The Lions won the game."]),
               "translation": Output(["amik ka vim", "the cat sees the dog"]),
               "word_problem": Output(["7", "there are 7"]),  # "there" is not "the "
               "sentiment": Output(["the positive", "the negative"]), "same_plan": Output(["the yes", "no"])}
    assert fg.WRITTEN == ["news_summary", "translation", "word_problem"]
    assert fg.d_form_share(outputs) == 100 * 2 / 6


def stat(gain, bwt, change, form=0.0, seeds=3):
    return {"gain": gain, "bwt": bwt, "change": change, "form": (form, 0.0), "seeds": seeds}


def test_verdicts_count_lost_tasks_the_share_of_the_drop_removed_and_compare_lora_with_full():
    fg = load_benchmark()
    known, base_stderr = ["news_summary", "translation", "sentiment"], {"news_summary": 1.0, "translation": 2.0,
                                                                         "sentiment": 3.0}
    zero = (0.0, 0.0)
    stats = {fg.FULL: stat((60.0, 6.0), (-30.0, 3.0), {"news_summary": (-60.0, 3.0), "translation": (-27.0, 3.0),
                                                        "sentiment": (-3.0, 3.0), "antonym": (60.0, 6.0)}, 80.0),
             fg.MULTI: stat((30.0, 3.0), (-6.0, 3.0), {"news_summary": (-4.0, 1.0), "translation": (+2.0, 1.0),
                                                       "sentiment": (0.0, 1.0), "antonym": (30.0, 3.0)}),
             "LoRA q,v": stat((0.0, 0.0), (-20.0, 3.0), {"news_summary": (-50.0, 3.0), "translation": (-10.0, 3.0),
                                                         "sentiment": (0.0, 3.0), "antonym": zero}, 95.0),
             "LoRA q,v, adapter off": stat(zero, zero, {t: zero for t in known + ["antonym"]})}
    lines = fg.verdict(stats, known, base_stderr)
    # full: news_summary -60 < -2 * hypot(1, 3 / sqrt 3); translation -27 < -2 * hypot(2, sqrt 3); sentiment
    # -3 is within 2 * hypot(3, sqrt 3) = 6.9
    assert "lowered 2 of 3 known held-in tasks" in lines[0] and "(news_summary, translation)" in lines[0]
    assert "is missed" in lines[0]
    # on those two, full fell (60 + 27) / 2 = 43.5 and multitask (4 + 0) / 2 = 2.0: 95% removed
    multi = next(line for line in lines if line.startswith(fg.MULTI))
    assert "fell 2.0 points on average against 43.5: 95% of the drop removed (target >= 70%: met)" in multi
    lora = fg.lora_verdict(stats, {fg.D_FORM: 0.0}, known)
    # BWT -20 vs -30: difference +10 > 2 * hypot(3, 3) / sqrt 3 = 4.9, so LoRA forgot less
    assert lora == ["LoRA q,v, adapter on, forgot less than full fine-tuning: BWT -20.0 against -30.0 (difference "
                    "+10.0, s.e. 2.4); 95% of its written held-in answers took antonym's form (full fine-tuning 80%, "
                    "the base 0%); with the adapter off, every score is exactly the base's: the frozen base is "
                    "untouched."]
    stats["LoRA q,v"]["bwt"] = (-27.0, 3.0)  # difference +3 < 4.9
    assert "forgot as much as full fine-tuning" in fg.lora_verdict(stats, {fg.D_FORM: 0.0}, known)[0]
    stats["LoRA q,v, adapter off"]["change"]["sentiment"] = (-1.0, 0.5)
    assert "the base weights changed" in fg.lora_verdict(stats, {fg.D_FORM: 0.0}, known)[0]
    assert fg.lora_verdict(stats, {fg.D_FORM: 0.0}, []) == []


def test_plot_draws_the_base_and_each_arm_with_the_adapter_on(tmp_path):
    pytest.importorskip("matplotlib")
    fg = load_benchmark()
    tasks = fg.OLD_TASKS + [fg.NEW_TASK]
    arm = {"mean": {t: 50.0 for t in tasks}, "change": {t: (-10.0, 2.0) for t in tasks}, "seeds": 3}
    stats = {fg.FULL: arm, "LoRA q,v": arm, "LoRA q,v, adapter off": arm}
    path = fg.plot_scores(str(tmp_path / "scores.png"), {t: 60.0 for t in tasks}, {t: 1.0 for t in tasks}, stats)
    assert path == str(tmp_path / "scores.png") and (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"
