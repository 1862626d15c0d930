"""The training loop: a plain, explicit loop you can read top to bottom (as in nanoGPT).

One optimizer step (``Trainer.optimizer_step``, one screen) is:

    for each of the gradient_accumulation_steps micro-batches:
        loss = model(**batch).loss               # forward; mean over this micro-batch's target tokens
        (loss * n_tokens / N_tokens).backward()  # weights so the sum is the mean over all N tokens
    average the gradients over the ranks         # only under mpiexec (``DataParallel``)
    clip the global gradient norm                # tames the rare exploding batch
    optimizer.step(); scheduler.step(); optimizer.zero_grad()

and around it: a progress bar, a JSONL log, evaluation every ``eval_every`` steps (loss plus the
task's metric on generated text), the best model kept in ``best/``, a resumable checkpoint every
``save_every`` steps, a guard that stops on a nan/inf loss, and Ctrl-C handling.

A run directory looks like this:

    output_dir/
      config.json, model.safetensors   the final model (``model.save_pretrained``), an HF folder
      tokenizer.json                   the tokenizer
      training_args.json               how the run was made (``TrainingArguments``)
      log.jsonl                        one JSON object per logged step / evaluation
      loss_curve.png                   train and eval loss (when matplotlib is installed)
      checkpoint/                      the last resumable checkpoint (model, optimizer, RNG, position)
      best/                            the best model by ``metric_for_best``, with its metrics.json

Resuming is exact: the checkpoint holds parameters, optimizer moments, the schedule position,
the random-number generator and the position in the data (epoch, batch), so training resumed
from step k continues bit for bit like a run that never stopped. It is also honest: options that
differ from the checkpoint's are applied and reported, or refused with the reason
(``training/resume.py``). Temporary folders that a crash left behind are removed at the start.

The Trainer works with any model that has ``forward(**batch) -> output with .loss``,
``generate(input_ids, attention_mask, max_new_tokens=...)``, ``named_parameters()``,
``state_dict()``/``load_state_dict()`` and ``train()``/``eval()`` (a PEFT wrapper does), and it
only updates parameters with ``requires_grad``.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from tqdm.auto import tqdm

from .. import backend
from ..files import atomic_write_text, own_folder
from ..distributed.trainer_hooks import DataParallel, SilentLog
from .checkpoint import clean_stale_temporaries, load_checkpoint, save_checkpoint
from ..data.collate import Batcher, as_record, collate, count_target_tokens
from ..optim import Adafactor, AdamW, clip_grad_norm_, get_scheduler
from ..evaluation.harness import generate_texts
from ..evaluation.held_out import evaluate_model
from ..evaluation.scoring import score_predictions
from .arguments import NonFiniteLossError, TrainingArguments, TrainResult
from .interrupt import DeferSigint
from .log import StepMeter, TrainingLog
from .resume import (ResumeMismatchError, apply_current_options, compare_options, data_fingerprint,
                     recorded_options, report_resume)

__all__ = ["Trainer", "TrainingArguments", "TrainResult", "NonFiniteLossError", "ResumeMismatchError"]


class Trainer:
    """Train ``model`` on ``train_data``, evaluating on ``eval_data``; see the module docstring.

    Args:
        model: the model (or PEFT wrapper) to train; see the module docstring for what it needs.
        tokenizer: a ``minillm.data.Tokenizer`` (encodes records, decodes generations, is saved).
        args: a ``TrainingArguments``.
        train_data: text records (``Record``, (prompt, completion[, task]) tuples or dicts), or
            a ready ``Batcher`` of token ids (e.g. span-corruption pairs for pretraining).
        eval_data: records to evaluate on (loss and generated-text metrics), a Batcher (loss
            only), or None.
        metric: ``metric(predictions, records) -> dict``; default ``scoring.score_predictions``
            (each task's own metric: ROUGE, BLEU, accuracy; exact match for unknown tasks).
        callbacks: functions ``callback(trainer, step, logs)`` called after every optimizer step.
            Raising KeyboardInterrupt from one stops the run like Ctrl-C does.
    """

    def __init__(self, model, tokenizer, args: TrainingArguments, train_data, eval_data=None,
                 metric=None, callbacks=()):
        self.model, self.tokenizer, self.args = model, tokenizer, args
        config = getattr(model, "config", None)
        if tokenizer is not None and hasattr(tokenizer, "check_fits") and config is not None:
            tokenizer.check_fits(config.vocab_size)  # ids past the embedding would fail deep in a step
        self.metric = metric or score_predictions
        self.callbacks = list(callbacks)
        if isinstance(train_data, Batcher):
            self.train_batches = train_data
        else:
            records = [as_record(r) for r in train_data]
            self.train_batches = Batcher.from_records(records, tokenizer, args.batch_size, args.max_source_length,
                                                      args.max_target_length, shuffle=True, seed=args.seed)
        if len(self.train_batches) == 0:
            raise ValueError("Trainer: train_data is empty")
        self.eval_data = eval_data if eval_data is None or isinstance(eval_data, Batcher) else [
            as_record(r) for r in eval_data]

        # Only parameters that require grad are optimized: PEFT freezes the base model this way.
        # Matrices first, then vectors (norms, biases): the order of the optimizer's two groups.
        self.trainable = sorted((p for _, p in model.named_parameters() if p.requires_grad), key=lambda p: p.ndim < 2)
        if not self.trainable:
            raise ValueError("Trainer: the model has no parameter with requires_grad=True")
        self.parallel = DataParallel(args.batch_size, args.shard_optimizer)  # does nothing in one process
        self.optimizer = self.parallel.wrap_optimizer(self._make_optimizer())
        self._group_weight_decay = [group["weight_decay"] for group in self.optimizer.param_groups]
        self.data_fingerprint = data_fingerprint(self.train_batches.pairs)
        steps_per_epoch = len(self.train_batches) / args.gradient_accumulation_steps
        self.total_steps = args.max_steps or max(1, math.ceil(args.num_epochs * steps_per_epoch))
        warmup = args.num_warmup_steps(self.total_steps)  # says so when the warmup outlasts the run
        self.scheduler = get_scheduler(args.lr_schedule, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)
        out = args.output_dir
        self.checkpoint_dir = os.path.join(out, "checkpoint")
        self.best_dir = os.path.join(out, "best")
        self.log = (TrainingLog(os.path.join(out, "log.jsonl"), os.path.join(out, "loss_curve.png"))
                    if self.parallel.is_main else SilentLog())  # only rank 0 writes files
        self._checkpoint_step: int | None = None  # step of the checkpoint on disk, for error messages
        self._last_metrics: dict = {}

    def _make_optimizer(self):
        """AdamW or Adafactor over the trainable parameters; no weight decay on 1-D ones (norms)."""
        args = self.args
        decay = [p for p in self.trainable if p.ndim >= 2]
        no_decay = [p for p in self.trainable if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": args.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        if not decay:
            groups = groups[1:]
        if args.optimizer == "adafactor":
            return Adafactor(groups, lr=args.learning_rate, relative_step=False, scale_parameter=False,
                             warmup_init=False)
        return AdamW(groups, lr=args.learning_rate)

    # ------------------------------------------------------------------ one step
    def optimizer_step(self, micro_batches: list, step: int, update: bool = True) -> dict:
        """One optimizer step: forward -> loss -> backward -> all-reduce -> clip -> optimizer -> schedule.

        Each micro-batch's loss is a mean over its own target tokens, so it is weighted by n_i / N
        (N: the step's target tokens, per rank under MPI): the summed gradient is then exactly the
        gradient of the mean over all N tokens, as if the micro-batches were one big batch. A
        nan/inf loss, gradient norm or learning rate stops the run before any weight changes.
        ``update=False`` stops once the gradients are in ``p.grad`` (``training_step``).
        Returns ``{"loss", "lr", "grad_norm"}``, the loss over the whole (global) batch.
        """
        batches = [b for b in micro_batches if b is not None]  # None: this rank's share is empty
        n_tokens = self.parallel.tokens_per_rank(sum(count_target_tokens(b) for b in batches))
        mean_loss = 0.0
        for batch in batches:
            loss = self.model(**batch).loss                                 # forward, loss
            value = float(loss.data)
            self._stop_unless(math.isfinite(value), f"loss is {value}", step)
            weight = count_target_tokens(batch) / n_tokens
            (loss * weight).backward()                                      # backward
            mean_loss += value * weight
        mean_loss = self.parallel.all_reduce(self.trainable, mean_loss)     # average over ranks
        if not update:
            return {"loss": mean_loss}
        grad_norm = clip_grad_norm_(self.trainable, self.args.max_grad_norm or float("inf"))  # clip
        self._stop_unless(math.isfinite(grad_norm), f"gradient norm is {grad_norm}", step)
        lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
        self._stop_unless(math.isfinite(lr) and lr >= 0, f"learning rate is {lr}", step)
        self.optimizer.step()                                               # update
        self.scheduler.step()                                               # schedule
        self.optimizer.zero_grad()
        return {"loss": mean_loss, "lr": lr, "grad_norm": grad_norm}

    def training_step(self, micro_batches: list[dict], step: int) -> float:
        """Forward and backward over one step's micro-batches, no update; returns the mean loss.

        The first half of ``optimizer_step``: the gradients are left in ``p.grad`` to inspect.
        """
        return self.optimizer_step(micro_batches, step, update=False)["loss"]

    def _stop_unless(self, ok: bool, what: str, step: int) -> None:
        """Unless ``ok``: raise NonFiniteLossError naming the step and the last good checkpoint (untouched)."""
        if ok:
            return
        saved = os.path.isdir(self.checkpoint_dir)
        lower = self.args.learning_rate / 10
        where = (f"the last good checkpoint is {self.checkpoint_dir} (step {self._checkpoint_step}); "
                 f"resume from it with a lower learning rate (command line: --resume {self.checkpoint_dir} "
                 f"--learning-rate {lower:g}; Python: learning_rate={lower:g} in TrainingArguments, then "
                 f"train(resume_from=...))" if saved
                 else "no checkpoint had been saved yet (set save_every to keep one)")
        message = f"training stopped at step {step}: the {what}. The model was not updated; {where}."
        self.log.write({"step": step, "error": message})
        raise NonFiniteLossError(message, step, self.checkpoint_dir if saved else None)

    # ------------------------------------------------------------------ data position
    def _micro_batches(self, epoch: int, index: int):
        """Yield (epoch, next_index, batch) from position (epoch, index) on, epoch after epoch.

        Epoch e is shuffled with seed + e, so a position (e, i) names the same batch in every
        run; that is what makes resuming exact. Under MPI, ``batch`` is this rank's share.
        """
        while True:
            self.train_batches.set_epoch(epoch)
            order = self.train_batches.batch_indices()
            for i in range(index, len(order)):
                pairs = [self.train_batches.pairs[j] for j in self.parallel.shard(order[i])]
                yield epoch, i + 1, collate(pairs, self.train_batches.pad_id) if pairs else None
            epoch, index = epoch + 1, 0

    # ------------------------------------------------------------------ the loop
    def train(self, resume_from: str | None = None) -> TrainResult:
        """Run until ``total_steps``; returns a TrainResult (``interrupted`` after Ctrl-C).

        The loop::

            start (or resume) the run
            until total_steps: draw the step's micro-batches, one optimizer step, its bookkeeping
                               (progress, log, eval, checkpoint, callbacks); stop on Ctrl-C
            finish: final evaluation, checkpoint and model

        Args:
            resume_from: a checkpoint directory (e.g. ``<output_dir>/checkpoint``) to continue from.
                Options that differ from the checkpoint's are applied and reported, or refused
                (see ``training/resume.py``).

        Raises:
            NonFiniteLossError: the loss, gradient norm or learning rate became nan/inf (the
                message names the step and how to resume).
            ResumeMismatchError: ``resume_from`` was made with options this run cannot continue.
        """
        state = self._start(resume_from)
        stream = self._micro_batches(state["epoch"], state["batch_index"])
        meter, sigint, progress = StepMeter(), DeferSigint(), self._progress_bar(state["step"])
        self.model.train()
        try:
            with sigint:
                while state["step"] < self.total_steps:
                    started = time.perf_counter()
                    drawn = [next(stream) for _ in range(self.args.gradient_accumulation_steps)]
                    logs = self.optimizer_step([batch for _, _, batch in drawn], state["step"] + 1)
                    self._bookkeeping(state, drawn, logs, meter, time.perf_counter() - started, progress)
                    if self.parallel.should_stop(sigint.requested):  # Ctrl-C on any rank stops all
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if sigint.forced:
                raise
            return self._interrupted(state, meter, progress)
        finally:
            progress.close()
            self.log.plot()
        return self._finish(state, meter)

    def _progress_bar(self, step: int):
        return tqdm(total=self.total_steps, initial=step, desc="train",
                    disable=not (self.args.progress and self.parallel.is_main), dynamic_ncols=True)

    def _start(self, resume_from: str | None) -> dict:
        """Prepare the run directory and the loop's state: fresh, or restored from a checkpoint.

        The state holds everything the loop needs to continue exactly, and is saved in the
        checkpoint's ``extra``; ``loss_window`` holds the losses since the last log line, so a
        resumed log averages the same.
        """
        args = self.args
        if self.parallel.is_main:
            os.makedirs(args.output_dir, exist_ok=True)
            for name in clean_stale_temporaries(args.output_dir):
                tqdm.write(f"removed {name}, left in {args.output_dir} by an interrupted save")
        state = {"step": 0, "epoch": 0, "batch_index": 0, "best_metric": None, "best_step": None,
                 "last_eval_step": None, "loss_window": [], "training_args": recorded_options(self.args),
                 "data_fingerprint": self.data_fingerprint}
        changed, saved = {}, None
        if resume_from is not None:
            loaded = load_checkpoint(resume_from, self.model, self.optimizer)
            saved = loaded["extra"]
            changed = compare_options(saved.get("training_args"), state["training_args"],
                                      saved.get("data_fingerprint"), self.data_fingerprint, resume_from)
            state.update({k: v for k, v in saved.items() if k in state}, step=loaded["step"],
                         training_args=state["training_args"], data_fingerprint=self.data_fingerprint)
            if "metric_for_best" in changed:
                state.update(best_metric=None, best_step=None)  # the old best was measured on another metric
            apply_current_options(self.optimizer, self.scheduler, self.args.learning_rate,
                                  self._group_weight_decay, state["step"])
            self._checkpoint_step = state["step"]
        self.parallel.start(self.model, args.seed, self.data_fingerprint, saved)  # weights, RNG per rank
        if self.parallel.is_main:  # written only now: a refused resume leaves the run directory as it was
            args.save(os.path.join(args.output_dir, "training_args.json"))
            if self.tokenizer is not None:
                self.tokenizer.save(args.output_dir)
        self.log.start(keep_until_step=state["step"])  # a resumed run rewrites what came after
        if resume_from is not None:
            report_resume(self.log, resume_from, state["step"], changed)
        return state

    def _bookkeeping(self, state: dict, drawn: list, logs: dict, meter: StepMeter, seconds: float,
                     progress) -> None:
        """After a step: its position and speed, progress bar, log line, evaluation, checkpoint, callbacks."""
        args = self.args
        step = state["step"] + 1
        state.update(step=step, epoch=drawn[-1][0], batch_index=drawn[-1][1])
        tokens_per_sec = meter.add(logs["loss"], [b for _, _, b in drawn if b is not None], seconds)
        if step == 1:
            self.parallel.report_memory(self.optimizer, step, self.log)  # ZeRO-1 only
        logs = {"step": step, "epoch": state["epoch"], **logs, "tokens_per_sec": tokens_per_sec}
        window = state["loss_window"]
        window.append(logs["loss"])
        progress.update(1)
        progress.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", tok_s=f"{tokens_per_sec:.0f}")
        if (args.log_every and step % args.log_every == 0) or step == self.total_steps:
            self.log.write({**logs, "loss": sum(window) / len(window)})
            window.clear()
        if self.eval_data is not None and args.eval_every and step % args.eval_every == 0:
            logs.update(self._evaluate_and_keep_best(state))
        if args.save_every and step % args.save_every == 0:
            self._save_checkpoint(state)
        for callback in self.callbacks:
            callback(self, step, logs)

    def _interrupted(self, state: dict, meter: StepMeter, progress) -> TrainResult:
        """After Ctrl-C: save a checkpoint and say how to resume."""
        progress.close()
        self._save_checkpoint(state)
        tqdm.write(f"interrupted: saved a checkpoint at step {state['step']} in {self.checkpoint_dir}; "
                   f"resume with resume_from={self.checkpoint_dir!r}")
        return self._result(state, meter, {}, interrupted=True)

    def _finish(self, state: dict, meter: StepMeter) -> TrainResult:
        """The end of a run: a last evaluation (unless this step had one), checkpoint, final model."""
        metrics = {}
        if self.eval_data is not None:
            fresh = state["last_eval_step"] == state["step"] and self._last_metrics
            metrics = self._last_metrics if fresh else self._evaluate_and_keep_best(state)
        self._save_checkpoint(state)
        self._save_model(self.args.output_dir)
        self.log.plot()
        return self._result(state, meter, metrics, interrupted=False)

    def _result(self, state: dict, meter: StepMeter, metrics: dict, interrupted: bool) -> TrainResult:
        return TrainResult(global_step=state["step"], train_loss=meter.mean_loss(), metrics=metrics,
                           best_metric=state["best_metric"], best_step=state["best_step"],
                           interrupted=interrupted, output_dir=self.args.output_dir)

    # ------------------------------------------------------------------ saving
    def _save_checkpoint(self, state: dict) -> None:
        """Save the resumable checkpoint (never one with a nan/inf parameter)."""
        for name, p in self.model.named_parameters():
            if not np.all(np.isfinite(backend.to_device(p.data, "cpu"))):
                raise NonFiniteLossError(f"parameter {name} is not finite at step {state['step']}; "
                                         f"the checkpoint in {self.checkpoint_dir} was kept as it was",
                                         state["step"], self.checkpoint_dir)
        if not self.parallel.before_save(self.optimizer, state):  # collective; then rank 0 writes
            return
        extra = {k: v for k, v in state.items() if k != "step"}
        save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, self.scheduler, step=state["step"],
                        extra=extra)
        self._checkpoint_step = state["step"]

    def _save_model(self, directory: str) -> None:
        """The model in its own format: ``save_pretrained`` when it has one, else a checkpoint."""
        if not self.parallel.is_main:
            return
        if hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(directory)
        else:
            save_checkpoint(directory, self.model)

    def _evaluate_and_keep_best(self, state: dict) -> dict:
        """Evaluate, log, and save the model to ``best/`` if ``metric_for_best`` improved."""
        if not self.parallel.is_main:  # rank 0 evaluates; the others wait for it at the next step
            return {}
        metrics = self._last_metrics = self.evaluate()
        state["last_eval_step"] = state["step"]
        self.log.write({"step": state["step"], **metrics})
        key, better = self.args.metric_for_best, self.args.greater_is_better
        if key not in metrics:
            raise KeyError(f"metric_for_best={key!r} is not among the eval results: {', '.join(metrics)}")
        value, best = metrics[key], state["best_metric"]
        if best is None or (value > best if better else value < best):
            state.update(best_metric=value, best_step=state["step"])
            own_folder(self.best_dir)  # a planted symlink is replaced, never written through
            self._save_model(self.best_dir)
            atomic_write_text(os.path.join(self.best_dir, "metrics.json"),
                              json.dumps({"step": state["step"], **metrics}, indent=2))
        return metrics

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, records=None) -> dict:
        """Loss and generated-text metrics on ``records``, or on the eval data.

        Given ``records`` are scored in full. Without them, the first ``eval_num_examples`` eval
        records are (the periodic evaluation during training: generating is slow). A Batcher gives
        the loss only. Returns ``{"eval_loss": ..., "<task>/<metric>": ..., "score": ...}``.
        """
        limit = 0 if records is not None else self.args.eval_num_examples
        records = self.eval_data if records is None else records
        if records is None:
            raise ValueError("Trainer.evaluate: no records given and no eval_data")
        args = self.args
        return evaluate_model(self.model, self.tokenizer, records, args.max_source_length, args.max_target_length,
                              args.eval_max_new_tokens, args.eval_batch_size, limit, self.metric)

    def predict(self, prompts: list[str]) -> list[str]:
        """Greedy generations for ``prompts``, in order (see ``evaluation.harness.generate_texts``)."""
        args = self.args
        return generate_texts(self.model, self.tokenizer, prompts, args.max_source_length,
                              args.eval_max_new_tokens, args.eval_batch_size)
