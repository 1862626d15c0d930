"""Specification of user data loading: aliases, and errors that name file, line and problem."""
import json

import pytest

from minillm.data.jsonl import DataError, load_csv, load_jsonl, load_prompt_completion


class WordTokenizer:
    """One id per word, then </s> = 1 (enough to count truncation by hand)."""

    pad_token_id, eos_token_id = 0, 1

    def batch_encode(self, texts, padding=False):
        return {"input_ids": [[3] * len(t.split()) + [1] for t in texts]}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def test_loads_prompt_completion_lines_and_counts_blank_ones(tmp_path):
    path = write(tmp_path, "qa.jsonl", '{"prompt": "2+2?", "completion": "4"}\n\n'
                                       '{"prompt": "3+3?", "completion": "6", "extra": 1}\n')
    data = load_jsonl(path)
    assert [(r.prompt, r.completion, r.task) for r in data] == [("2+2?", "4", "qa"), ("3+3?", "6", "qa")]
    assert (len(data), data.num_lines, data.num_blank_lines) == (2, 3, 1)


@pytest.mark.parametrize("keys", [("input", "output"), ("instruction", "response")])
def test_common_field_aliases_are_accepted(tmp_path, keys):
    path = write(tmp_path, "d.jsonl", f'{{"{keys[0]}": "hi", "{keys[1]}": "hello"}}\n')
    assert load_jsonl(path)[0][:2] == ("hi", "hello")


def test_custom_field_names(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"question": "q", "answer": "a", "prompt": "ignored"}\n')
    data = load_jsonl(path, prompt_field="question", completion_field=["answer"], task="mine")
    assert data[0] == ("q", "a", "mine")


@pytest.mark.parametrize("line, problem", [
    ('{"prompt": "a", "completion": "b"', "not valid JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"prompt": "a"}', "missing field 'completion'"),
    ('{"prompt": 42, "completion": "b"}', "field 'prompt' must be a string, got int"),
    ('{"prompt": "a", "completion": "  "}', "field 'completion' is empty"),
])
def test_jsonl_errors_name_the_file_the_line_and_the_problem(tmp_path, line, problem):
    good = '{"prompt": "x", "completion": "y"}\n'
    path = write(tmp_path, "bad.jsonl", good + "\n" + line + "\n" + good)
    with pytest.raises(DataError, match=problem) as err:
        load_jsonl(path)
    assert str(err.value).startswith(f"{path}, line 3: ")
    assert err.value.line == 3 and err.value.path == path


def test_missing_field_lists_the_accepted_names(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "completion": "b"}\n')
    with pytest.raises(DataError, match="prompt, input, instruction"):
        load_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_files_are_errors(tmp_path, content):
    path = write(tmp_path, "empty.jsonl", content)
    with pytest.raises(DataError, match="empty") as err:
        load_jsonl(path)
    assert str(err.value).startswith(path)


def test_bad_encoding_names_the_line(tmp_path):
    content = b'{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n' \
              b'{"prompt": "caf\xe9", "completion": "e"}\n'
    path = write(tmp_path, "latin1.jsonl", content)
    with pytest.raises(DataError, match=r"line 3: not valid UTF-8 \(byte 0xe9\)"):
        load_jsonl(path)


def test_csv_with_header_aliases_and_multiline_cells(tmp_path):
    path = write(tmp_path, "d.csv", 'id,input,output\n1,hello,world\n2,"two\nlines","x, y"\n')
    data = load_csv(path)
    assert [r[:2] for r in data] == [("hello", "world"), ("two\nlines", "x, y")]


@pytest.mark.parametrize("content, line, problem", [
    ("question,completion\nq,a\n", 1, "no column for the prompt"),
    ("prompt,completion\nq,a\nr\n", 3, "expected 2 columns"),
    ("prompt,completion\nq,a\nr,\n", 3, "field 'completion' is empty"),
])
def test_csv_errors_name_the_file_the_line_and_the_problem(tmp_path, content, line, problem):
    path = write(tmp_path, "d.csv", content)
    with pytest.raises(DataError, match=problem) as err:
        load_csv(path)
    assert str(err.value).startswith(f"{path}, line {line}: ")


def test_csv_with_only_a_header_is_empty(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_csv(write(tmp_path, "d.csv", "prompt,completion\n"))


def test_load_prompt_completion_dispatches_on_extension(tmp_path):
    tsv = write(tmp_path, "d.tsv", "prompt\tcompletion\na, b\tc\n")
    assert load_prompt_completion(tsv)[0][:2] == ("a, b", "c")
    jsonl = write(tmp_path, "d.jsonl", '{"prompt": "a", "completion": "b"}\n')
    assert len(load_prompt_completion(jsonl)) == 1
    with pytest.raises(DataError, match="unknown extension"):
        load_prompt_completion(write(tmp_path, "d.txt", "a"))


def test_truncation_report_counts_long_examples(tmp_path):
    lines = ['{"prompt": "one two three four", "completion": "a"}',   # 5 tokens with </s>
             '{"prompt": "one", "completion": "a b c"}',               # target 4 tokens
             '{"prompt": "one two", "completion": "a"}']
    data = load_jsonl(write(tmp_path, "d.jsonl", "\n".join(lines)))
    report = data.truncation_report(WordTokenizer(), max_source_length=4, max_target_length=3)
    assert (report.num_examples, report.num_source_truncated, report.num_target_truncated) == (3, 1, 1)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c"])
def test_json_lines_are_split_on_newline_only(tmp_path, separator):
    # Valid JSON may hold these characters unescaped inside a string; str.splitlines() breaks on them.
    lines = [json.dumps({"prompt": f"a{separator}b", "completion": "c"}, ensure_ascii=False),
             json.dumps({"prompt": "d", "completion": f"e{separator}"}, ensure_ascii=False)]
    data = load_jsonl(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert [(r.prompt, r.completion) for r in data] == [(f"a{separator}b", "c"), ("d", f"e{separator}")]
    assert data.num_lines == 2


def test_windows_line_ends_load_and_lines_are_counted_once(tmp_path):
    data = load_jsonl(write(tmp_path, "d.jsonl", '{"prompt": "a", "completion": "b"}\r\n\r\n'
                                                 '{"prompt": "c", "completion": "d"}\r\n'))
    assert [r.prompt for r in data] == ["a", "c"] and (data.num_lines, data.num_blank_lines) == (3, 1)


def test_a_control_character_message_reads_once(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"prompt": "a\tb", "completion": "c"}\n')
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    assert str(err.value) == f"{path}, line 1: not valid JSON (Invalid control character at column 14)"  # the tab: 14th character
