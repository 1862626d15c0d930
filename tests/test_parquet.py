"""Parquet data (the optional pyarrow extra): the same field names and located errors as JSONL/CSV."""
import json
import os

import pytest

pa = pytest.importorskip("pyarrow", reason="Parquet data needs the optional pyarrow extra")
pq = pytest.importorskip("pyarrow.parquet")

from minillm.data import load_prompt_completion  # noqa: E402
from minillm.data.jsonl import DataError  # noqa: E402


def write(path, columns: dict, row_group_size=None):
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def test_rows_come_back_in_order_across_row_groups_with_the_accepted_names(tmp_path):
    path = write(tmp_path / "train.parquet", {"instruction": [f"q{i}" for i in range(7)],
                                             "response": [f"a{i}" for i in range(7)], "id": list(range(7))},
                 row_group_size=3)
    assert pq.ParquetFile(path).num_row_groups == 3
    data = load_prompt_completion(path)
    assert [(r.prompt, r.completion, r.task) for r in data] == [(f"q{i}", f"a{i}", "train") for i in range(7)]
    assert data.num_lines == 7


def test_the_same_records_as_from_jsonl(tmp_path):
    rows = [{"prompt": "Translate: dog", "completion": "Hund"}, {"prompt": "Zähle: 1, 2", "completion": "3 ✓"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write(tmp_path / "d.parquet", {k: [r[k] for r in rows] for k in ("prompt", "completion")})
    assert list(load_prompt_completion(tmp_path / "d.parquet")) == list(load_prompt_completion(tmp_path / "d.jsonl"))


@pytest.mark.parametrize("columns, message", [
    ({"prompt": ["a", "b", "c"], "completion": ["x", None, "z"]}, "d.parquet, row 2: field 'completion' is missing"),
    ({"prompt": ["a", "b", "  "], "completion": ["x", "y", "z"]}, "d.parquet, row 3: field 'prompt' is empty"),
    ({"question": ["a"], "completion": ["x"]}, "d.parquet: no column for the prompt: expected one of prompt, input, "
                                              "instruction, source; the file has question, completion"),
    ({"prompt": [1, 2], "completion": ["x", "y"]}, "d.parquet: column 'prompt' must hold strings, but holds int64"),
    ({"prompt": pa.array([], pa.string()), "completion": pa.array([], pa.string())}, "d.parquet: file is empty"),
])
def test_bad_data_is_located_by_file_and_row(tmp_path, columns, message):
    path = write(tmp_path / "d.parquet", columns)
    with pytest.raises(DataError) as err:
        load_prompt_completion(path)
    assert message in str(err.value)


def test_a_row_is_numbered_across_row_groups(tmp_path):
    completions = [f"a{i}" for i in range(8)]
    completions[6] = ""  # row 7, in the third group of 3
    path = write(tmp_path / "d.parquet", {"prompt": [f"q{i}" for i in range(8)], "completion": completions},
                 row_group_size=3)
    with pytest.raises(DataError, match=r"d.parquet, row 7: field 'completion' is empty"):
        load_prompt_completion(path)


def test_a_file_that_is_not_parquet_or_not_a_regular_file_is_refused_by_name(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataError, match=r"junk.parquet: not a valid Parquet file"):
        load_prompt_completion(tmp_path / "junk.parquet")
    os.mkfifo(tmp_path / "fifo.parquet")
    with pytest.raises(DataError, match=r"fifo.parquet: is a FIFO"):
        load_prompt_completion(tmp_path / "fifo.parquet")  # refused without blocking
    with pytest.raises(DataError, match=r"missing.parquet: no such file"):
        load_prompt_completion(tmp_path / "missing.parquet")


def test_finetune_takes_a_parquet_file(tmp_path, monkeypatch):
    from minillm.cli.main import main

    monkeypatch.setenv("MINILLM_SMOKE", "1")
    path = write(tmp_path / "train.parquet", {"prompt": [f"What is {a} plus 1?" for a in range(12)],
                                             "completion": [str(a + 1) for a in range(12)]})
    assert main(["finetune", "--data", path, "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
