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
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 8]}}, "shape [2] needs 8 bytes, its data_offsets give 4"),
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


# ------------------------------------------------------------------------------ issue 26: files.py's mutation survivors


def test_each_reader_names_a_plain_file_when_told_nothing_and_the_kind_it_was_given(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=r"missing\.json: no such file \(expected a file\)$"):
        files.open_input(missing)
    with pytest.raises(FileNotFoundError, match=r"missing\.json: no such file \(expected a config\)$"):
        files.read_input(missing, 5, "config")
    # 3 bytes against a bound of 2: the size the file really has, not some other count.
    with pytest.raises(InputFileError, match=r"abc: 3 bytes is more than a file may hold \(2 bytes\); refused$"):
        files.read_input(_write(tmp_path / "abc", b"abc"), 2)
    with pytest.raises(ValueError, match=r"^src: line 1: key 'a' appears twice in one object \(not a valid file: "):
        files.parse_json('{"a": 1, "a": 2}', "src")
    with pytest.raises(ValueError, match=r"bad\.json: line 1: not a valid file \(invalid JSON: "):
        files.read_json(_write(tmp_path / "bad.json", b"{"))
    with pytest.raises(ValueError, match=r"dup\.json: line 2: key 'a' appears twice in one object \(not a valid "
                                         r"config: which value is meant\?\)$"):
        files.read_json(_write(tmp_path / "dup.json", b'{"a": 1,\n"a": 2}'), "config")


def test_a_path_that_cannot_be_opened_is_named_with_the_systems_reason(tmp_path):
    import errno

    loop = tmp_path / "loop"
    loop.symlink_to(loop)                     # a link to itself: open() fails with ELOOP
    reason = os.strerror(errno.ELOOP)
    with pytest.raises(InputFileError, match=rf"loop: cannot open the config \({reason}\)$"):
        files.open_input(str(loop), "config")


def test_the_opened_descriptor_is_blocking_again(tmp_path):
    # Opened with O_NONBLOCK so that a FIFO cannot hang the open; the caller gets an ordinary file.
    with files.open_input(_write(tmp_path / "f", b"x")) as f:
        assert os.get_blocking(f.fileno()) is True


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_a_file_that_holds_more_than_its_size_says_is_still_read_with_the_bound():
    # /proc files report st_size 0 but hold text (status: over a hundred bytes). With a bound of 10,
    # read_input reads at most 10 + 1 bytes, and the 11th byte is what refuses it.
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(InputFileError, match=r"status: 11 bytes is more than a file may hold \(10 bytes\); refused"):
        files.read_input("/proc/self/status", 10)


@pytest.mark.parametrize("text, key, line", [
    # json builds an object when it closes, so the inner object (closed on line 4) is refused first,
    # though the outer "a" (or "c") repeats earlier, on line 2.
    ('{"a": 1,\n"a": 2,\n"b": {"c": 1,\n"c": 2}}', "c", 4),
    ('{"c": 1,\n"c": 2,\n"b": {"c": 1,\n"c": 2}}', "c", 4),
    ('[{"a": 1,\n"a": 2},\n{"b": 1, "b": 2}]', "a", 2),      # of two siblings, the first to close
    ('{"a": {"b": 1},\n"c": [{"d": 1,\n"e": 2,\n"d": 3}]}', "d", 4),
    ('\n{"a": 1, "a": 2}', "a", 2),                         # a newline before the first brace counts
])
def test_the_line_named_is_that_of_the_key_named(text, key, line):
    with pytest.raises(ValueError, match=rf"^src: line {line}: key '{key}' appears twice"):
        files.parse_json(text, "src")


def test_a_repeated_key_in_a_safetensors_header_is_named_as_such(tmp_path):
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    raw = f'{{"w": {entry}, "w": {entry}}}'.encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    with pytest.raises(ValueError, match=r"dup\.safetensors: line 1: key 'w' appears twice in one object "
                                         r"\(not a valid safetensors header: which value is meant\?\)"):
        files.read_safetensors_header(str(path))


def test_the_temporary_file_is_named_after_the_target_beside_it(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        with open(tmp, "w") as f:
            f.write("x")

    files.atomic_write(tmp_path / "out.txt", write)
    (tmp,) = seen
    # "<name>.<random>.tmp" in the target's own folder (so the rename never crosses file systems)
    name = os.path.basename(tmp)
    assert os.path.dirname(tmp) == str(tmp_path)
    assert name.startswith("out.txt.") and name.endswith(".tmp") and len(name) > len("out.txt..tmp")
    assert (tmp_path / "out.txt").read_text() == "x" and not os.path.exists(tmp)


def test_save_safetensors_keeps_the_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    files.save_safetensors(path, {"w": np.ones(2, dtype=np.float32)}, metadata={"format": "np", "note": "x"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])       # the header's length, then the header itself
    assert json.loads(raw[8:8 + n])["__metadata__"] == {"format": "np", "note": "x"}
    assert files.load_safetensors(path)["w"].tolist() == [1.0, 1.0]


def test_atomic_write_text_writes_utf8_whatever_the_locale(tmp_path):
    # In the C locale with UTF-8 mode off, Python's default text encoding is ASCII; "café ✓" must
    # still come out as UTF-8: c a f, 0xC3 0xA9 (é), space, 0xE2 0x9C 0x93 (✓).
    import subprocess
    import sys

    files.atomic_write_text(tmp_path / "here.txt", "caf\u00e9 \u2713")   # in this process too (so mutmut
    assert (tmp_path / "here.txt").read_bytes() == b"caf\xc3\xa9 \xe2\x9c\x93"  # counts the test as covering it)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = ("import sys; from minillm.files import atomic_write_text; "
            "atomic_write_text(sys.argv[1], 'caf\\u00e9 \\u2713')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.txt")], env=env, check=True, timeout=60)
    assert (tmp_path / "t.txt").read_bytes() == b"caf\xc3\xa9 \xe2\x9c\x93"


@pytest.mark.parametrize("bad, suffix", [(1, ""), (5, ""), (6, " and 1 more")])
def test_check_finite_names_five_tensors_then_counts_the_rest(bad, suffix):
    arrays = {f"t{i}": np.array([np.nan, 1.0]) for i in range(bad)}
    with pytest.raises(ValueError) as info:
        files.check_finite(arrays, "w.safetensors")
    shown = ", ".join(f"t{i} (1 of 2 values)" for i in range(min(bad, 5)))
    assert str(info.value) == (f"w.safetensors: {bad} tensor(s) hold nan or inf: {shown}{suffix}; these weights "
                               "cannot compute anything (did the run that saved them diverge?)")


def test_input_lines_reads_no_more_than_one_byte_past_the_line_bound(tmp_path, monkeypatch):
    # A 100-byte line against max_line 3: refused after reading 3 + 1 bytes of it, not the whole line.
    path = _write(tmp_path / "long.jsonl", b"x" * 100 + b"\n")
    reads = []
    real_open = files.open_input

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def readline(self, size=-1):
            line = self.f.readline(size)
            reads.append(len(line))
            return line

    monkeypatch.setattr(files, "open_input", lambda path, what: Spy(real_open(path, what)))
    with pytest.raises(InputFileError, match="line 1 is longer than 3 bytes"):
        list(files.input_lines(path, max_line=3))
    assert reads == [4]


def test_a_safetensors_file_that_shrinks_while_being_read_is_refused_by_tensor(tmp_path, monkeypatch):
    # 8192 floats (32 KiB, more than the reader buffers while it reads the header), 4 bytes cut.
    header = {"w": {"dtype": "F32", "shape": [8192], "data_offsets": [0, 32768]}}
    path = _safetensors(tmp_path / "w.safetensors", header, b"\0" * 32768)
    real = files._read_header

    def header_then_truncate(f, source):
        result = real(f, source)
        os.truncate(path, os.path.getsize(path) - 4)    # another process cuts the last 4 bytes
        return result

    monkeypatch.setattr(files, "_read_header", header_then_truncate)
    with pytest.raises(ValueError, match=r"w\.safetensors: truncated while reading tensor 'w' "
                                         r"\(did the file change\?\)"):
        files.load_safetensors(path)


def test_load_safetensors_and_the_header_reader_name_the_file_and_what_they_expected(tmp_path):
    with pytest.raises(InputFileError, match=r"is a directory, not a regular file \(expected a safetensors file\)$"):
        files.read_safetensors_header(str(tmp_path))
    path = tmp_path / "cut.safetensors"
    path.write_bytes(b"\0" * 7)
    with pytest.raises(ValueError, match=r"cut\.safetensors: not a safetensors file \(7 bytes"):
        files.load_safetensors(str(path))


def test_own_folder_replaces_a_link_by_a_real_folder_and_leaves_the_target(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("theirs")
    (tmp_path / "best").symlink_to(target)
    files.own_folder(tmp_path / "best")
    assert os.path.isdir(tmp_path / "best") and not os.path.islink(tmp_path / "best")
    assert os.listdir(tmp_path / "best") == [] and (target / "keep.txt").read_text() == "theirs"


def test_an_empty_tensor_is_a_valid_entry(tmp_path):
    # shape [0] and [2, 0] hold no values: zero bytes, data_offsets [0, 0], then 4 bytes for "w".
    header = {"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
              "f": {"dtype": "F32", "shape": [2, 0], "data_offsets": [0, 0]},
              "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    path = _safetensors(tmp_path / "e.safetensors", header, struct.pack("<f", 3.0))
    assert files.read_safetensors_header(path) == {"e": ("F32", (0,)), "f": ("F32", (2, 0)), "w": ("F32", (1,))}
    arrays = files.load_safetensors(path)
    assert arrays["e"].shape == (0,) and arrays["f"].shape == (2, 0) and arrays["w"].tolist() == [3.0]


def test_the_header_length_bound_at_exact_fit_one_past_and_at_two_to_the_64(tmp_path, monkeypatch):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 2) + b"{}")                       # a header of 2 bytes, no tensors
    monkeypatch.setattr(files, "MAX_HEADER_BYTES", 2)
    assert files.read_safetensors_header(str(path)) == {}
    monkeypatch.setattr(files, "MAX_HEADER_BYTES", 1)
    with pytest.raises(ValueError, match=r"header of 2 bytes in a file of 10 bytes"):
        files.read_safetensors_header(str(path))
    # The length is unsigned: 8 bytes of 0xFF are 2**64 - 1 = 18446744073709551615, not -1.
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ValueError, match=r"header of 18446744073709551615 bytes in a file of 10 bytes"):
        files.read_safetensors_header(str(path))
