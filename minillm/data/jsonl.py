"""Load your own [prompt, completion] data from JSONL or CSV, with errors that say where.

Fine-tuning on your own data starts with a file like

    {"prompt": "Summarize: ...", "completion": "..."}        (data.jsonl, one object per line)
    prompt,completion                                         (data.csv, a header row first)

Common alternative names are accepted: input/output, instruction/response, source/target
(the first name found on a line wins, in that order). Pass `prompt_field=` /
`completion_field=` to use your own.

Bad data is never skipped or guessed at. Every problem raises `DataError` naming the file, the
line and what is wrong, e.g.

    data.jsonl, line 7: missing field 'completion' (accepted names: completion, output, ...)

Long examples are not dropped either: `UserData.truncation_report(...)` counts how many will be
cut at a given maximum length before you train.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

from .collate import Record, TruncationReport, truncation_report

PROMPT_FIELDS = ("prompt", "input", "instruction", "source")
COMPLETION_FIELDS = ("completion", "output", "response", "target")


class DataError(ValueError):
    """A problem in a user data file; the message starts with "file, line N:"."""

    def __init__(self, path: str, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


@dataclass
class UserData:
    """The records loaded from one file, plus what was seen while reading it."""

    path: str
    records: list[Record] = field(default_factory=list)
    num_lines: int = 0          # physical lines in the file
    num_blank_lines: int = 0    # lines with only whitespace (not examples, so not "dropped")

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def truncation_report(self, tokenizer, max_source_length: int | None,
                          max_target_length: int | None) -> TruncationReport:
        """How many prompts / completions exceed the limits and would be cut."""
        return truncation_report(self.records, tokenizer, max_source_length, max_target_length)


def _names(spec: str | Sequence[str]) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else tuple(spec)


def _read_text(path: str) -> str:
    """The file's text, or a DataError pointing at the line with the first non-UTF-8 byte."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a directory, not a data file") from None
    try:
        return data.decode("utf-8-sig")  # -sig: tolerate the byte-order mark Excel writes
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x}); "
                                    "save the file with UTF-8 encoding") from None


def _pick(obj: dict, names: tuple[str, ...], role: str, path: str, line: int) -> str:
    """The value of the first of `names` present in `obj`, checked to be a non-empty string."""
    for name in names:
        if name in obj:
            value = obj[name]
            if not isinstance(value, str):
                raise DataError(path, line, f"field '{name}' must be a string, got "
                                            f"{type(value).__name__} ({value!r:.40})")
            if not value.strip():
                raise DataError(path, line, f"field '{name}' is empty")
            return value
    raise DataError(path, line, f"missing field '{names[0]}' for the {role} "
                                f"(accepted names: {', '.join(names)})")


def load_jsonl(path: str, prompt_field: str | Sequence[str] = PROMPT_FIELDS,
               completion_field: str | Sequence[str] = COMPLETION_FIELDS,
               task: str | None = None) -> UserData:
    """Read a JSON Lines file: one {"prompt": ..., "completion": ...} object per line.

    Args:
        prompt_field / completion_field: the accepted key (or keys, first match wins).
        task: stored in every Record's `task` (default: the file name without extension).

    Raises:
        DataError: on the first bad line, naming the file, line and problem.
    """
    path = str(path)
    text = _read_text(path)
    task = task or os.path.splitext(os.path.basename(path))[0]
    prompt_names, completion_names = _names(prompt_field), _names(completion_field)
    # JSON Lines separates records by "\n" only. str.splitlines() would also split at U+2028,
    # U+2029, U+0085 and others, which valid JSON may hold unescaped inside a string.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    result = UserData(path, num_lines=len(lines))
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            result.num_blank_lines += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            message = e.msg.removesuffix(" at")  # json says "Invalid control character at"
            raise DataError(path, number, f"not valid JSON ({message} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, number, 'expected a JSON object like {"prompt": ..., '
                                          f'"completion": ...}}, got {type(obj).__name__}')
        prompt = _pick(obj, prompt_names, "prompt", path, number)
        completion = _pick(obj, completion_names, "completion", path, number)
        result.records.append(Record(prompt, completion, task))
    if not result.records:
        raise DataError(path, None, "file is empty: no examples found")
    return result


def load_csv(path: str, prompt_field: str | Sequence[str] = PROMPT_FIELDS,
             completion_field: str | Sequence[str] = COMPLETION_FIELDS,
             task: str | None = None, delimiter: str = ",") -> UserData:
    """Read a CSV (or TSV with delimiter="\\t") file whose header names the columns.

    Quoted cells may span several lines; the line reported in an error is where its row ends.
    """
    path = str(path)
    text = _read_text(path)
    task = task or os.path.splitext(os.path.basename(path))[0]
    if not text.strip():
        raise DataError(path, None, "file is empty: no header and no examples")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    columns = {}
    for role, names in (("prompt", _names(prompt_field)), ("completion", _names(completion_field))):
        found = [n for n in names if n in header]
        if not found:
            raise DataError(path, 1, f"no column for the {role}: expected one of "
                                     f"{', '.join(names)}; the header has {', '.join(header)}")
        columns[role] = (found[0], header.index(found[0]))
    result = UserData(path, num_lines=text.count("\n") + (not text.endswith("\n")))
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            result.num_blank_lines += 1
            continue
        if len(row) != len(header):
            raise DataError(path, number, f"expected {len(header)} columns like the header, "
                                          f"found {len(row)}")
        values = []
        for role in ("prompt", "completion"):
            name, index = columns[role]
            if not row[index].strip():
                raise DataError(path, number, f"field '{name}' is empty")
            values.append(row[index])
        result.records.append(Record(values[0], values[1], task))
    if not result.records:
        raise DataError(path, None, "file is empty: a header but no examples")
    return result


def load_prompt_completion(path: str, **kwargs) -> UserData:
    """Load .jsonl/.json (JSON Lines), .csv or .tsv, chosen by the file extension."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".jsonl", ".json"):
        return load_jsonl(path, **kwargs)
    if ext == ".csv":
        return load_csv(path, **kwargs)
    if ext == ".tsv":
        return load_csv(path, delimiter="\t", **kwargs)
    raise DataError(str(path), None, f"unknown extension {ext!r}: use .jsonl, .csv or .tsv")
