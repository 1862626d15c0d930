"""Evaluation: how good is a model, on what, and how sure are we?

    harness.py       EvalTask (data + template + output type + metrics), zero/few-shot prompts,
                     multiple choice by option log-likelihood, batched generation, results
                     tables with standard errors (Markdown and JSON)
    suites.py        mini-GLUE on the built-in tasks and GLUE's averaging
    glue_loaders.py  real GLUE/SuperGLUE files (TSV/JSONL) from a local folder
    helm.py          HELM-style report: accuracy, calibration, robustness, efficiency
    forgetting.py    the forgetting matrix R[stage][task] and backward transfer
    scoring.py       per-task scores of generated text (ROUGE, BLEU, accuracy, exact match)
    held_out.py      eval loss and generated-text metrics on held-out records (the Trainer's
                     periodic evaluation, ``minillm evaluate --data``)
"""
from .forgetting import ForgettingMatrix, backward_transfer
from .glue_loaders import GLUE_SPECS, GlueSpec, load_glue_task, read_examples, t5_render
from .harness import (CORPUS, GENERATION, METRICS, MULTIPLE_CHOICE, PER_EXAMPLE, EvalReport,
                      EvalTask, MetricResult, TaskOutput, bootstrap_stderr, build_prompts,
                      builtin_task, evaluate, generate_texts, option_log_likelihoods,
                      results_table, run_task, score_task, select_shots)
from .helm import (HELM_SCENARIOS, PERTURBATIONS, HelmReport, HelmRow, calibration_error,
                   count_parameters, helm_report, helm_scenario, label_probabilities,
                   perturb_examples, perturb_text)
from .suites import MINI_GLUE, GlueScore, glue_average, mini_glue_tasks, run_glue_folder, run_mini_glue

__all__ = [
    "ForgettingMatrix", "backward_transfer", "GLUE_SPECS", "GlueSpec", "load_glue_task",
    "read_examples", "t5_render", "CORPUS", "GENERATION", "METRICS", "MULTIPLE_CHOICE",
    "PER_EXAMPLE", "EvalReport", "EvalTask", "MetricResult", "TaskOutput", "bootstrap_stderr",
    "build_prompts", "builtin_task", "evaluate", "generate_texts",
    "option_log_likelihoods", "results_table", "run_task", "score_task", "select_shots", "HELM_SCENARIOS",
    "PERTURBATIONS", "HelmReport", "HelmRow", "calibration_error", "count_parameters",
    "helm_report", "helm_scenario", "label_probabilities", "perturb_examples", "perturb_text",
    "MINI_GLUE", "GlueScore", "glue_average", "mini_glue_tasks", "run_glue_folder", "run_mini_glue",
]
