"""Checkpoints: resuming is bit-identical to never stopping, and a failed save loses nothing."""
import json
import os

import numpy as np
import pytest

import minillm
from minillm import ops
from minillm.training import checkpoint
from minillm.training.checkpoint import load_checkpoint, save_checkpoint
from minillm.nn import Dropout, Linear, Module
from minillm.optim import AdamW, get_scheduler

TOTAL_STEPS = 8


class MLP(Module):
    """Linear → ReLU → Dropout → Linear: dropout makes the result depend on the RNG state."""

    def __init__(self, d_in=6, d_hidden=16, n_classes=3):
        super().__init__()
        self.fc1 = Linear(d_in, d_hidden)
        self.dropout = Dropout(0.3)
        self.fc2 = Linear(d_hidden, n_classes)

    def forward(self, x):
        return self.fc2(self.dropout(ops.relu(self.fc1(x))))


def batches():
    """Fixed data, drawn from its own generator so that it never touches minillm's RNG."""
    rng = np.random.default_rng(123)
    return [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, size=8))
            for _ in range(TOTAL_STEPS)]


def build(seed):
    minillm.manual_seed(seed)
    model = MLP()
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=2, num_training_steps=TOTAL_STEPS)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, data):
    for x, y in data:
        loss = ops.cross_entropy(model(minillm.tensor(x)), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_resume_is_bit_identical_to_uninterrupted_training(tmp_path):
    data = batches()
    model, optimizer, scheduler = build(seed=0)
    train(model, optimizer, scheduler, data)

    first, opt1, sched1 = build(seed=0)
    train(first, opt1, sched1, data[:3])
    save_checkpoint(tmp_path / "ckpt", first, opt1, sched1, step=3, extra={"epoch": 0, "note": "mid-run"})

    # A fresh process would start from another seed: a different init and a different dropout stream.
    resumed, opt2, sched2 = build(seed=999)
    info = load_checkpoint(tmp_path / "ckpt", resumed, opt2, sched2)
    assert info == {"step": 3, "extra": {"epoch": 0, "note": "mid-run"}}
    train(resumed, opt2, sched2, data[3:])

    for (name, p), (_, q) in zip(model.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert sched2.get_last_lr() == scheduler.get_last_lr()


def test_checkpoint_layout_is_safetensors_plus_json(tmp_path):
    model, optimizer, scheduler = build(seed=0)
    train(model, optimizer, scheduler, batches()[:1])
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, step=1)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["model.safetensors", "optimizer.safetensors",
                                                     "trainer_state.json"]
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary directories left behind
    from safetensors.numpy import load_file
    assert set(load_file(tmp_path / "ckpt" / "model.safetensors")) == set(model.state_dict())
    arrays = load_file(tmp_path / "ckpt" / "optimizer.safetensors")
    assert set(arrays) == {f"state.{i}.{name}" for i in range(4) for name in ("exp_avg", "exp_avg_sq")}
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["step"] == 1 and state["scheduler"]["last_epoch"] == 1
    assert state["optimizer"]["state"]["0"] == {"step": 1}


def test_failure_halfway_through_a_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, optimizer, scheduler = build(seed=0)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, step=0)
    saved = {k: v.copy() for k, v in model.state_dict().items()}
    train(model, optimizer, scheduler, batches()[:2])

    real_write = checkpoint._write_safetensors

    def write_then_crash(path, arrays):  # the model file is written, then the optimizer's fails
        if path.endswith("optimizer.safetensors"):
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError("disk full")
        real_write(path, arrays)

    monkeypatch.setattr(checkpoint, "_write_safetensors", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, step=2)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["ckpt"]
    fresh, opt, sched = build(seed=5)
    assert load_checkpoint(tmp_path / "ckpt", fresh, opt, sched)["step"] == 0
    for name, p in fresh.named_parameters():
        np.testing.assert_array_equal(p.data, saved[name], err_msg=name)


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    model, optimizer, scheduler = build(seed=0)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, step=0)
    train(model, optimizer, scheduler, batches()[:1])
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, step=1)
    assert os.listdir(tmp_path) == ["ckpt"]
    fresh, opt, sched = build(seed=5)
    assert load_checkpoint(tmp_path / "ckpt", fresh, opt, sched)["step"] == 1
    np.testing.assert_array_equal(fresh.fc1.weight.data, model.fc1.weight.data)


def test_model_only_checkpoint_needs_no_optimizer(tmp_path):
    model, _, _ = build(seed=0)
    save_checkpoint(tmp_path / "ckpt", model)
    fresh, _, _ = build(seed=1)
    assert load_checkpoint(tmp_path / "ckpt", fresh) == {"step": 0, "extra": {}}
    np.testing.assert_array_equal(fresh.fc2.bias.data, model.fc2.bias.data)


def test_missing_directory_or_file_names_the_path(tmp_path):
    model, _, _ = build(seed=0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere", model)
    save_checkpoint(tmp_path / "ckpt", model)
    os.remove(tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ckpt", model)


def test_key_mismatch_lists_the_keys(tmp_path):
    save_checkpoint(tmp_path / "ckpt", MLP())

    class Other(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(6, 16)
            self.head = Linear(16, 3)

    with pytest.raises(KeyError, match=r"fc2\.weight.*head\.weight|head\.weight.*fc2\.weight"):
        load_checkpoint(tmp_path / "ckpt", Other())
