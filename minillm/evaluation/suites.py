"""Benchmark suites: mini-GLUE on the built-in tasks, and GLUE's way of averaging.

GLUE (Wang et al., 2019) summarizes a model with one number. Some tasks report two metrics
(MRPC: accuracy and F1; STS-B: Pearson and Spearman), so GLUE first averages the metrics
*within* each task and then averages the task scores. A task with two metrics therefore
weighs as much as a task with one:

    GLUE score = mean over tasks t of ( mean over metrics m of t of score(t, m) )

mini-GLUE applies this to minillm's built-in tasks, each cast text-to-text with a T5-style
prefix ("sentiment review: The food was great." -> "positive"), with GLUE-like metrics:

    sentiment          accuracy                 (like SST-2)
    paraphrase         accuracy, F1             (like MRPC)
    arithmetic         exact match
    translation        BLEU, chrF
    dialogue_summary   ROUGE-1, ROUGE-2, ROUGE-L

`prompt_style="flan"` uses the FLAN instruction templates instead, which suits a model that
was instruction-tuned on them. Real GLUE/SuperGLUE files: see glue_loaders.py. HELM-style
reports: see helm.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data import get_task
from .glue_loaders import GLUE_SPECS, load_glue_task, t5_render
from .harness import EvalReport, builtin_task, evaluate

MINI_GLUE: dict[str, tuple] = {
    "sentiment": ("accuracy",),
    "paraphrase": ("accuracy", "f1"),
    "arithmetic": ("exact_match",),
    "translation": ("bleu", "chrf"),
    "dialogue_summary": ("rouge1", "rouge2", "rougeL"),
}
PROMPT_STYLES = ("t5", "flan")


def mini_glue_tasks(n: int = 100, seed: int = 0, split: str = "test", prompt_style: str = "t5",
                    tasks: list | None = None) -> list:
    """The EvalTasks of mini-GLUE (`tasks` picks a subset or adds held-out built-in tasks)."""
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    out = []
    for name in tasks or list(MINI_GLUE):
        task = get_task(name)
        render = t5_render(task.name, task.fields) if prompt_style == "t5" else None
        out.append(builtin_task(task.name, split, n, seed, render=render,
                                metrics=MINI_GLUE.get(task.name)))
    return out


@dataclass
class GlueScore:
    """GLUE-style summary: one score per task (its metrics averaged) and their mean."""

    per_task: dict
    score: float

    def format(self) -> str:
        """Two lines: per-task scores, then the overall score."""
        tasks = ", ".join(f"{t} {v:.2f}" for t, v in self.per_task.items())
        return f"per task: {tasks}\nGLUE-style score (mean over tasks of per-task means): {self.score:.2f}"


def glue_average(results: list) -> GlueScore:
    """Average MetricResults the GLUE way: within each task first, then across tasks."""
    by_task: dict[str, list] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r.value)
    if not by_task:
        raise ValueError("glue_average needs at least one result")
    per_task = {t: sum(v) / len(v) for t, v in by_task.items()}
    return GlueScore(per_task, sum(per_task.values()) / len(per_task))


def run_mini_glue(model, tokenizer, n: int = 100, shots: int = 0, seed: int = 0,
                  batch_size: int = 16, prompt_style: str = "t5", tasks: list | None = None,
                  n_bootstrap: int = 200) -> tuple[EvalReport, GlueScore]:
    """Evaluate mini-GLUE; returns the full report and the GLUE-style score."""
    report = evaluate(model, tokenizer, mini_glue_tasks(n, seed, prompt_style=prompt_style, tasks=tasks),
                      shots=shots, seed=seed, batch_size=batch_size, n_bootstrap=n_bootstrap)
    return report, glue_average(report.results)


def run_glue_folder(model, tokenizer, folder: str, tasks: list | None = None, split: str = "dev",
                    n: int | None = None, shots: int = 0, seed: int = 0, batch_size: int = 16,
                    n_bootstrap: int = 200) -> tuple[EvalReport, GlueScore]:
    """Evaluate real GLUE/SuperGLUE files from `folder` (default: every task found there)."""
    if tasks is None:
        tasks = []
        for name in GLUE_SPECS:
            try:
                load_glue_task(name, folder, split, n=1, shots_from_train=False)
                tasks.append(name)
            except FileNotFoundError:
                continue
        if not tasks:
            raise FileNotFoundError(f"{folder}: no GLUE/SuperGLUE task files found")
    eval_tasks = [load_glue_task(name, folder, split, n) for name in tasks]
    report = evaluate(model, tokenizer, eval_tasks, shots=shots, seed=seed, batch_size=batch_size,
                      n_bootstrap=n_bootstrap)
    return report, glue_average(report.results)
