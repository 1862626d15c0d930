"""Honest resuming: compare the options of a run with those its checkpoint was made with.

A checkpoint records the ``TrainingArguments`` it was trained with and a fingerprint of the
training data. When a run resumes, every option that differs is sorted into one of two kinds:

* **applied** (and reported): the learning rate and its schedule (warmup, length), weight decay,
  gradient clipping, evaluation, saving and logging. These act on steps still to come, so a
  resumed run can, for instance, continue with a lower learning rate after the nan/inf guard
  stopped it;
* **refused** (with the reason): the batch size, gradient accumulation, seed, token limits, the
  optimizer and the data itself. The checkpoint's position in the data ("epoch 2, batch 31")
  counts batches of a given size in an order drawn from the seed, and the optimizer's moments
  belong to one optimizer; changing any of them would not continue *this* run, it would quietly
  start a different one.

Before any of that, a resume is prepared (``prepare_resume``), in this order: a save that was
killed between its two renames left the last good checkpoint as ``checkpoint.old-XXXX``, and it
is put back *before* the path given to ``--resume`` is checked (otherwise the check answers "no
such checkpoint" about a checkpoint that is right there); then the checkpoint's weights are
compared, by their header alone, with the model this run trains. Both happen before the run
writes its first byte, so a refused resume leaves the run folder as it was.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
from tqdm.auto import tqdm

from ..files import read_safetensors_header
from .checkpoint import MODEL_FILE, check_fits, clean_stale_temporaries

# Options that change which examples come next or what the saved state means.
REFUSED = {
    "batch_size": "the checkpoint's position in the data counts batches of the old size",
    "gradient_accumulation_steps": "the checkpoint's position in the data counts micro-batches of the old step",
    "seed": "the data order of every epoch is drawn from the seed",
    "max_source_length": "the training examples were cut at the old token limit",
    "max_target_length": "the training examples were cut at the old token limit",
    "optimizer": "the saved optimizer state (moments) belongs to the old optimizer",
}
# Recorded but not compared: where the run is written and how it shows progress.
IGNORED = {"output_dir", "progress"}


class ResumeMismatchError(ValueError):
    """Resuming would silently change the run: an option or the data differs from the checkpoint's."""


def data_fingerprint(pairs) -> str:
    """A short SHA-256 of the tokenized training examples (source ids, target ids), in order."""
    digest = hashlib.sha256()
    for source, target in pairs:
        digest.update(np.asarray(source, dtype=np.int64).tobytes() + b"|")
        digest.update(np.asarray(target, dtype=np.int64).tobytes() + b";")
    return digest.hexdigest()[:16]


def compare_options(saved: dict | None, current: dict, saved_fingerprint: str | None, fingerprint: str,
                    checkpoint: str) -> dict:
    """The options that differ and will be applied, ``{name: (old, new)}``.

    Args:
        saved: the checkpoint's recorded TrainingArguments (None for a checkpoint that has none).
        current: this run's TrainingArguments as a dict.
        saved_fingerprint / fingerprint: ``data_fingerprint`` of the checkpoint's data and of this run's.
        checkpoint: the checkpoint directory, named in the error.

    Raises:
        ResumeMismatchError: a refused option differs, or the data does; the message gives the reason
            and the way out.
    """
    if saved is None:
        return {}
    where = f"{checkpoint}/trainer_state.json"
    for name, reason in REFUSED.items():
        if name in saved and saved[name] != current[name]:
            raise ResumeMismatchError(
                f"{where}: cannot resume with {name}={current[name]!r}: the checkpoint was made with "
                f"{saved[name]!r}, and {reason}. Resume with {name}={saved[name]!r} (--{name.replace('_', '-')} "
                f"{saved[name]}), or start a new run.")
    if saved_fingerprint is not None and saved_fingerprint != fingerprint:
        raise ResumeMismatchError(
            f"{where}: cannot resume on different training data: the checkpoint's position in the data "
            f"refers to other examples (fingerprint {saved_fingerprint}, now {fingerprint}). Resume with "
            "the same data, or start a new run from the checkpoint's weights instead.")
    return {name: (saved[name], value) for name, value in current.items()
            if name not in IGNORED and name in saved and saved[name] != value}


def recorded_options(args) -> dict:
    """The TrainingArguments a checkpoint records, to compare on resume."""
    return {k: v for k, v in args.to_dict().items() if k not in IGNORED}


def report_resume(log, checkpoint: str, step: int, changed: dict) -> None:
    """Print, and write to the training log, which options differ from the checkpoint's (all applied)."""
    if changed:
        text = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in sorted(changed.items()))
        tqdm.write(f"resuming from step {step} of {checkpoint} with changed options (applied): {text}")
    else:
        tqdm.write(f"resuming from step {step} of {checkpoint} with the same options")
    log.write({"step": step, "resumed_from": os.path.abspath(checkpoint),
               "changed": {k: list(v) for k, v in changed.items()}})


def apply_current_options(optimizer, scheduler, learning_rate: float, weight_decays: list, step: int) -> None:
    """After loading a checkpoint, make this run's options rule the steps to come.

    The checkpoint restored the optimizer's param groups (lr, weight decay) as they were; the
    schedule is recomputed from this run's learning rate at the restored step (for unchanged
    options that is the very same lr), and each group's weight decay is reset to this run's.
    """
    for group, decay in zip(optimizer.param_groups, weight_decays):
        group["weight_decay"] = decay
        group["initial_lr"] = learning_rate
    scheduler.base_lrs = [learning_rate] * len(optimizer.param_groups)
    scheduler.last_epoch = step - 1
    scheduler.step()  # lr = learning_rate x lambda(step)


def prepare_resume(checkpoint: str) -> None:
    """Before a resume path is checked: put back a checkpoint that an interrupted save left aside.

    Call it while holding the run folder's lock (``minillm.runlock``): a save in progress in
    another process looks exactly like an interrupted one.

    Raises:
        FileNotFoundError: no checkpoint folder at ``checkpoint``, even after recovery.
    """
    run_dir = os.path.dirname(os.path.abspath(checkpoint))
    for name in clean_stale_temporaries(run_dir):
        tqdm.write(f"{run_dir}: {name}, left by an interrupted save")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--resume {checkpoint}: no such checkpoint directory")


def check_checkpoint_fits(checkpoint: str, model, peft: bool = False) -> None:
    """Before anything is written: the checkpoint's weights (their header alone) fit the run's model.

    Args:
        model: the model to be trained (a PEFT run: its base model, before the adapter is added).
        peft: whether this run trains a PEFT adapter (``--method`` other than ``full``).

    Raises:
        ResumeMismatchError / KeyError / ValueError: the weights are not of the kind or shape the
            run trains (the message summarises: counts and the first few names).
    """
    model_path = os.path.join(checkpoint, MODEL_FILE)
    if not os.path.isfile(model_path):
        return  # load_checkpoint names the missing file
    if not peft:
        check_fits(model_path, model)
        return
    names = list(read_safetensors_header(model_path))
    plain = [name for name in names if name in model.state_dict()]  # a PEFT model's names all have prefixes
    if plain:
        raise ResumeMismatchError(
            f"{model_path} holds a full model's weights ({len(plain)} tensors, e.g. {', '.join(plain[:2])}), but "
            "this run trains a PEFT adapter; resume with --method full, or start a new run from those "
            "weights (--model)")
