"""Data for minillm: text in, padded batches of token ids out.

    tokenizer.py        Tokenizer: train Unigram/BPE, T5 ids (pad 0, eos 1, unk 2, sentinels)
    tasks.py            built-in generated tasks (+ tasks_lexicon.py, their shared vocabulary;
                        task_levels.py, easier variants of some)
    corpus.py           plain text from the same generators, for pretraining and tokenizers
    templates.py        FLAN-style instruction templates, zero- and few-shot prompts
    mixture.py          multitask mixing: examples-proportional with a cap, temperature
    jsonl.py            your own prompt/completion data from JSONL/CSV, with line-numbered errors
    collate.py          padding, -100 labels, length bucketing, batching
    span_corruption.py  T5's pretraining objective

Only numpy, `tokenizers` and the standard library are needed here.
"""
from .collate import (IGNORE_INDEX, Batcher, Record, TruncationReport, collate, make_batches,
                      shift_right, tokenize_records, truncation_report)
from .jsonl import DataError, UserData, load_csv, load_jsonl, load_prompt_completion
from .mixture import allocate, build_mixture, mixture_rates
from .corpus import pretraining_corpus
from .span_corruption import random_spans_noise_mask, span_corruption, span_corruption_pairs
from .tasks import DEFAULT_MIXTURE, HELD_OUT_TASKS, TASKS, Task, get_task
from .templates import TEMPLATES, few_shot_prompt, format_example, options_block
from .tokenizer import Tokenizer

__all__ = [
    "IGNORE_INDEX", "Batcher", "Record", "TruncationReport", "collate", "make_batches",
    "shift_right", "tokenize_records", "truncation_report", "DataError", "UserData", "load_csv",
    "load_jsonl", "load_prompt_completion", "allocate", "build_mixture", "mixture_rates",
    "random_spans_noise_mask", "span_corruption", "span_corruption_pairs", "DEFAULT_MIXTURE",
    "HELD_OUT_TASKS", "TASKS", "Task", "get_task", "pretraining_corpus", "TEMPLATES",
    "few_shot_prompt", "format_example", "options_block", "Tokenizer",
]
