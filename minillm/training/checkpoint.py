"""Checkpoints: save and restore a training run exactly, atomically, without pickle.

A checkpoint is a directory of three files:

    model.safetensors      the model's parameters (``checkpoint_tensors``: each tied weight once;
                           of a PEFT model only what trains, as its frozen base has a folder of its own)
    optimizer.safetensors  the optimizer's arrays, keyed "state.<param_index>.<name>" (e.g. state.0.exp_avg)
    trainer_state.json     step, scheduler state, RNG state, the optimizer's scalars and param
                           groups, and the user's ``extra`` dict

Loading restores parameters, optimizer moments, schedule position and random-number generator,
so training resumed from step N continues bit for bit as if it had never stopped.

Why "atomic": a crash (or Ctrl-C, or a full disk) in the middle of saving must never destroy the
last good checkpoint. Every file is written to a temporary name, flushed and fsync'ed, then
renamed with ``os.replace`` (a rename within one file system is atomic; ``minillm.files``). The whole directory is
built as ``<dir>.tmp-XXXX`` and swapped in by renames too: the old checkpoint is moved aside,
the new one moved in, and only then is the old one deleted.

safetensors and JSON hold only arrays and plain values. Unlike pickle, loading them cannot
run code, so a downloaded checkpoint is safe to open.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import numpy as np

from .. import backend
from ..files import (atomic_write_text, fsync_directory, load_safetensors, mode_for, read_json,
                     read_safetensors_header, save_safetensors)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- files
def checkpoint_tensors(model) -> dict:
    """Name -> array of what a checkpoint keeps: each parameter once (a tied weight under its first
    name, as transformers stores it), and of a model that marks itself ``checkpoint_trainable_only``
    (a PeftModel) only the parameters that train: its frozen base is rebuilt from the base folder."""
    partial = getattr(model, "checkpoint_trainable_only", False)
    return {name: p.data for name, p in model.named_parameters() if p.requires_grad or not partial}


def _write_safetensors(path: str, arrays: dict) -> None:
    """Save name -> array to ``path`` atomically (arrays copied to the CPU, made contiguous)."""
    arrays = {k: np.ascontiguousarray(backend.to_device(v, "cpu")) for k, v in arrays.items()}
    save_safetensors(path, arrays, metadata={"format": "np"})


def _write_json(path: str, obj: dict) -> None:
    """Save ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def clean_stale_temporaries(output_dir: str) -> list[str]:
    """Remove what an interrupted save left in a run directory; returns the names removed.

    A crash in ``save_checkpoint`` can leave ``checkpoint.tmp-XXXX`` (a new checkpoint never swapped
    in) and, in the instant between its two renames, ``checkpoint.old-XXXX`` with no ``checkpoint``
    beside it: that one *is* the last good checkpoint, so it is renamed back instead of deleted.
    ``atomic_write`` leaves ``<file>.XXXX.tmp`` files. Nothing else is touched.
    """
    if not os.path.isdir(output_dir):
        return []
    removed = []
    for folder in (output_dir, os.path.join(output_dir, "best")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            old = re.fullmatch(r"(.+)\.old-[A-Za-z0-9_]+", name)
            if old and os.path.isdir(path) and not os.path.exists(os.path.join(folder, old.group(1))):
                os.replace(path, os.path.join(folder, old.group(1)))  # the last good checkpoint: restore it
                removed.append(f"{name} (restored as {old.group(1)})")
            elif (old or re.fullmatch(r".+\.tmp-[A-Za-z0-9_]+", name)) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(name)
            elif re.fullmatch(r".+\.[A-Za-z0-9_]+\.tmp", name) and os.path.isfile(path):
                os.remove(path)
                removed.append(name)
    return removed


def check_fits(model_path: str, model) -> None:
    """Compare a checkpoint's tensor names and shapes (its header only) with ``model``'s state_dict.

    Raises:
        KeyError / ValueError: names differ / only shapes differ. The message names the file and
            gives the counts of missing, unexpected and misshapen tensors and the first few names
            of each (a full list of a T5's names runs to pages).
    """
    wanted = {name: tuple(np.shape(value)) for name, value in checkpoint_tensors(model).items()}
    not_kept = set(model.state_dict()) - set(wanted)  # aliases and a frozen base (older checkpoints hold them)
    saved = {name: shape for name, (_, shape) in read_safetensors_header(model_path).items() if name not in not_kept}
    problems = describe_mismatch(wanted, saved)
    if problems:
        error = KeyError if set(saved) != set(wanted) else ValueError
        raise error(f"{model_path} does not match the model: {problems}")


def describe_mismatch(wanted: dict, saved: dict, shown: int = 3) -> str:
    """"" when ``saved`` has exactly ``wanted``'s names and shapes, else a summary of the differences."""
    missing = [name for name in wanted if name not in saved]
    unexpected = [name for name in saved if name not in wanted]
    misshapen = [f"{name} {list(saved[name])} vs {list(wanted[name])}" for name in wanted
                 if name in saved and tuple(saved[name]) != tuple(wanted[name])]
    parts = []
    for names, what in ((missing, "the model needs but the file lacks"), (unexpected, "the file has but the "
                        "model lacks"), (misshapen, "of another shape (file vs model)")):
        if names:
            more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
            parts.append(f"{len(names)} tensor(s) {what}: {', '.join(names[:shown])}{more}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------- optimizer <-> files
def _split_optimizer_state(state_dict: dict) -> tuple[dict, dict]:
    """Split an optimizer state_dict into flat arrays {"state.0.exp_avg": ...} and JSON-able scalars."""
    arrays, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return arrays, {"state": scalars, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(arrays: dict, scalars: dict) -> dict:
    """Inverse of ``_split_optimizer_state``."""
    state: dict = {int(i): dict(values) for i, values in scalars["state"].items()}
    for key, value in arrays.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


# ---------------------------------------------------------------------------------- public API
def save_checkpoint(directory, model, optimizer=None, scheduler=None, step: int = 0,
                    extra: dict | None = None) -> str:
    """Save model, optimizer, scheduler, step, RNG state and ``extra`` to ``directory``, atomically.

    If ``directory`` already holds a checkpoint it is replaced only once the new one is complete.

    Args:
        directory: the checkpoint directory (created; its parent must exist or is created).
        model: a ``minillm.nn.Module``.
        optimizer: a ``minillm.optim.Optimizer`` or None.
        scheduler: a schedule with ``state_dict()`` (e.g. ``LambdaLR``) or None.
        step: the training step reached.
        extra: any JSON-able dict (epoch, best metric, config...).

    Returns:
        The checkpoint directory's path.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    trainer_state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "rng_state": backend.get_rng_state(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "optimizer": None,
        "extra": extra or {},
    }
    tmp_dir = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".tmp-", dir=parent)
    os.chmod(tmp_dir, mode_for(parent, is_dir=True))  # the run folder's mode, not mkdtemp's 0700
    old_dir = None
    try:
        _write_safetensors(os.path.join(tmp_dir, MODEL_FILE), checkpoint_tensors(model))
        if optimizer is not None:
            arrays, scalars = _split_optimizer_state(optimizer.state_dict())
            _write_safetensors(os.path.join(tmp_dir, OPTIMIZER_FILE), arrays)
            trainer_state["optimizer"] = scalars
        _write_json(os.path.join(tmp_dir, TRAINER_STATE_FILE), trainer_state)
        fsync_directory(tmp_dir)
        # Swap: move the old checkpoint aside, move the new one in, and only then delete the old.
        if os.path.islink(directory):  # a planted link is replaced, never written through
            os.remove(directory)
        elif os.path.exists(directory):
            old_dir = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".old-", dir=parent)
            os.rmdir(old_dir)
            os.replace(directory, old_dir)
        os.replace(tmp_dir, directory)
        fsync_directory(parent)
    except BaseException:
        if old_dir is not None and not os.path.exists(directory):
            os.replace(old_dir, directory)  # put the previous checkpoint back
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
    return directory


def _require_file(directory: str, name: str) -> str:
    """The path of ``name`` in ``directory``, or a FileNotFoundError naming what is missing."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def load_checkpoint(directory, model, optimizer=None, scheduler=None) -> dict:
    """Restore a checkpoint written by ``save_checkpoint`` into ``model`` (and optimizer, scheduler).

    Also restores minillm's random-number generator, so dropout and sampling continue the same
    random stream. The optimizer and scheduler must be built like the saved ones (same parameter
    groups); create them before loading.

    Returns:
        ``{"step": int, "extra": dict}``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (the message names the path).
        KeyError / ValueError: the model's parameter names or shapes differ from the checkpoint's
            (the message lists the keys).
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        parent, base = os.path.split(directory)
        leftovers = [n for n in os.listdir(parent) if n.startswith(base + ".old-")] if os.path.isdir(parent) else []
        hint = (f" (an interrupted save left {os.path.join(parent, leftovers[0])}: rename it to recover)"
                if leftovers else "")
        raise FileNotFoundError(f"checkpoint directory not found: {directory}{hint}")
    state_path = _require_file(directory, TRAINER_STATE_FILE)
    trainer_state = read_json(state_path, TRAINER_STATE_FILE)
    if not isinstance(trainer_state, dict) or not isinstance(trainer_state.get("step"), int):
        raise ValueError(f"{state_path}: not a minillm trainer state (expected a JSON object with an integer \"step\")")

    model_path = _require_file(directory, MODEL_FILE)
    check_fits(model_path, model)
    kept = checkpoint_tensors(model)
    arrays = {name: array for name, array in load_safetensors(model_path).items() if name in kept}
    try:
        model.load_state_dict(arrays, strict=False)  # check_fits has matched every name of ``kept``
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        raise type(error)(f"{model_path} does not match the model: {message}") from error

    if optimizer is not None:
        if trainer_state.get("optimizer") is None:
            raise ValueError(f"checkpoint {directory} was saved without an optimizer")
        arrays = load_safetensors(_require_file(directory, OPTIMIZER_FILE))
        optimizer.load_state_dict(_join_optimizer_state(arrays, trainer_state["optimizer"]))
    if scheduler is not None:
        if trainer_state.get("scheduler") is None:
            raise ValueError(f"checkpoint {directory} was saved without a scheduler")
        scheduler.load_state_dict(trainer_state["scheduler"])
    backend.set_rng_state(trainer_state["rng_state"])
    return {"step": int(trainer_state["step"]), "extra": trainer_state.get("extra") or {}}
