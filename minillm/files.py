"""Files minillm writes and reads: atomic writes, checked safetensors headers, confined paths.

Three rules keep a user's files safe, whoever wrote the folder they opened:

* **Nothing is lost mid-write.** ``atomic_write`` writes to a temporary name beside the target,
  fsyncs, then renames (``os.replace`` is atomic within one file system): a crash leaves the old
  file or the new one, never half of either. The file gets the permissions a plain ``open()``
  would give (``0o666`` minus the umask), so ``model.safetensors`` is as readable as the
  ``config.json`` beside it (``tempfile.mkstemp`` alone would make it owner-only, ``0o600``).
* **A file is checked before memory is allocated for it.** A safetensors file is an 8-byte
  little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets"}}``,
  then the raw bytes. ``read_safetensors_header`` checks that JSON against the file's real size,
  so a truncated or corrupt file is refused by name before any array is built.
* **A folder reaches only its own files.** ``confined_path`` refuses a relative path from a file
  (a shard name in an index, say) that is absolute or climbs out with ``..``.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

# Bytes per element of the safetensors dtypes minillm can be handed.
SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                        "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header


def _default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    propagates (an old ``path`` is untouched).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp_path)
        os.chmod(tmp_path, _default_file_mode())  # after write: a writer may replace the file
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path, what: str = "file"):
    """Parse a JSON file; a ValueError names the file and the line when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not a valid {what} (invalid JSON: {err.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a valid {what} (not UTF-8 text)") from None


def read_safetensors_header(path) -> dict:
    """{name: (dtype, shape)} of a safetensors file, checked against the file's size.

    Raises:
        ValueError: naming ``path``, when the file is shorter than its header says (truncated),
            the header is not the JSON safetensors writes, or the tensors' byte ranges overlap,
            leave gaps, or disagree with their shapes.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file ({size} bytes: truncated before the header)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise ValueError(f"{path}: corrupt or truncated safetensors file (header of {n} bytes in a file "
                             f"of {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    tensors, spans = {}, []
    for name, entry in header.items():
        tensors[name] = _check_entry(path, name, entry)
        spans.append(tuple(entry["data_offsets"]))
    expected = 0
    for begin, end in sorted(spans):
        if begin != expected:
            raise ValueError(f"{path}: corrupt safetensors header (tensor bytes overlap or leave a gap at {begin})")
        expected = end
    if 8 + n + expected != size:
        state = "truncated" if 8 + n + expected > size else "longer than its header says"
        raise ValueError(f"{path}: {state}: the header describes {8 + n + expected} bytes, the file has {size}")
    return tensors


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
    """All arrays of a safetensors file, after ``read_safetensors_header`` has checked it."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    read_safetensors_header(path)
    try:
        return load_file(os.fspath(path))
    except Exception as err:  # safetensors' own SafetensorError (e.g. an unsupported dtype)
        raise ValueError(f"{path}: cannot be read as safetensors ({err})") from None


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
