"""Read real GLUE / SuperGLUE task files from a local folder and cast them text-to-text.

Nothing is downloaded: point `load_glue_task` at the folder where you unpacked the official
files. Either layout works:

    FOLDER/SST-2/dev.tsv      (the GLUE download: one sub-folder per task)
    FOLDER/dev.tsv            (the task's own folder)

The formats, as distributed:

    GLUE (TSV, tab-separated, no quoting)      SuperGLUE (JSON Lines: one object per line)
    SST-2  sentence, label (0/1), with header  BoolQ  question, passage, label (true/false)
    CoLA   no header: source, label, -, text   CB     premise, hypothesis, label (3 classes)
    MRPC   Quality, #1 ID, #2 ID, #1 String,   COPA   premise, choice1, choice2, question
           #2 String, with header                     (cause/effect), label (0/1)
    RTE    index, sentence1, sentence2, label  WiC    word, sentence1, sentence2, label
    QNLI   index, question, sentence, label
    QQP    id, qid1, qid2, question1, question2, is_duplicate
    WNLI   index, sentence1, sentence2, label

Each task becomes T5's text-to-text form (Raffel et al., 2020, appendix D): a prefix naming
the task and its fields, e.g. "mrpc sentence1: ... sentence2: ...", and the label as a word
("equivalent"). The words are the options of a multiple-choice task; COPA's options are its
two choices themselves. A bad line raises `DataError` naming the file and line.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Callable

from ..data.jsonl import DataError, text_lines
from ..files import parse_json
from .harness import MULTIPLE_CHOICE, EvalTask


@dataclass(frozen=True)
class GlueSpec:
    """How to read one task's files and phrase it.

    Attributes:
        name: short name, also the T5 prefix ("sst2").
        folder: sub-folder name in the official download ("SST-2").
        file_format: "tsv" or "jsonl".
        fields: prompt field -> column name (TSV header / JSON key) or column index
            (headerless TSV); the prompt lists them in this order.
        label: the label's column.
        labels: raw label (as lower-case text) -> option word; None for COPA-style
            tasks whose options are the `choices` columns and whose label is an index.
        choices: columns holding per-example options.
        metrics, positive: harness metric names and the positive option for F1.
    """

    name: str
    folder: str
    file_format: str
    fields: dict
    label: object
    labels: dict | None
    metrics: tuple = ("accuracy",)
    positive: str | None = None
    choices: tuple = ()
    header: bool = True
    dev_file: str = "dev.tsv"
    train_file: str = "train.tsv"

    @property
    def options(self) -> list | None:
        return list(dict.fromkeys(self.labels.values())) if self.labels else None


_BINARY = {"0": "negative", "1": "positive"}
_JSONL = dict(file_format="jsonl", dev_file="val.jsonl", train_file="train.jsonl")
GLUE_SPECS: dict[str, GlueSpec] = {s.name: s for s in [
    GlueSpec("sst2", "SST-2", "tsv", {"sentence": "sentence"}, "label", _BINARY),
    GlueSpec("cola", "CoLA", "tsv", {"sentence": 3}, 1, {"0": "unacceptable", "1": "acceptable"},
             metrics=("mcc", "accuracy"), header=False),
    GlueSpec("mrpc", "MRPC", "tsv", {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality",
             {"0": "not_equivalent", "1": "equivalent"}, ("accuracy", "f1"), positive="equivalent"),
    GlueSpec("rte", "RTE", "tsv", {"sentence1": "sentence1", "sentence2": "sentence2"}, "label",
             {"entailment": "entailment", "not_entailment": "not_entailment"}),
    GlueSpec("qnli", "QNLI", "tsv", {"question": "question", "sentence": "sentence"}, "label",
             {"entailment": "entailment", "not_entailment": "not_entailment"}),
    GlueSpec("qqp", "QQP", "tsv", {"question1": "question1", "question2": "question2"}, "is_duplicate",
             {"0": "not_duplicate", "1": "duplicate"}, ("accuracy", "f1"), positive="duplicate"),
    GlueSpec("wnli", "WNLI", "tsv", {"sentence1": "sentence1", "sentence2": "sentence2"}, "label",
             {"0": "not_entailment", "1": "entailment"}),
    GlueSpec("boolq", "BoolQ", fields={"passage": "passage", "question": "question"}, label="label",
             labels={"false": "False", "true": "True"}, **_JSONL),
    GlueSpec("cb", "CB", fields={"hypothesis": "hypothesis", "premise": "premise"}, label="label",
             labels={"entailment": "entailment", "contradiction": "contradiction",
                     "neutral": "neutral"}, metrics=("accuracy", "macro_f1"), **_JSONL),
    GlueSpec("copa", "COPA", fields={"premise": "premise", "question": "question"}, label="label",
             labels=None, choices=("choice1", "choice2"), **_JSONL),
    GlueSpec("wic", "WiC", fields={"sentence1": "sentence1", "sentence2": "sentence2", "word": "word"},
             label="label", labels={"false": "False", "true": "True"}, **_JSONL),
]}


def find_file(spec: GlueSpec, folder: str, split: str) -> str:
    """Path of a split's file: FOLDER/<TaskFolder>/<file> or FOLDER/<file>."""
    name = {"train": spec.train_file, "dev": spec.dev_file, "validation": spec.dev_file,
            "val": spec.dev_file}.get(split)
    if name is None:
        raise ValueError(f"split must be 'train' or 'dev' (alias 'validation', 'val'), got {split!r}")
    candidates = [os.path.join(folder, spec.folder, name), os.path.join(folder, name)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{spec.name}: no {name} found; looked for " + " and ".join(candidates))


def _tsv_rows(path: str, header: bool):
    """(line number, row) for each data line; row is a dict (with a header) or a list.

    Lines come through ``data.jsonl.text_lines``: a regular file, each line bounded and UTF-8 checked.
    """
    # GLUE's TSVs contain stray quote characters, so quoting must be off (as in the GLUE
    # baseline code), otherwise a '"' would swallow the following lines.
    reader = csv.reader((line for _, line in text_lines(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    names = None
    for line_no, row in enumerate(reader, start=1):
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        if header and names is None:
            names = row
            continue
        if names is not None:
            if len(row) != len(names):
                raise DataError(path, line_no, f"expected {len(names)} tab-separated columns "
                                               f"({', '.join(names)}), found {len(row)}")
            yield line_no, dict(zip(names, row))
        else:
            yield line_no, row


def _jsonl_rows(path: str):
    """(line number, object) for each line, read as ``_tsv_rows`` reads; a key given twice is refused."""
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = parse_json(line, path, "JSON object", line_offset=line_no - 1)
        except json.JSONDecodeError as err:
            raise DataError(path, line_no, f"not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _get(row, column, path, line_no):
    try:
        return row[column]
    except (KeyError, IndexError):
        what = f"column {column}" if isinstance(column, int) else f"field {column!r}"
        raise DataError(path, line_no, f"missing {what}") from None


def read_examples(spec: GlueSpec, path: str, limit: int | None = None) -> list:
    """Examples (prompt fields + "target", and "options" for COPA) from one file."""
    rows = _jsonl_rows(path) if spec.file_format == "jsonl" else _tsv_rows(path, spec.header)
    examples = []
    for line_no, row in rows:
        if limit is not None and len(examples) >= limit:
            break
        example = {f: str(_get(row, col, path, line_no)) for f, col in spec.fields.items()}
        raw = _get(row, spec.label, path, line_no)
        if spec.choices:  # the label is the index of the right choice
            example["options"] = [str(_get(row, c, path, line_no)) for c in spec.choices]
            if str(raw) not in {str(i) for i in range(len(spec.choices))}:
                raise DataError(path, line_no, f"label {raw!r} is not a choice index "
                                               f"0..{len(spec.choices) - 1}")
            example["target"] = example["options"][int(raw)]
        else:
            key = str(raw).strip().lower()  # JSON true / "True" / TSV "1" all become text keys
            if key not in spec.labels:
                raise DataError(path, line_no, f"label {raw!r} is not one of {sorted(spec.labels)}")
            example["target"] = spec.labels[key]
        examples.append(example)
    if not examples:
        raise DataError(path, None, "no examples found")
    return examples


def t5_render(prefix: str, fields) -> Callable:
    """render(shots, query) for T5's text-to-text form: "prefix field1: ... field2: ..."."""
    def prompt_of(example):
        return prefix + " " + " ".join(f"{f}: {example[f]}" for f in fields)

    def render(shots, query):
        solved = [f"{prompt_of(s)}\n{s['target']}" for s in shots]
        return "\n\n".join(solved + [prompt_of(query)]), query["target"]
    return render


def load_glue_task(name: str, folder: str, split: str = "dev", n: int | None = None,
                   shots_from_train: bool = True) -> EvalTask:
    """A multiple-choice EvalTask from a GLUE/SuperGLUE task's local files.

    Few-shot demonstrations come from train.tsv/train.jsonl when present (so an evaluation
    example is never its own demonstration); otherwise from the evaluated split itself,
    where the harness still excludes the query.
    """
    if name not in GLUE_SPECS:
        raise KeyError(f"unknown GLUE/SuperGLUE task {name!r}; known: {', '.join(GLUE_SPECS)}")
    spec = GLUE_SPECS[name]
    examples = read_examples(spec, find_file(spec, folder, split), limit=n)
    pool = None
    if shots_from_train and split != "train":
        try:
            pool = read_examples(spec, find_file(spec, folder, "train"), limit=1000)
        except FileNotFoundError:
            pool = None
    return EvalTask(name=spec.name, examples=examples, render=t5_render(spec.name, list(spec.fields)),
                    output_type=MULTIPLE_CHOICE, metrics=spec.metrics, options=spec.options,
                    shot_pool=pool, input_fields=tuple(spec.fields), positive_option=spec.positive)
