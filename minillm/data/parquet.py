"""Load [prompt, completion] data from Parquet, the format the Hugging Face Hub serves datasets in.

    minillm finetune --data train.parquet ...        (needs the extra: pip install "minillm[parquet]")

The columns are found by the same names as in JSONL and CSV (prompt/input/instruction/source,
completion/output/response/target, or ``prompt_field=`` / ``completion_field=``), and bad data is
reported as there, with the row instead of the line:

    train.parquet, row 7: field 'completion' is empty

The file is checked before it is read: a regular file (``files.open_input``: no FIFO, device or
folder), at most ``files.MAX_DATA_BYTES``, a valid Parquet footer, and string columns. Rows are
then read one row group at a time, only the two columns needed.
"""
from __future__ import annotations

import os
from typing import Sequence

from ..files import MAX_DATA_BYTES, InputFileError, open_input
from .collate import Record
from .jsonl import COMPLETION_FIELDS, PROMPT_FIELDS, DataError, UserData


class RowError(DataError):
    """A problem in one row of a Parquet file; the message starts with "file, row N:"."""

    def __init__(self, path: str, row: int, problem: str):
        ValueError.__init__(self, f"{path}, row {row}: {problem}")
        self.path, self.line, self.row, self.problem = path, None, row, problem


def _open(path: str):
    """(pyarrow.parquet.ParquetFile, file object) for a regular, bounded, valid Parquet file."""
    try:
        import pyarrow  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise DataError(path, None, "reading Parquet needs pyarrow: pip install \"minillm[parquet]\"") from None
    try:
        f = open_input(path, "data file")
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except InputFileError as err:
        raise DataError(path, None, str(err).removeprefix(f"{path}: ")) from None
    size = os.fstat(f.fileno()).st_size
    if size > MAX_DATA_BYTES:
        f.close()
        raise DataError(path, None, f"{size} bytes is more than a data file may hold ({MAX_DATA_BYTES} bytes)")
    try:
        return pq.ParquetFile(f), f
    except (pyarrow.ArrowException, OSError, ValueError) as err:
        f.close()
        raise DataError(path, None, f"not a valid Parquet file ({err})") from None


def _column(schema, names: tuple[str, ...], role: str, path: str) -> str:
    """The first of ``names`` among the file's columns, checked to hold strings."""
    import pyarrow as pa  # noqa: PLC0415

    found = [n for n in names if n in schema.names]
    if not found:
        raise DataError(path, None, f"no column for the {role}: expected one of {', '.join(names)}; "
                                    f"the file has {', '.join(schema.names)}")
    kind = schema.field(found[0]).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(path, None, f"column '{found[0]}' must hold strings, but holds {kind}")
    return found[0]


def _check(value, name: str, path: str, row: int) -> str:
    if value is None:
        raise RowError(path, row, f"field '{name}' is missing (null)")
    if not value.strip():
        raise RowError(path, row, f"field '{name}' is empty")
    return value


def load_parquet(path: str, prompt_field: str | Sequence[str] = PROMPT_FIELDS,
                 completion_field: str | Sequence[str] = COMPLETION_FIELDS, task: str | None = None) -> UserData:
    """Read the prompt and completion columns of a Parquet file (rows numbered from 1).

    Raises:
        DataError: the file (missing, not Parquet, no such column, not strings) or its row.
    """
    path = str(path)
    task = task or os.path.splitext(os.path.basename(path))[0]
    names = [(spec,) if isinstance(spec, str) else tuple(spec) for spec in (prompt_field, completion_field)]
    parquet, f = _open(path)
    result = UserData(path)
    with f:
        schema = parquet.schema_arrow
        columns = [_column(schema, n, role, path) for n, role in zip(names, ("prompt", "completion"))]
        row = 0
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns)
            for prompt, completion in zip(*(table.column(c).to_pylist() for c in columns)):
                row += 1
                result.records.append(Record(_check(prompt, columns[0], path, row),
                                             _check(completion, columns[1], path, row), task))
    result.num_lines = row
    if not result.records:
        raise DataError(path, None, "file is empty: no rows")
    return result
