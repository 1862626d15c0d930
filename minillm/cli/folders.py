"""Where the commands find things and write things: model folders, tokenizers, run directories.

One rule for every command:

* a **model folder** is ``DIR`` itself or ``DIR/model``, whichever holds ``config.json``;
* its **tokenizer** is the first ``tokenizer.json`` in ``DIR``, the model folder, ``DIR/tokenizer``
  (or the file or folder given with ``--tokenizer``), and it must not make ids the model's
  embedding lacks;
* a **PEFT adapter** (``adapter_config.json``) in ``DIR`` is loaded on top of the base model,
  which a PEFT run directory names in ``base_model.json`` (path + weights fingerprint, checked:
  ``peft/base_reference.py``), or holds itself when trained with ``--copy-base``;
* a **run directory** (``--out``) that already holds a run is never overwritten by accident:
  the command stops and offers ``--resume DIR/checkpoint`` or ``--overwrite``; ``convert``
  follows the same rule, and never writes into the folder it reads;
* a command that writes a run directory holds its **run lock** (``minillm.runlock``) from before
  the checks until it exits, so a second process on the same folder is refused at once;
* the model's **special ids** (``config.json``'s ``pad_token_id``, ``eos_token_id``,
  ``decoder_start_token_id``) must be the tokenizer's: a model that stops on another id than
  the tokenizer's ``</s>`` would generate past the end silently.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import sys
import tempfile

from .. import runlock
from ..data import Tokenizer
from ..files import atomic_write_text, make_folder
from ..models import T5ForConditionalGeneration
from ..peft.base_reference import BASE_REFERENCE, resolve_base


class UsageError(ValueError):
    """A problem with what the user asked for; ``main`` prints it and exits with code 2."""


# What a training run writes into its run directory (``--overwrite`` removes exactly these).
RUN_FILES = ("checkpoint", "best", "training_args.json", "log.jsonl", "results.json", "run_config.json",
             "model.safetensors", "config.json", "adapter_model.safetensors", "adapter_config.json",
             "loss_curve.png", "quickstart_config.json", "tokenizer.json", "tokenizer_config.json", "base_model.json")
# The files that mean "a run is here" (a folder with only a tokenizer is not a run).
RUN_MARKERS = ("checkpoint", "training_args.json", "results.json", "log.jsonl", "model.safetensors",
               "adapter_model.safetensors")


# ---------------------------------------------------------------------------------- reading
def find_model_dir(path: str) -> str:
    """The folder holding config.json: ``path`` itself or its ``model/`` sub-folder."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such directory (expected a minillm run directory or a "
                                "Hugging Face T5 folder)")
    for candidate in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    if os.path.isfile(os.path.join(path, BASE_REFERENCE)):  # a PEFT run that names its base
        return resolve_base(path)
    raise FileNotFoundError(f"{path}: no config.json here or in {os.path.join(path, 'model')} "
                            "(expected a minillm run directory or a Hugging Face T5 folder)")


def find_tokenizer(path: str, model_dir: str) -> str:
    """The first tokenizer.json in ``path``, ``model_dir`` or ``path/tokenizer``."""
    candidates = (path, model_dir, os.path.join(path, "tokenizer"))
    for candidate in candidates:
        file = os.path.join(candidate, "tokenizer.json")
        if os.path.isfile(file):
            return file
    raise FileNotFoundError(f"{path}: no tokenizer.json (looked in {', '.join(dict.fromkeys(candidates))}); "
                            "pass --tokenizer, or train one with `minillm train-tokenizer` (a Hugging Face "
                            "folder needs its fast-tokenizer tokenizer.json)")


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizer from a tokenizer.json file or a folder holding one."""
    return Tokenizer.from_file(os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path)


def load_model(path: str, tokenizer_path: str | None = None, adapter_dir: str | None = None,
               trainable_adapter: bool = False):
    """(model, tokenizer) from a run directory or Hugging Face folder (see the module docstring).

    Args:
        adapter_dir: a PEFT adapter folder to load on top; default: ``path`` if it holds one.
        trainable_adapter: mark the adapter's parameters trainable (so reports count them so).
    """
    model_dir = find_model_dir(path)
    tokenizer_file = (os.path.join(tokenizer_path, "tokenizer.json") if tokenizer_path and os.path.isdir(tokenizer_path)
                      else tokenizer_path or find_tokenizer(path, model_dir))
    tokenizer = Tokenizer.from_file(tokenizer_file)
    model = T5ForConditionalGeneration.from_pretrained(model_dir)
    try:
        tokenizer.check_fits(model.config.vocab_size, os.path.join(model_dir, "config.json"))
    except ValueError as err:
        raise ValueError(f"{tokenizer_file}: {err}") from None
    check_special_ids(model.config, os.path.join(model_dir, "config.json"), tokenizer, tokenizer_file)
    if adapter_dir is None and os.path.isfile(os.path.join(path, "adapter_config.json")):
        adapter_dir = path
    if adapter_dir is not None:
        from ..peft import PeftModel  # noqa: PLC0415

        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable_adapter)
    return model, tokenizer


def check_special_ids(config, config_file: str, tokenizer, tokenizer_file: str) -> None:
    """Refuse a config.json whose special ids are not the tokenizer's, naming both files.

    T5 starts decoding from the pad id, so ``decoder_start_token_id`` must be the pad id too.
    """
    wanted = {"pad_token_id": (tokenizer.pad_token_id, "<pad>"), "eos_token_id": (tokenizer.eos_token_id, "</s>"),
              "decoder_start_token_id": (tokenizer.pad_token_id, "<pad>")}
    for name, (token_id, token) in wanted.items():
        if getattr(config, name) != token_id:
            raise ValueError(f"{config_file}: {name} is {getattr(config, name)}, but {tokenizer_file} gives "
                             f"{token} the id {token_id}; the model and its tokenizer disagree (set {name} "
                             f"to {token_id} in config.json, or use the tokenizer the model was trained with)")


# ---------------------------------------------------------------------------------- writing
def lock_run_dir(out: str) -> None:
    """Take the run lock on ``out`` (``minillm.runlock``) until the command ends; rank 0 only.

    ``command.run`` releases it (``runlock.release_all``) however the command ends. Under MPI only
    rank 0 writes, so only it locks: a refusal there ends every rank (``run_command``), and no
    rank ever waits on a lock.

    Raises:
        UsageError: ``out`` cannot be created; RunLockedError: another process holds it.
    """
    from ..distributed.trainer_hooks import is_main  # noqa: PLC0415  (imports MPI lazily)

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: is a file, not a directory")
    if is_main():
        check_writable_dir(out, "--out")  # a folder that cannot be made is named before the lock tries
        runlock.acquire(out, "minillm " + shlex.join(sys.argv[1:]))


# A start that fails changes nothing: the names each run folder held when this command began
# writing it; until training starts (``run_started``), what is new is removed if the command fails.
_STARTING: dict[str, set] = {}


def begin_run(out: str) -> None:
    """Call before a command's first write into ``out``: a failure before ``run_started`` undoes it."""
    _STARTING[os.path.abspath(out)] = set(os.listdir(out)) if os.path.isdir(out) else set()


def run_started(out: str) -> None:
    """Training begins: from here on what the run writes stays (a checkpoint must survive Ctrl-C)."""
    _STARTING.pop(os.path.abspath(out), None)


def undo_failed_start() -> list[str]:
    """Remove what commands wrote into run folders whose training never began; returns the paths.

    ``command.run`` calls it when a command ends, before releasing the run lock: after a
    successful run there is nothing left to undo, after a failed start the folder is as it was.
    """
    removed = []
    for out, before in _STARTING.items():
        for name in sorted(set(os.listdir(out)) - before - {runlock.LOCK_NAME}) if os.path.isdir(out) else []:
            path = os.path.join(out, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    _STARTING.clear()
    return removed


def check_convert_out(out: str, source: str, overwrite: bool) -> None:
    """``convert``'s rules for ``--out``: never the folder it reads, and no run replaced by accident.

    Raises:
        UsageError: ``out`` is ``source`` (or its model folder), or holds a run and there is no
            ``--overwrite``.
    """
    same = {os.path.realpath(source), os.path.realpath(os.path.join(source, "model"))}
    if os.path.realpath(out) in same:
        raise UsageError(f"--out {out}: is the folder being converted ({source}); writing there would "
                         "replace what is being read. Choose another --out")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: is a file, not a directory")
    found = [name for name in RUN_MARKERS + ("config.json", "adapter_config.json")
             if os.path.lexists(os.path.join(out, name))]
    if found and not overwrite:
        raise UsageError(f"{out} already holds a run or model ({', '.join(found)}); nothing was changed. "
                         "Use --overwrite to replace it, or choose another --out")
    check_writable_dir(out, "--out")


def check_run_dir(out: str, resume: str | None = None, overwrite: bool = False, resumable: bool = True) -> None:
    """Refuse an ``--out`` that is a file, cannot be written, or already holds a run (changes nothing).

    Raises:
        UsageError: naming ``out``; for a finished or interrupted run it offers ``--resume`` (when
            the command can resume) and ``--overwrite``.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: is a file, not a directory")
    found = [name for name in RUN_MARKERS if os.path.exists(os.path.join(out, name))]
    if found and not resume and not overwrite:
        checkpoint = os.path.join(out, "checkpoint")
        offer = (f"--resume {checkpoint} to continue it, or --overwrite to replace it"
                 if resumable and os.path.isdir(checkpoint) else "--overwrite to replace it")
        raise UsageError(f"{out} already holds a run ({', '.join(found)}); nothing was changed. "
                         f"Use {offer}.")
    check_writable_dir(out, "--out")


def clear_old_run(out: str) -> None:
    """Remove what an earlier run wrote to ``out`` (``--overwrite``): only the files a run writes."""
    for name in RUN_FILES:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):  # a file, or a link (removed itself, never what it points to)
            os.remove(path)


def check_writable_dir(path: str, flag: str) -> None:
    """Check that a file can be written in ``path``, or in the nearest folder above it that exists
    (a missing ``path`` is created later, by whoever writes it; nothing is created here).

    Raises:
        UsageError: naming ``path`` and the reason (not a directory, permission denied, ...).
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), existing)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write there ({err.strerror})") from None


def check_writable_file(path: str, flag: str) -> None:
    """Refuse an output file that is a directory or whose folder cannot be written."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), flag)


def write_run_config(args, out: str) -> None:
    """Save every option of the command to ``out/run_config.json`` (reusable with ``--config``)."""
    make_folder(out)
    options = {k: v for k, v in vars(args).items() if k not in ("func", "config", "command")}
    atomic_write_text(os.path.join(out, "run_config.json"), json.dumps(options, indent=2, default=str))
