"""The evaluation harness: run a model on tasks, score it, print a table.

An evaluation task is four things:

    data         a list of examples (dicts of text fields plus "target")
    template     render(shots, query) -> (prompt, target): how an example becomes a prompt,
                 with k solved examples ("shots") in front for few-shot prompting
    output type  "generation": the model writes an answer (batched `model.generate`), or
                 "multiple_choice": the model *scores* each allowed answer and we pick the best
    metrics      names from METRICS, e.g. ("accuracy",) or ("bleu", "chrf")

Multiple choice by log-likelihood. For options o_1..o_K and a prompt x, the score of option k
is the log-probability the decoder gives to its tokens (closing </s> included) when it is fed
that option as the target (teacher forcing):

    score(o_k) = sum_t log p(o_k[t] | x, o_k[<t])

and the prediction is argmax_k score(o_k). No text is generated, so the model can never answer
outside the options, and softmax over the K scores gives label probabilities (for calibration,
see helm.py). A batch of prompts and all their options goes through one teacher-forced forward.

Every number comes with a standard error so two models can be compared honestly:
    per-example metrics (accuracy, ROUGE): stderr = std(scores, ddof=1) / sqrt(n)
    corpus metrics (BLEU, chrF, F1, MCC), which are not means over examples: the standard
    deviation of the metric over seeded bootstrap resamples of the examples.
All metric values are on a 0-100 scale, like the GLUE leaderboard and sacreBLEU.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..autograd import no_grad
from ..backend import to_device
from ..data import collate, few_shot_prompt, get_task, shift_right
from ..generation import _log_softmax as log_softmax  # the one NumPy/CuPy log-softmax
from ..metrics import corpus_bleu, corpus_chrf, f1_score, matthews_corrcoef, rouge_score
from .progress import track

GENERATION, MULTIPLE_CHOICE = "generation", "multiple_choice"


# ----------------------------------------------------------------------------- tasks
@dataclass
class EvalTask:
    """Data + template + output type + metrics (see the module docstring).

    Attributes:
        name: shown in the results table.
        examples: dicts with the input fields and "target"; an example may carry its own
            "options" list (e.g. COPA's two choices), which overrides `options`.
        render: (shots, query) -> (prompt, target).
        output_type: GENERATION or MULTIPLE_CHOICE.
        metrics: names from METRICS.
        options: the answer choices of a multiple-choice task.
        shot_pool: where few-shot examples come from (default: `examples`, minus the query).
        input_fields: the text fields of an example that perturbations may change (helm.py).
        positive_option: the positive class for F1 (default: the first option).
        max_new_tokens: generation length limit.
    """

    name: str
    examples: list
    render: Callable[[list, dict], tuple]
    output_type: str = GENERATION
    metrics: tuple = ("exact_match",)
    options: list | None = None
    shot_pool: list | None = None
    input_fields: tuple = ()
    positive_option: str | None = None
    max_new_tokens: int = 32

    def __post_init__(self):
        if self.output_type not in (GENERATION, MULTIPLE_CHOICE):
            raise ValueError(f"{self.name}: output_type must be {GENERATION!r} or "
                             f"{MULTIPLE_CHOICE!r}, got {self.output_type!r}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"{self.name}: unknown metrics {unknown}; known: {sorted(METRICS)}")

    def options_for(self, example: dict) -> list:
        """The answer choices of one example (its own "options", else the task's)."""
        options = example.get("options", self.options)
        if not options:
            raise ValueError(f"{self.name}: a multiple-choice task needs options")
        return list(options)


def builtin_task(name: str, split: str = "test", n: int = 100, seed: int = 0,
                 template_id: int = 0, render: Callable | None = None,
                 metrics: tuple | None = None, num_shot_pool: int = 64) -> EvalTask:
    """An EvalTask for a built-in task from minillm.data, with its natural metrics.

    Tasks with options (sentiment, paraphrase) are scored as multiple choice, the others are
    generated. The default template is the task's FLAN template `template_id`; shots come
    from the *train* split, so a few-shot prompt never contains a test example.
    """
    task = get_task(name)
    if render is None:
        def render(shots, query):
            return few_shot_prompt(task, shots, query, template_id=template_id)
    default_metrics = {"rouge": ("rouge1", "rouge2", "rougeL"), "bleu": ("bleu", "chrf"),
                       "accuracy": ("accuracy",) if task.options else ("exact_match",)}
    return EvalTask(
        name=task.name, examples=task.examples(split, n, seed), render=render,
        output_type=MULTIPLE_CHOICE if task.options else GENERATION,
        metrics=tuple(metrics or default_metrics[task.metric]), options=task.options,
        shot_pool=task.examples("train", num_shot_pool, seed), input_fields=task.fields)


# ----------------------------------------------------------------------------- prompts
def select_shots(pool: list, query: dict, k: int, seed: int, query_index: int) -> list:
    """k solved examples for one query: seeded, different per query, never the query itself.

    The generator is seeded with (seed, query_index), so a rerun builds the same prompts
    while different queries see different demonstrations.
    """
    if k == 0:
        return []
    candidates = [ex for ex in pool if ex is not query and ex != query]
    if len(candidates) < k:
        raise ValueError(f"asked for {k} shots but the pool has only {len(candidates)} examples")
    return random.Random(f"shots|{seed}|{query_index}").sample(candidates, k)


def build_prompts(task: EvalTask, shots: int = 0, seed: int = 0, examples: list | None = None):
    """(prompts, targets) for every example, with `shots` seeded demonstrations each.

    `examples`, if given, must line up with `task.examples` (e.g. perturbed copies, helm.py):
    example i then gets exactly the demonstrations of the original example i.
    """
    examples = task.examples if examples is None else examples
    if len(examples) != len(task.examples):
        raise ValueError(f"{task.name}: got {len(examples)} examples for {len(task.examples)} originals")
    pool = task.examples if task.shot_pool is None else task.shot_pool
    prompts, targets = [], []
    for i, (original, example) in enumerate(zip(task.examples, examples)):
        prompt, target = task.render(select_shots(pool, original, shots, seed, i), example)
        prompts.append(prompt)
        targets.append(target)
    return prompts, targets


# ----------------------------------------------------------------------------- model calls
def _numpy(array) -> np.ndarray:
    return np.asarray(to_device(array, "cpu"))


def option_log_likelihoods(model, tokenizer, prompts: list, options: list, batch_size: int = 16,
                           max_source_length: int | None = 512) -> list:
    """Summed token log-probabilities of each option given each prompt.

    Args:
        options: one list of option strings per prompt.
    Returns:
        a list of float64 arrays, one per prompt, of length len(options[i]).
    """
    sources = tokenizer.batch_encode(prompts, max_length=max_source_length, padding=False)["input_ids"]
    scores = []
    with no_grad():
        for start in range(0, len(prompts), batch_size):
            # Rows (prompt, option) for a batch of prompts and all their options, in order.
            rows = [(sources[i], tokenizer.encode(o)) for i in range(start, min(start + batch_size, len(prompts)))
                    for o in options[i]]
            batch = collate(rows, pad_id=tokenizer.pad_token_id)
            labels = batch["labels"]                                    # (rows, tgt_len), -100 pads
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=shift_right(labels, model.config.decoder_start_token_id),
                           decoder_attention_mask=batch["decoder_attention_mask"]).logits
            log_probs = log_softmax(_numpy(logits.data).astype(np.float64))  # (rows, tgt_len, vocab)
            real = labels != -100
            picked = np.take_along_axis(log_probs, np.where(real, labels, 0)[..., None], axis=-1)[..., 0]
            row_scores = (picked * real).sum(axis=1)                    # (rows,)
            r = 0
            for i in range(start, min(start + batch_size, len(prompts))):
                scores.append(row_scores[r:r + len(options[i])])
                r += len(options[i])
    return scores


class GeneratedTexts(list):
    """The texts ``generate_texts`` wrote, in prompt order; ``num_tokens`` counts the tokens generated."""

    num_tokens: int = 0


def generate_texts(model, tokenizer, prompts: list, max_source_length: int | None = 512, max_new_tokens: int = 32,
                   batch_size: int = 16, num_beams: int = 1) -> GeneratedTexts:
    """Batched generation (greedy, or beam search); returns the texts in the order of ``prompts``.

    Prompts are sorted by token length before batching so that each batch pads little, then the
    answers are put back in the original order. The result is a list that also carries
    ``num_tokens``, the tokens generated (for the efficiency figures of helm.py).
    """
    lengths = [len(ids) for ids in tokenizer.batch_encode(prompts, max_length=max_source_length,
                                                          padding=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    texts = GeneratedTexts([""] * len(prompts))
    starts = range(0, len(order), batch_size)
    for start in track(starts, len(starts), "generating, batches"):
        idx = order[start:start + batch_size]
        enc = tokenizer.batch_encode([prompts[i] for i in idx], max_length=max_source_length)
        out = _numpy(model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
                                    num_beams=num_beams, do_sample=False, num_return_sequences=1))
        texts.num_tokens += int((out[:, 1:] != tokenizer.pad_token_id).sum())  # column 0 is the start token
        for i, text in zip(idx, tokenizer.batch_decode(out[:, 1:])):
            texts[i] = text.strip()
    return texts


@dataclass
class TaskOutput:
    """What the model produced on one task (before scoring)."""

    prompts: list
    targets: list
    predictions: list
    option_scores: list | None = None  # multiple choice: log-likelihood of every option
    num_tokens: int = 0                # prompt + answer tokens processed
    seconds: float = 0.0


def run_task(model, tokenizer, task: EvalTask, shots: int = 0, seed: int = 0,
             batch_size: int = 16, examples: list | None = None, num_beams: int = 1,
             max_source_length: int | None = 512) -> TaskOutput:
    """Prompt the model with every example of `task` (or with `examples`, e.g. perturbed)."""
    examples = task.examples if examples is None else examples
    prompts, targets = build_prompts(task, shots, seed, examples)
    was_training = getattr(model, "training", False)
    model.eval()  # no dropout while evaluating
    start = time.perf_counter()
    try:
        prompt_tokens = sum(len(ids) for ids in tokenizer.batch_encode(
            prompts, max_length=max_source_length, padding=False)["input_ids"])
        if task.output_type == MULTIPLE_CHOICE:
            options = [task.options_for(ex) for ex in examples]
            for target, opts in zip(targets, options):
                if target not in opts:
                    raise ValueError(f"{task.name}: target {target!r} is not one of the options {opts}")
            scores = option_log_likelihoods(model, tokenizer, prompts, options, batch_size,
                                            max_source_length)
            predictions = [opts[int(np.argmax(s))] for opts, s in zip(options, scores)]
            answer_tokens = sum(len(tokenizer.encode(o)) for opts in options for o in opts)
        else:
            scores = None
            predictions = generate_texts(model, tokenizer, prompts, max_source_length, task.max_new_tokens,
                                         batch_size, num_beams)
            answer_tokens = predictions.num_tokens
    finally:
        model.train(was_training)
    return TaskOutput(prompts, targets, predictions, scores, prompt_tokens + answer_tokens,
                      time.perf_counter() - start)


# ----------------------------------------------------------------------------- metrics
def _normalize(text: str) -> str:
    return " ".join(str(text).split())


def _rouge(kind):
    return lambda p, t: 100.0 * rouge_score(p, t, [kind])[kind].fmeasure


# Per-example metrics: (prediction, target) -> score; the task score is their mean.
PER_EXAMPLE = {
    "exact_match": lambda p, t: 100.0 * (_normalize(p) == _normalize(t)),
    "accuracy": lambda p, t: 100.0 * (_normalize(p) == _normalize(t)),
    "rouge1": _rouge("rouge1"), "rouge2": _rouge("rouge2"), "rougeL": _rouge("rougeL"),
}


def _positive(task):
    return task.positive_option if task.positive_option is not None else task.options[0]


# Corpus metrics: (predictions, targets, task) -> score over the whole set.
CORPUS = {
    "bleu": lambda p, t, task: corpus_bleu(p, [t]).score,
    "chrf": lambda p, t, task: corpus_chrf(p, [t]).score,
    "f1": lambda p, t, task: 100.0 * f1_score(np.array(p, dtype=object) == _positive(task),
                                              np.array(t, dtype=object) == _positive(task),
                                              pos_label=True),
    "macro_f1": lambda p, t, task: 100.0 * f1_score(np.array(p), np.array(t), average="macro"),
    "mcc": lambda p, t, task: 100.0 * matthews_corrcoef(np.array(p), np.array(t)),
}
METRICS = {**{m: "per_example" for m in PER_EXAMPLE}, **{m: "corpus" for m in CORPUS}}


@dataclass
class MetricResult:
    """One row of the results table."""

    task: str
    n_shot: int
    metric: str
    value: float
    stderr: float
    num_examples: int


def bootstrap_stderr(metric: Callable, predictions: list, targets: list, seed: int = 0,
                     n_bootstrap: int = 200) -> float:
    """Standard deviation of `metric(predictions, targets)` over resamples with replacement."""
    rng = np.random.default_rng(seed)
    n = len(predictions)
    values = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        values.append(metric([predictions[i] for i in idx], [targets[i] for i in idx]))
    return float(np.std(values, ddof=1)) if n_bootstrap > 1 else 0.0


def score_task(task: EvalTask, output: TaskOutput, n_shot: int = 0, seed: int = 0,
               n_bootstrap: int = 200) -> list:
    """MetricResults (value and stderr) for every metric of `task`."""
    p, t, n = output.predictions, output.targets, len(output.targets)
    results = []
    for name in task.metrics:
        if name in PER_EXAMPLE:
            scores = np.array([PER_EXAMPLE[name](a, b) for a, b in zip(p, t)], dtype=np.float64)
            value = float(scores.mean())
            stderr = float(scores.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        else:
            metric = lambda p_, t_, name=name: CORPUS[name](p_, t_, task)  # noqa: E731
            value = float(metric(p, t))
            stderr = bootstrap_stderr(metric, p, t, seed, n_bootstrap) if n > 1 else 0.0
        results.append(MetricResult(task.name, n_shot, name, value, stderr, n))
    return results


# ----------------------------------------------------------------------------- reports
def results_table(results: list) -> str:
    """A Markdown table: | Task | n-shot | Metric | Value | ± stderr |."""
    header = ["Task", "n-shot", "Metric", "Value", "± stderr"]
    rows = [[r.task, str(r.n_shot), r.metric, f"{r.value:.2f}", f"{r.stderr:.2f}"] for r in results]
    widths = [max(len(row[c]) for row in [header] + rows) for c in range(len(header))]
    right = [False, True, False, True, True]  # numbers align right

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right)) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in rows])


@dataclass
class EvalReport:
    """Results of `evaluate`: metric rows, raw outputs per task, and the settings used."""

    results: list
    outputs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def value(self, task: str, metric: str) -> float:
        """The value of one (task, metric) row."""
        for r in self.results:
            if r.task == task and r.metric == metric:
                return r.value
        raise KeyError(f"no result for task {task!r}, metric {metric!r}")

    def table(self) -> str:
        return results_table(self.results)

    def to_dict(self) -> dict:
        return {"results": [asdict(r) for r in self.results], "config": self.config}

    def to_json(self, path: str | None = None) -> str:
        """The report as JSON text; also written to `path` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text


def evaluate(model, tokenizer, tasks: list, shots: int = 0, seed: int = 0, batch_size: int = 16,
             num_beams: int = 1, n_bootstrap: int = 200,
             max_source_length: int | None = 512) -> EvalReport:
    """Run and score every task; returns an EvalReport (print `.table()`, save `.to_json()`)."""
    results, outputs = [], {}
    for task in tasks:
        output = run_task(model, tokenizer, task, shots, seed, batch_size, num_beams=num_beams,
                          max_source_length=max_source_length)
        outputs[task.name] = output
        results += score_task(task, output, shots, seed, n_bootstrap)
    config = {"shots": shots, "seed": seed, "batch_size": batch_size, "num_beams": num_beams,
              "tasks": [t.name for t in tasks]}
    return EvalReport(results, outputs, config)
