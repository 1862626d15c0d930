"""What a training run is told (``TrainingArguments``) and what it reports back (``TrainResult``).

The names follow ``transformers.TrainingArguments`` where one exists, so that a learner's
knowledge transfers. Everything is plain JSON: the run directory keeps a ``training_args.json``
that says exactly how the run was made, and ``TrainingArguments.load`` reads it back.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field

from ..files import atomic_write_text, make_folder, read_json
from ..optim import SCHEDULE_NAMES

OPTIMIZERS = ("adamw", "adafactor")


@dataclass
class TrainingArguments:
    """Options of a ``Trainer`` run (all JSON-serializable).

    Args:
        output_dir: the run directory (model, tokenizer, checkpoints, log, plot).
        max_steps: optimizer steps to take; 0 means "use num_epochs".
        num_epochs: passes over the training data (may be fractional) when max_steps is 0.
        batch_size: examples per micro-batch.
        gradient_accumulation_steps: micro-batches per optimizer step; the effective batch is
            batch_size x gradient_accumulation_steps examples.
        learning_rate: the peak learning rate (reached after warmup).
        weight_decay: decoupled weight decay; 1-D parameters (norms, biases) are never decayed.
        optimizer: "adamw" or "adafactor" (with a fixed lr, as Hugging Face recommends for T5).
        lr_schedule: a name from ``minillm.optim.SCHEDULE_NAMES`` ("linear", "cosine", ...).
        warmup_steps: steps of linear warmup from lr 0.
        warmup_ratio: the warmup as a share of the run's steps, in [0, 1); when > 0 it decides
            (transformers lets warmup_steps win instead, but here warmup_steps has a default).
        max_grad_norm: clip the global gradient norm to this; 0 disables clipping.
        eval_every / save_every / log_every: in optimizer steps; 0 means "only at the end".
        seed: seeds dropout and the data order.
        max_source_length / max_target_length: token limits (longer texts are cut, and counted).
        eval_max_new_tokens: generation length when evaluating.
        eval_num_examples: how many eval records are scored (generation is the slow part).
        eval_batch_size: examples per batch when evaluating.
        metric_for_best: "eval_loss" (lower is better) or a metric name such as "score" or
            "translation/bleu" (higher is better); decides which model is kept in ``best/``.
        progress: show a tqdm progress bar.
        shard_optimizer: under ``mpiexec -n N``, keep each rank's share of the optimizer state
            only (ZeRO stage 1, ``minillm.distributed.ZeroRedundancyOptimizer``); batch_size
            is then, as always under MPI, the global batch over all ranks.
    """

    output_dir: str = "runs/run"
    max_steps: int = 0
    num_epochs: float = 1.0
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    lr_schedule: str = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 0
    save_every: int = 0
    log_every: int = 10
    seed: int = 0
    max_source_length: int = 256
    max_target_length: int = 64
    eval_max_new_tokens: int = 64
    eval_num_examples: int = 100
    eval_batch_size: int = 64
    metric_for_best: str = "eval_loss"
    progress: bool = True
    shard_optimizer: bool = False

    def __post_init__(self):
        """Reject impossible settings early, with the field's name in the message.

        Every number is checked to be finite: ``nan < 0`` is False, so without the check a NaN
        learning rate would pass a range test and turn every weight NaN at step 1.
        """
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            if kind is float and not (type(value) in (int, float) and math.isfinite(value)):
                raise ValueError(f"TrainingArguments.{f.name} must be a finite number, got {value!r}")
            if kind in (int, bool, str) and type(value) is not kind:
                raise ValueError(f"TrainingArguments.{f.name} must be of type {kind.__name__}, got {value!r}")
        positive = ("batch_size", "gradient_accumulation_steps", "eval_batch_size", "max_source_length",
                    "max_target_length", "eval_max_new_tokens")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainingArguments.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "warmup_steps", "eval_every", "save_every", "log_every",
                     "eval_num_examples"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainingArguments.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps == 0 and not self.num_epochs > 0:
            raise ValueError("TrainingArguments: set max_steps > 0 or num_epochs > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainingArguments.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in SCHEDULE_NAMES:
            raise ValueError(f"TrainingArguments.lr_schedule must be one of {SCHEDULE_NAMES}, "
                             f"got {self.lr_schedule!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingArguments.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "max_grad_norm", "num_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainingArguments.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainingArguments.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def num_warmup_steps(self, total_steps: int) -> int:
        """The warmup of a run of ``total_steps``: ceil(warmup_ratio x total) when the ratio is set,
        else warmup_steps. A warmup that does not end before the run does is reported on stderr: the
        learning rate would never reach learning_rate: step t (from 0) runs at t / warmup of it, so
        30 warmup steps in a 4-step run peak at 3/30."""
        warmup = math.ceil(self.warmup_ratio * total_steps) if self.warmup_ratio > 0 else self.warmup_steps
        if warmup >= total_steps > 0:
            peak = self.learning_rate * (total_steps - 1) / warmup
            print(f"warning: the warmup ({warmup} steps) is not shorter than the run ({total_steps} steps), so the "
                  f"learning rate peaks at {peak:.3g}, not {self.learning_rate:g}; lower --warmup-steps or use "
                  "--warmup-ratio", file=sys.stderr)
        return warmup

    @property
    def greater_is_better(self) -> bool:
        """Losses are minimized; every other metric (ROUGE, BLEU, accuracy, score) is maximized."""
        return not self.metric_for_best.endswith("loss")

    def to_dict(self) -> dict:
        """The arguments as a plain dict (what ``training_args.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "TrainingArguments") -> "TrainingArguments":
        """Build from a dict; an unknown key is an error naming the key and where it came from."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def save(self, path: str) -> None:
        """Write the arguments as indented JSON (atomically; a symlink at ``path`` is replaced, not followed)."""
        make_folder(os.path.dirname(os.path.abspath(path)))
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str) -> "TrainingArguments":
        """Read ``training_args.json`` back (a regular file, bounded, no key given twice)."""
        return cls.from_dict(read_json(path, "training_args.json"), source=path)


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns.

    Attributes:
        global_step: optimizer steps done (counting those before a resume).
        train_loss: mean training loss over the steps of this call.
        metrics: the last evaluation's results ({} if there was no eval data).
        best_metric / best_step: the best value of ``metric_for_best`` and when it was reached.
        interrupted: True when Ctrl-C (KeyboardInterrupt) stopped the run; a checkpoint was saved.
        output_dir: the run directory.
    """

    global_step: int
    train_loss: float
    metrics: dict = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    interrupted: bool = False
    output_dir: str = ""


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became nan/inf; training stopped without saving the bad state.

    Attributes:
        step: the optimizer step (1-based) whose loss was not finite.
        checkpoint: the last good checkpoint directory, or None if none was saved yet.
    """

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint
