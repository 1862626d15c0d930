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
import json
import os
import re
from dataclasses import dataclass, field
from typing import Sequence

from ..files import InputFileError, input_lines, parse_json
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


def text_lines(path: str):
    """Yield (line number, text) of a data file, read line by line through ``files.input_lines``.

    Raises:
        DataError: naming the file (missing, not a regular file, too large) or the line (not UTF-8).
    """
    try:
        for number, raw in input_lines(path, "data file"):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, number, f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); "
                                              "save the file with UTF-8 encoding") from None
            yield number, (text.removeprefix("\ufeff") if number == 1 else text)  # Excel's byte-order mark
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except InputFileError as err:
        raise DataError(path, None, str(err).removeprefix(f"{path}: ")) from None


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


def _parse_line(line: str, path: str, number: int):
    """The JSON value of one line; a DataError for invalid JSON or a key given twice in one object."""
    try:
        return parse_json(line, path, "JSON object")
    except json.JSONDecodeError as e:
        message = e.msg.removesuffix(" at")  # json says "Invalid control character at"
        raise DataError(path, number, f"not valid JSON ({message} at column {e.colno})") from None
    except ValueError as e:  # a duplicate key: parse_json names the key
        problem = str(e).split(": line 1: ", 1)[-1]
        raise DataError(path, number, problem) from None


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
    task = task or os.path.splitext(os.path.basename(path))[0]
    prompt_names, completion_names = _names(prompt_field), _names(completion_field)
    result = UserData(path)
    # JSON Lines separates records by "\n" only (as text_lines splits). str.splitlines() would also
    # split at U+2028, U+2029, U+0085 and others, which valid JSON may hold unescaped in a string.
    for number, line in text_lines(path):
        result.num_lines = number
        line = line.removesuffix("\n")
        if not line.strip():
            result.num_blank_lines += 1
            continue
        obj = _parse_line(line, path, number)
        if not isinstance(obj, dict):
            raise DataError(path, number, 'expected a JSON object like {"prompt": ..., '
                                          f'"completion": ...}}, got {type(obj).__name__}')
        prompt = _pick(obj, prompt_names, "prompt", path, number)
        completion = _pick(obj, completion_names, "completion", path, number)
        result.records.append(Record(prompt, completion, task))
    if not result.records:
        raise DataError(path, None, "file is empty: no examples found")
    return result


def _csv_lines(path: str, result: UserData):
    """The file's lines for ``csv.reader``, counting them into ``result.num_lines``.

    A lone carriage return also ends a line, as ``open(newline="")`` would split it for ``csv``.
    """
    for number, line in text_lines(path):
        result.num_lines = number
        yield from (piece for piece in re.split(r"(?<=\r)(?!\n)", line) if piece)


def load_csv(path: str, prompt_field: str | Sequence[str] = PROMPT_FIELDS,
             completion_field: str | Sequence[str] = COMPLETION_FIELDS,
             task: str | None = None, delimiter: str = ",") -> UserData:
    """Read a CSV (or TSV with delimiter="\\t") file whose header names the columns.

    Quoted cells may span several lines; the line reported in an error is where its row ends.
    """
    path = str(path)
    task = task or os.path.splitext(os.path.basename(path))[0]
    result = UserData(path)
    reader = csv.reader(_csv_lines(path, result), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    if not any(header) and not any(any(cell.strip() for cell in row) for row in reader):
        raise DataError(path, None, "file is empty: no header and no examples")
    columns = {}
    for role, names in (("prompt", _names(prompt_field)), ("completion", _names(completion_field))):
        found = [n for n in names if n in header]
        if not found:
            raise DataError(path, 1, f"no column for the {role}: expected one of "
                                     f"{', '.join(names)}; the header has {', '.join(header)}")
        columns[role] = (found[0], header.index(found[0]))
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
    """Load .jsonl/.json (JSON Lines), .csv, .tsv or .parquet (data/parquet.py), chosen by the file extension."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".jsonl", ".json"):
        return load_jsonl(path, **kwargs)
    if ext == ".csv":
        return load_csv(path, **kwargs)
    if ext == ".tsv":
        return load_csv(path, delimiter="\t", **kwargs)
    if ext == ".parquet":
        from .parquet import load_parquet  # noqa: PLC0415  (parquet.py builds on this module)

        return load_parquet(path, **kwargs)
    raise DataError(str(path), None, f"unknown extension {ext!r}: use .jsonl, .csv, .tsv or .parquet")
