"""Edges of minillm/files.py by hand (issue 26): every bound at its exact fit and one past it.

Byte counts, line numbers and modes are worked out in the comments from the bytes each test
writes; none comes from the code under test.
"""
import json
import os
import struct

import numpy as np
import pytest

from minillm import files
from minillm.files import InputFileError


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


# ------------------------------------------------------------------------------ reading, bounded


def test_read_input_accepts_the_exact_limit_and_refuses_one_byte_more(tmp_path):
    path = _write(tmp_path / "f.json", b"12345")
    assert files.read_input(path, 5, "config") == b"12345"
    with pytest.raises(InputFileError, match=r"f\.json: 5 bytes is more than a config may hold \(4 bytes\); refused"):
        files.read_input(path, 4, "config")
    assert files.read_input(_write(tmp_path / "empty", b""), 0) == b""


def test_input_lines_bounds_each_line_and_the_whole_file(tmp_path):
    # Lines "ab\n" (3 bytes), "cde\n" (4), "f" (1, no newline): 8 bytes in all.
    path = _write(tmp_path / "d.jsonl", b"ab\ncde\nf")
    assert list(files.input_lines(path, max_line=4, limit=8)) == [(1, b"ab\n"), (2, b"cde\n"), (3, b"f")]
    with pytest.raises(InputFileError, match=r"d\.jsonl: line 2 is longer than 3 bytes, more than a line of a "
                                             r"data file may hold; refused"):
        list(files.input_lines(path, max_line=3, limit=8))
    with pytest.raises(InputFileError, match=r"d\.jsonl: longer than 7 bytes, more than a data file may hold"):
        list(files.input_lines(path, max_line=4, limit=7))
    # Only "\n" ends a line: "\r" and U+2028 stay inside it.
    path = _write(tmp_path / "u.jsonl", "a\rb\u2028c\nd\n".encode())
    assert [line for _, line in files.input_lines(path)] == ["a\rb\u2028c\n".encode(), b"d\n"]
    assert list(files.input_lines(_write(tmp_path / "e.jsonl", b""))) == []


def test_open_input_names_what_it_refuses(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json: no such file \(expected a config\)"):
        files.open_input(str(tmp_path / "missing.json"), "config")
    with pytest.raises(InputFileError, match=r": is a directory, not a regular file \(expected a config\)"):
        files.open_input(str(tmp_path), "config")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match=r"pipe: is a FIFO \(named pipe\), not a regular file"):
        files.open_input(str(fifo))   # refused at once: opening a FIFO for reading would block
    with files.open_input(_write(tmp_path / "ok", b"x")) as f:
        assert f.read() == b"x"
    # Each reader says what it expected.
    with pytest.raises(FileNotFoundError, match=r"no such file \(expected a data file\)"):
        list(files.input_lines(str(tmp_path / "missing.jsonl")))
    with pytest.raises(InputFileError, match=r"is a directory, not a regular file \(expected a safetensors file\)"):
        files.load_safetensors(str(tmp_path))


@pytest.mark.parametrize("kind, name", [
    ("S_IFDIR", "a directory"), ("S_IFIFO", "a FIFO (named pipe)"), ("S_IFCHR", "a character device"),
    ("S_IFBLK", "a block device"), ("S_IFSOCK", "a socket"), (None, "not a regular file"),
])
def test_each_kind_of_file_that_is_not_regular_is_named(kind, name):
    import stat

    assert files._kind(getattr(stat, kind) | 0o644 if kind else 0o644) == name


# ------------------------------------------------------------------------------ JSON: duplicate keys


@pytest.mark.parametrize("text, line", [
    ('{"a": 1, "a": 2}', 1),
    ('{\n"a": 1,\n"b": {"a": 2},\n"a": 3\n}', 4),          # the inner "a" is another object's
    ('[\n{"a": 1},\n{"a": 2, "b": {"c": 1, "c": 2}}\n]', 3),
    ('{"x": "\\"a\\": {", \n"a": 1, "a": 2}', 2),           # quotes and braces inside a string do not count
    ('{"l": [1, {"a": 1}], "a": [2],\n "a": 3}', 2),
    ('{\n"a" : 1,\n"a" : 2}', 3),                             # a space before the colon
    ('{"x": "a",\n "a": 1,\n "a": 2}', 3),                     # the value "a" is not a key
    ('{"l": ["a", "b"],\n "a": 1,\n "a": 2}', 3),              # nor are strings in a list
])
def test_parse_json_names_the_line_of_a_repeated_key(text, line):
    with pytest.raises(ValueError, match=rf"^src: line {line}: key '(a|c)' appears twice in one object "
                                         r"\(not a valid config: which value is meant\?\)$"):
        files.parse_json(text, "src", "config")


def test_parse_json_accepts_equal_keys_in_different_objects_and_offsets_the_line():
    assert files.parse_json('[{"a": 1}, {"a": 2}]', "src") == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="^src: line 11: key 'a'"):
        files.parse_json('{"a": 1, "a": 1}', "src", line_offset=10)


def test_read_json_names_the_line_of_bad_json_and_of_bad_utf8(tmp_path):
    assert files.read_json(_write(tmp_path / "ok.json", b'{"a": [1, 2]}')) == {"a": [1, 2]}
    with pytest.raises(ValueError, match=r"bad\.json: line 2: not a valid config \(invalid JSON: Expecting value\)"):
        files.read_json(_write(tmp_path / "bad.json", b'{"a":\n}'), "config")
    with pytest.raises(ValueError, match=r"latin\.json: line 3: not a valid config \(not UTF-8 text\)"):
        files.read_json(_write(tmp_path / "latin.json", b'{\n"a":\n"caf\xe9"}'), "config")
    with pytest.raises(InputFileError, match="more than a config may hold"):
        files.read_json(_write(tmp_path / "big.json", b"[1, 2]"), "config", limit=5)
    assert files.read_json(_write(tmp_path / "fit.json", b"[1, 2]"), "config", limit=6) == [1, 2]


# ------------------------------------------------------------------------------ writing: modes and links


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_and_folders_take_their_folders_mode_within_the_umask(tmp_path, umask_022):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o770)
    # file: 0o770 & 0o666 & ~0o022 = 0o644 & 0o770 = 0o640; folder: 0o770 & 0o777 & ~0o022 = 0o750
    assert files.mode_for(folder) == 0o640 and files.mode_for(folder, is_dir=True) == 0o750
    files.make_folder(folder / "a" / "b")
    assert (os.stat(folder / "a").st_mode & 0o777, os.stat(folder / "a" / "b").st_mode & 0o777) == (0o750, 0o750)
    files.make_folder(folder / "a")          # already there: nothing changes
    files.atomic_write_text(folder / "t.json", "{}")
    assert os.stat(folder / "t.json").st_mode & 0o777 == 0o640
    files.append_line(folder / "log.jsonl", '{"step": 1}')
    files.append_line(folder / "log.jsonl", '{"step": 2}')
    assert (folder / "log.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert os.stat(folder / "log.jsonl").st_mode & 0o777 == 0o640


def test_atomic_write_replaces_a_link_and_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("theirs")
    (tmp_path / "out.txt").symlink_to(target)
    files.atomic_write_text(tmp_path / "out.txt", "mine")
    assert target.read_text() == "theirs" and not os.path.islink(tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "mine"

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(tmp_path / "out.txt", failing)
    assert (tmp_path / "out.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.txt", "out.txt"]      # no .tmp left

    def leaves_a_link(tmp):
        os.remove(tmp)
        os.symlink(target, tmp)

    with pytest.raises(OSError, match="became a symbolic link while being written; refused"):
        files.atomic_write(tmp_path / "out.txt", leaves_a_link)
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.txt", "out.txt"] and target.read_text() == "theirs"


def test_append_line_never_writes_through_a_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "log.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        files.append_line(tmp_path / "log.jsonl", "x")
    assert target.read_text() == ""


# ------------------------------------------------------------------------------ safetensors, byte by byte


def _safetensors(path, header: dict, data: bytes, extra: bytes = b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data + extra)
    return str(path)


def test_a_header_that_describes_the_file_exactly_is_read_and_one_byte_off_is_refused(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F16", "shape": [1], "data_offsets": [8, 10]}, "__metadata__": {"format": "np"}}
    data = struct.pack("<2f", 1.5, -2.0) + struct.pack("<e", 0.5)
    path = _safetensors(tmp_path / "ok.safetensors", header, data)
    assert files.read_safetensors_header(path) == {"w": ("F32", (2,)), "b": ("F16", (1,))}
    arrays = files.load_safetensors(path)
    assert arrays["w"].tolist() == [1.5, -2.0] and arrays["b"].tolist() == [0.5] and arrays["b"].dtype == np.float32
    n = len(json.dumps(header))
    with pytest.raises(ValueError, match=rf"truncated: the header describes {8 + n + 10} bytes, the file has {8 + n + 9}"):
        files.read_safetensors_header(_safetensors(tmp_path / "short.safetensors", header, data[:-1]))
    with pytest.raises(ValueError, match=rf"longer than its header says: the header describes {8 + n + 10} bytes"):
        files.read_safetensors_header(_safetensors(tmp_path / "long.safetensors", header, data, b"\0"))


@pytest.mark.parametrize("entries, message", [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [1],
      "data_offsets": [12, 16]}}, "tensor bytes overlap or leave a gap at 12"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [1],
      "data_offsets": [4, 8]}}, "tensor bytes overlap or leave a gap at 4"),
    ({"w": {"dtype": "F31", "shape": [1], "data_offsets": [0, 4]}}, "tensor 'w': unknown dtype 'F31'"),
    ({"w": [1, 2]}, "tensor 'w': unknown dtype [1, 2]"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "shape [-1] is not a list of sizes"),
    ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, "shape [True] is not a list of sizes"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "data_offsets [4, 0]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, "data_offsets [0]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, "data_offsets [-4, 0]"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "shape [2] needs 8 bytes, its data_offsets give 4"),
])
def test_corrupt_headers_are_refused_by_tensor(tmp_path, entries, message):
    path = _safetensors(tmp_path / "bad.safetensors", entries, b"\0" * 16)
    with pytest.raises(ValueError, match="bad.safetensors: corrupt safetensors header") as info:
        files.read_safetensors_header(path)
    assert message in str(info.value)


def test_a_file_shorter_than_its_header_length_and_one_of_seven_bytes(tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", 100) + b"{}")
    with pytest.raises(ValueError, match=r"header of 100 bytes in a file of 10 bytes"):
        files.read_safetensors_header(str(path))
    path.write_bytes(b"\0" * 7)
    with pytest.raises(ValueError, match=r"not a safetensors file \(7 bytes: truncated before the header\)"):
        files.read_safetensors_header(str(path))
    path.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(ValueError, match=r"corrupt safetensors header \(not a JSON object\)"):
        files.read_safetensors_header(str(path))
    path.write_bytes(struct.pack("<Q", 2) + b"\xff{")
    with pytest.raises(ValueError, match=r"corrupt safetensors header \(not JSON\)"):
        files.read_safetensors_header(str(path))


def test_bfloat16_and_float16_bits_by_hand():
    # bfloat16 is the top half of a float32: 0x3F80 → 0x3F800000 = 1.0, 0xC000 → -2.0.
    # float16 0x3C00 = 1.0, 0x3800 = 0.5.
    bf16 = files._as_float(np.array([0x3F80, 0xC000], dtype="<u2"), "BF16")
    assert bf16.dtype == np.float32 and bf16.tolist() == [1.0, -2.0]
    assert files._as_float(np.array([0x3C00, 0x3800], dtype="<u2").view("<f2"), "F16").tolist() == [1.0, 0.5]
    f64 = files._as_float(np.array([0.25], dtype="<f8"), "F64")
    assert f64.dtype == np.float64 and f64.tolist() == [0.25]


def test_integer_weights_are_refused_and_nan_weights_are_counted(tmp_path):
    path = _safetensors(tmp_path / "i.safetensors", {"w": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}},
                        b"\0" * 4)
    with pytest.raises(ValueError, match=r"tensor 'w' holds I32 values, but weights must be floating point "
                                         r"\(F32, F64, F16, BF16\); refused rather than cast"):
        files.load_safetensors(path)
    arrays = {f"t{i}": np.array([np.nan, 1.0, np.inf]) for i in range(7)}
    arrays["fine"] = np.ones(2)
    with pytest.raises(ValueError) as info:
        files.check_finite(arrays, "w.safetensors")
    assert str(info.value) == (
        "w.safetensors: 7 tensor(s) hold nan or inf: t0 (2 of 3 values), t1 (2 of 3 values), t2 (2 of 3 values), "
        "t3 (2 of 3 values), t4 (2 of 3 values) and 2 more; these weights cannot compute anything (did the run "
        "that saved them diverge?)")
    files.check_finite({"fine": np.ones(2)}, "w.safetensors")
