"""Files minillm reads and writes: one way to open an input, one way to write into a folder.

The rules that keep a user's files safe, whoever wrote the folder they opened:

* **An input is a regular file, read with a bound.** ``open_input`` opens with ``O_NONBLOCK``
  (so a FIFO with no writer cannot block the open) and then asks the open descriptor what it is
  (``fstat``): a FIFO, a device such as ``/dev/zero`` or a folder is refused by name, and since
  the question is asked of the descriptor, not the path, the file cannot be swapped in between.
  ``read_input`` refuses a file larger than the bound given for its kind before reading it, and
  ``input_lines`` reads JSONL/CSV/text line by line with a bound on each line.
* **JSON means one value per key.** ``parse_json`` refuses a key written twice in one object
  (Python's ``json`` would keep the second silently), naming the file, the line and the key.
* **Nothing is lost mid-write, and no write follows a link.** ``atomic_write`` writes to a
  temporary name beside the target (created with ``O_EXCL``, which never follows a symlink),
  fsyncs, then renames it over the target (``os.replace`` is atomic within one file system, and
  replaces a symlink itself rather than the file it points to): a crash leaves the old file or
  the new one, never half of either, and a ``results.json`` planted as a link to a file elsewhere
  is replaced, not written through. ``append_line`` opens with ``O_NOFOLLOW``.
* **A new file or folder takes the mode of the folder it is made in** (without execute bits for
  a file, and never more than the umask allows): a private run folder (0700) stays private, an
  ordinary one (0755) gets 0644 files and 0755 sub-folders. ``tempfile`` alone would make every
  file 0600 and every folder 0700.
* **A file is checked before memory is allocated for it.** A safetensors file is an 8-byte
  little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets"}}``,
  then the raw bytes. ``read_safetensors_header`` checks that JSON against the file's real size,
  so a truncated or corrupt file is refused by name before any array is built; the arrays are
  then read from the same descriptor, float16 and bfloat16 upcast to float32.
* **A folder reaches only its own files.** ``confined_path`` refuses a relative path from a file
  (a shard name in an index, say) that is absolute or climbs out with ``..``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

# Bytes per element of the safetensors dtypes minillm can be handed.
SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                        "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header
# Bounds on what one input may hold: far above any real file of the kind, far below memory.
MAX_JSON_BYTES = 64 * 2**20        # config.json, adapter_config.json, trainer_state.json, --config
MAX_TOKENIZER_BYTES = 512 * 2**20  # a tokenizer.json (T5's is 2.4 MB, large multilingual ones ~20 MB)
MAX_DATA_BYTES = 4 * 2**30         # a JSONL/CSV/text data file, or log.jsonl
MAX_LINE_BYTES = 64 * 2**20        # one line of such a file


class InputFileError(ValueError):
    """An input that is not a regular file, is larger than its bound, or cannot be read."""


# ---------------------------------------------------------------------------------- reading
def open_input(path, what: str = "file"):
    """A binary file object for the regular file ``path``; anything else is refused without blocking.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        InputFileError: naming ``path`` when it is a folder, FIFO, device or socket, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (expected a {what})") from None
    except OSError as err:
        raise InputFileError(f"{path}: cannot open the {what} ({err.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputFileError(f"{path}: is {_kind(mode)}, not a regular file (expected a {what})")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a file mode that is not a regular file's."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_input(path, limit: int, what: str = "file") -> bytes:
    """All bytes of the regular file ``path``, refused by name when it holds more than ``limit``."""
    with open_input(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise InputFileError(f"{path}: {max(size, len(data))} bytes is more than a {what} may hold "
                             f"({limit} bytes); refused")
    return data


def input_lines(path, what: str = "data file", limit: int = MAX_DATA_BYTES, max_line: int = MAX_LINE_BYTES):
    """Yield ``(line number, bytes)`` of the regular file ``path``, split at ``\\n`` only, newline kept.

    The whole file and each line are bounded: a line longer than ``max_line`` (a file without
    newlines, say) is refused by line number before it fills memory.
    """
    total = 0
    with open_input(path, what) as f:
        for number in itertools.count(1):
            line = f.readline(max_line + 1)
            if not line:
                return
            total += len(line)
            if len(line) > max_line:
                raise InputFileError(f"{path}: line {number} is longer than {max_line} bytes, more than a line "
                                     f"of a {what} may hold; refused")
            if total > limit:
                raise InputFileError(f"{path}: longer than {limit} bytes, more than a {what} may hold; refused")
            yield number, line


def parse_json(text: str, source, what: str = "file", line_offset: int = 0):
    """``json.loads(text)`` refusing duplicate keys; a ValueError names ``source``, the line and the key.

    Args:
        line_offset: added to line numbers (for JSON read from one line of a larger file).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        line = line_offset + _duplicate_line(text)
        raise ValueError(f"{source}: line {line}: key {dup.key!r} appears twice in one object "
                         f"(not a valid {what}: which value is meant?)") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list) -> dict:
    """``object_pairs_hook``: the object as a dict, or _DuplicateKey for its first repeated key."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _duplicate_line(text: str) -> int:
    """The line (1-based) of the repeated key that ``json`` refuses first in the valid JSON ``text``.

    ``json`` builds an object when it closes, so the object refused is the first one to *close*
    holding a repeated key (an inner object before its outer one), at its first repeat. The walk
    keeps, per open object, the keys seen so far and the line of its first repeat; strings are
    skipped whole by ``json``'s own scanner, so braces and quotes inside them do not count.
    """
    scan = json.decoder.scanstring
    stack, i = [], 0  # per open bracket: [keys, line of the first repeat] for "{", None for "["
    while i < len(text):
        char = text[i]
        if char == '"':
            value, end = scan(text, i + 1)
            if stack and stack[-1] is not None and text[end:].lstrip().startswith(":"):
                keys = stack[-1]
                if value in keys[0] and keys[1] is None:
                    keys[1] = text.count("\n", 0, i) + 1
                keys[0].add(value)
            i = end
            continue
        if char in "{[":
            stack.append([set(), None] if char == "{" else None)
        elif char in "}]":
            closed = stack.pop()
            if closed is not None and closed[1] is not None:
                return closed[1]
        i += 1
    return 1


def read_json(path, what: str = "file", limit: int = MAX_JSON_BYTES):
    """Parse a JSON file; a ValueError names the file and the line when it is not valid JSON.

    The file must be a regular file of at most ``limit`` bytes, in UTF-8, with no key repeated
    within an object (``parse_json``).
    """
    data = read_input(path, limit, what)
    try:
        return parse_json(data.decode("utf-8"), path, what)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not a valid {what} (invalid JSON: {err.msg})") from None
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not a valid {what} (not UTF-8 text)") from None


# ---------------------------------------------------------------------------------- writing
def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def mode_for(directory, is_dir: bool = False) -> int:
    """The mode of a new file (or folder) in ``directory``: the folder's own, within the umask."""
    folder = os.stat(directory).st_mode & 0o777
    return folder & (0o777 if is_dir else 0o666) & ~_umask()


def make_folder(path) -> None:
    """Create ``path`` (and missing parents) with the mode of the folder it is made in."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_folder(parent)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode_for(parent, is_dir=True))


def own_folder(path) -> None:
    """Make ``path``, a sub-folder a run writes (``best/``), a real folder of its run folder: a
    symlink there is removed, never written through; a missing folder gets the run folder's mode."""
    if os.path.islink(path):
        os.remove(path)
    make_folder(path)


def fsync_directory(path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    The temporary name is ``<name>.<random>.tmp``; if anything fails it is removed and the error
    propagates (an old ``path`` is untouched). A symlink at ``path`` is replaced, never followed.
    The file takes the mode of its folder (``mode_for``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp_path)
        if os.path.islink(tmp_path):  # a writer that left a link in the temporary's place
            raise OSError(f"{tmp_path}: became a symbolic link while being written; refused")
        os.chmod(tmp_path, mode_for(directory))  # after write: a writer may replace the file
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.lexists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def append_line(path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` in one write, never through a symlink (``O_NOFOLLOW``).

    Raises:
        OSError: naming ``path`` when it is a symlink (``ELOOP``) or cannot be written.
    """
    path = os.fspath(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode_for(os.path.dirname(os.path.abspath(path))))
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- safetensors
# The float dtypes a model's weights may have, as NumPy reads their bytes; BF16 is read as its bits.
FLOAT_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2"}


def read_safetensors_header(path) -> dict:
    """{name: (dtype, shape)} of a safetensors file, checked against the file's size.

    Raises:
        ValueError: naming ``path``, when the file is shorter than its header says (truncated),
            the header is not the JSON safetensors writes, or the tensors' byte ranges overlap,
            leave gaps, or disagree with their shapes.
    """
    with open_input(path, "safetensors file") as f:
        entries, _ = _read_header(f, path)
    return {name: (dtype, shape) for name, (dtype, shape, _) in entries.items()}


def _read_header(f, path) -> tuple[dict, int]:
    """({name: (dtype, shape, (begin, end))}, offset of the data) of the open safetensors file ``f``."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise ValueError(f"{path}: not a safetensors file ({size} bytes: truncated before the header)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise ValueError(f"{path}: corrupt or truncated safetensors file (header of {n} bytes in a file "
                         f"of {size} bytes)")
    raw = f.read(n)
    try:
        header = parse_json(raw.decode("utf-8"), path, "safetensors header")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    entries = {name: (*_check_entry(path, name, entry), tuple(entry["data_offsets"]))
               for name, entry in header.items()}
    expected = 0
    for begin, end in sorted(span for _, _, span in entries.values()):
        if begin != expected:
            raise ValueError(f"{path}: corrupt safetensors header (tensor bytes overlap or leave a gap at {begin})")
        expected = end
    if 8 + n + expected != size:
        state = "truncated" if 8 + n + expected > size else "longer than its header says"
        raise ValueError(f"{path}: {state}: the header describes {8 + n + expected} bytes, the file has {size}")
    return entries, 8 + n


def _check_entry(path, name: str, entry) -> tuple[str, tuple]:
    """(dtype, shape) of one header entry, or a ValueError naming the file and the tensor."""
    bad = f"{path}: corrupt safetensors header (tensor {name!r}"
    if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_ITEMSIZE:
        raise ValueError(f"{bad}: unknown dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r})")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise ValueError(f"{bad}: shape {shape!r} is not a list of sizes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"{bad}: data_offsets {offsets!r})")
    nbytes = math.prod(shape) * SAFETENSORS_ITEMSIZE[entry["dtype"]]
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(f"{bad}: shape {shape} needs {nbytes} bytes, its data_offsets give "
                         f"{offsets[1] - offsets[0]})")
    return entry["dtype"], tuple(shape)


def load_safetensors(path) -> dict:
    """All arrays of a safetensors file of weights, float32 (float64 stays float64).

    The header is checked first (``read_safetensors_header``); the arrays are then read from the
    same descriptor. float16 is upcast exactly; bfloat16 is the top half of a float32, so its 16
    bits shifted left by 16 *are* that float32. Integer, boolean and 8-bit float tensors are
    refused rather than cast (an int8 weight cast to float32 is silently a different model), and
    so are nan/inf values (``check_finite``).

    Raises:
        ValueError: naming ``path`` and the tensor.
    """
    with open_input(path, "safetensors file") as f:
        entries, data_start = _read_header(f, path)
        arrays = {}
        for name, (dtype, shape, (begin, end)) in sorted(entries.items(), key=lambda item: item[1][2]):
            if dtype not in FLOAT_DTYPES:
                raise ValueError(f"{path}: tensor {name!r} holds {dtype} values, but weights must be floating "
                                 f"point ({', '.join(FLOAT_DTYPES)}); refused rather than cast")
            raw = np.empty(math.prod(shape), dtype=FLOAT_DTYPES[dtype])
            f.seek(data_start + begin)
            if f.readinto(memoryview(raw).cast("B")) != end - begin:
                raise ValueError(f"{path}: truncated while reading tensor {name!r} (did the file change?)")
            arrays[name] = _as_float(raw, dtype).reshape(shape)
    check_finite(arrays, path)
    return arrays


def _as_float(raw: np.ndarray, dtype: str) -> np.ndarray:
    """float32 from F16 or BF16 bits, native-order F32/F64 otherwise."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return raw.astype(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="), copy=False)


def check_finite(arrays: dict, source) -> None:
    """Refuse weights holding nan or inf, naming ``source`` and the tensors (with how many values)."""
    bad = [(name, int(np.size(a) - np.count_nonzero(np.isfinite(a)))) for name, a in arrays.items()
           if not np.all(np.isfinite(a))]
    if bad:
        shown = ", ".join(f"{name} ({count} of {np.size(arrays[name])} values)" for name, count in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(f"{source}: {len(bad)} tensor(s) hold nan or inf: {shown}{more}; these weights "
                         "cannot compute anything (did the run that saved them diverge?)")


def save_safetensors(path, arrays: dict, metadata: dict | None = None) -> None:
    """Save name -> NumPy array to ``path`` atomically, with ordinary file permissions."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=metadata))


def confined_path(directory, relative: str, what: str, source) -> Path:
    """``directory / relative``, refused when ``relative`` (read from ``source``) leaves ``directory``."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative) or "\\" in relative:
        raise ValueError(f"{source}: {what} {relative!r} must be a file name inside {directory}")
    root = Path(directory).resolve()
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"{source}: {what} {relative!r} points outside {directory}; refused")
    return path
