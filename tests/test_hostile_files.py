"""Hostile files, round two (issue 23): each class of failure is closed by one mechanism.

The tables below drive every loader and writer through the one mechanism it must use:

* ``READERS`` x ``NOT_REGULAR``: every loader refuses a folder and a device (a FIFO is in
  test_hostile_processes.py, in a subprocess with a timeout), by name, without reading;
* ``DUPLICATES``: a key written twice is refused with the file, the line and the key;
* ``WRITERS``: a file planted as a symlink to a file elsewhere is replaced, never written through;
* ``WEIGHTS``: float16/bfloat16 load as float32 (values worked out by hand from their bits),
  integer and 8-bit-float tensors and nan/inf are refused by tensor name.

Then the run folder's mode, the lock within one process, the special ids, a torn log line, the
checkpoint mismatch summary and the recovery of an interrupted save.
"""
import errno
import json
import os
import stat
import struct

import numpy as np
import pytest

from minillm import runlock
from minillm.cli.folders import check_convert_out, check_special_ids, clear_old_run, load_model, write_run_config
from minillm.data import Tokenizer
from minillm.data.jsonl import DataError, load_prompt_completion
from minillm.files import (InputFileError, append_line, atomic_write_text, input_lines, load_safetensors,
                           parse_json, read_input, read_json, read_safetensors_header)
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.peft.config import PeftConfig
from minillm.training.checkpoint import load_checkpoint, save_checkpoint
from minillm.training.log import TrainingLog
from minillm.training.resume import ResumeMismatchError, check_checkpoint_fits, prepare_resume


# ---------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"the {w} saw the {v} on day {i}." for i, (w, v) in enumerate(zip("abcdefgh" * 4, "hgfedcba" * 4))]
    return Tokenizer.train(texts, vocab_size=80, num_sentinels=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    """A tiny T5 folder: config.json, model.safetensors, tokenizer.json."""
    folder = tmp_path_factory.mktemp("model")
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(str(folder))
    tokenizer.save(str(folder))
    return folder


def safetensors_file(path, tensors: dict) -> None:
    """Write {name: (dtype, shape, raw bytes)} as a safetensors file, by hand (any dtype, any bytes)."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


# ---------------------------------------------------------------------------------- 1. one way to open
def _log(path):
    TrainingLog(str(path), str(path) + ".png").start(keep_until_step=5)


# name of the file a loader reads -> the loader, given the file's path
READERS = {
    "data.jsonl": lambda p: load_prompt_completion(str(p)),
    "data.csv": lambda p: load_prompt_completion(str(p)),
    "config.json": lambda p: T5Config.from_json_file(p),
    "adapter_config.json": lambda p: PeftConfig.from_pretrained(p.parent),
    "tokenizer.json": lambda p: Tokenizer.from_file(str(p)),
    "model.safetensors": lambda p: load_safetensors(p),
    "header.safetensors": lambda p: read_safetensors_header(p),
    "log.jsonl": _log,
    "options.json": lambda p: read_json(p, "--config file"),
}


def make_folder(path):
    path.mkdir()


def make_device_link(path):
    os.symlink("/dev/zero", path)  # a link to a device: what is opened is checked, not the name


NOT_REGULAR = {"a directory": make_folder, "a character device": make_device_link}


@pytest.mark.parametrize("kind", NOT_REGULAR, ids=str)
@pytest.mark.parametrize("name", READERS, ids=str)
def test_every_loader_refuses_what_is_not_a_regular_file_by_name(name, kind, tmp_path):
    path = tmp_path / name
    NOT_REGULAR[kind](path)
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        READERS[name](path)
    assert str(path) in str(caught.value)
    assert f"is {kind}, not a regular file" in str(caught.value)


def test_reads_are_bounded_before_a_byte_is_read(tmp_path):
    sparse = tmp_path / "config.json"
    with open(sparse, "wb") as f:
        f.truncate(3 * 2**30)  # 3 GiB of holes: reading it would take 3 GiB of memory
    with pytest.raises(InputFileError, match=r"config\.json: 3221225472 bytes is more than a config\.json may hold"):
        T5Config.from_json_file(sparse)
    small = tmp_path / "small.json"
    small.write_text("0123456789")
    assert read_input(small, 10) == b"0123456789"  # the bound itself is allowed
    with pytest.raises(InputFileError, match="11 bytes is more than a thing may hold .10 bytes"):
        read_input(small.with_name("eleven.json"), 10, "thing") if small.with_name("eleven.json").write_text(
            "01234567890") else None


def test_data_is_read_line_by_line_with_a_bound_on_each_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 100 + b"\nlast")
    lines = input_lines(path, max_line=100)
    assert next(lines) == (1, b'{"a": 1}\n')
    with pytest.raises(InputFileError, match=r"data\.jsonl: line 2 is longer than 100 bytes"):
        next(lines)  # 101 bytes with its newline
    assert list(input_lines(path, max_line=101))[1:] == [(2, b"x" * 100 + b"\n"), (3, b"last")]
    three = tmp_path / "three.jsonl"
    three.write_bytes(b"12345678\n" * 3)  # 9 + 9 bytes fit a 20-byte bound, the third line does not
    lines = input_lines(three, limit=20)
    assert [next(lines), next(lines)] == [(1, b"12345678\n"), (2, b"12345678\n")]
    with pytest.raises(InputFileError, match=r"three\.jsonl: longer than 20 bytes, more than a data file may hold"):
        next(lines)
    no_newline = tmp_path / "zeros.jsonl"
    with open(no_newline, "wb") as f:
        f.truncate(2**30)  # a 1 GiB line: refused after 64 MiB, not read whole
    with pytest.raises(DataError, match=r"zeros\.jsonl: line 1 is longer than 67108864 bytes"):
        load_prompt_completion(str(no_newline))


# ---------------------------------------------------------------------------------- 7. duplicate keys
def dup_jsonl(tmp):
    path = tmp / "data.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "b", "prompt": "c"}\n')
    return (lambda: load_prompt_completion(str(path))), f"{path}, line 2: key 'prompt' appears twice"


def dup_config(tmp):
    path = tmp / "config.json"
    path.write_text('{\n  "d_model": 8,\n  "num_heads": 2,\n  "d_model": 16\n}\n')
    return (lambda: T5Config.from_json_file(path)), f"{path}: line 4: key 'd_model' appears twice"


def dup_nested_only_in_inner_object(tmp):
    path = tmp / "options.json"  # "k" inside and "k" outside are two objects' keys: "b" is the duplicate
    path.write_text('{"a": {"k": "}{\\"b\\": ["},\n "k": 2,\n "b": 3,\n "b": 4}')
    return (lambda: read_json(path)), f"{path}: line 4: key 'b' appears twice"


def dup_adapter_config(tmp):
    path = tmp / "adapter_config.json"
    path.write_text('{"peft_type": "LORA", "r": 2,\n "r": 8}')
    return (lambda: PeftConfig.from_pretrained(tmp)), f"{path}: line 2: key 'r' appears twice"


def dup_safetensors_header(tmp):
    path = tmp / "model.safetensors"
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    text = f'{{"w": {entry}, "w": {entry}}}'.encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 4)
    return (lambda: read_safetensors_header(path)), f"{path}: line 1: key 'w' appears twice"


DUPLICATES = [dup_jsonl, dup_config, dup_nested_only_in_inner_object, dup_adapter_config, dup_safetensors_header]


@pytest.mark.parametrize("case", DUPLICATES, ids=lambda case: case.__name__)
def test_a_key_given_twice_is_refused_with_file_line_and_key(case, tmp_path):
    load, expected = case(tmp_path)
    with pytest.raises(ValueError) as caught:
        load()
    assert expected in str(caught.value)


def test_the_same_key_in_different_objects_is_not_a_duplicate():
    assert parse_json('[{"a": 1}, {"a": 2}, {"b": {"a": 3}, "a": 4}]', "x") == [
        {"a": 1}, {"a": 2}, {"b": {"a": 3}, "a": 4}]


# ---------------------------------------------------------------------------------- 2. one way to write
def write_text(folder, tokenizer):
    atomic_write_text(folder / "results.json", "{}")
    return "results.json"


def write_log(folder, tokenizer):
    TrainingLog(str(folder / "log.jsonl"), str(folder / "curve.png")).start()
    return "log.jsonl"


def write_run_config_file(folder, tokenizer):
    import argparse

    write_run_config(argparse.Namespace(seed=1), str(folder))
    return "run_config.json"


def write_tokenizer(folder, tokenizer):
    tokenizer.save(str(folder))
    return "tokenizer.json"


def write_model(folder, tokenizer):
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(str(folder))
    return "model.safetensors"


def write_checkpoint_folder(folder, tokenizer):
    from minillm.nn import Linear

    save_checkpoint(folder / "checkpoint", Linear(2, 2))
    return "checkpoint"


WRITERS = [write_text, write_log, write_run_config_file, write_tokenizer, write_model, write_checkpoint_folder]
PLANTED = {"results.json", "log.jsonl", "run_config.json", "tokenizer.json", "model.safetensors"}


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_a_write_replaces_a_planted_symlink_instead_of_following_it(writer, tmp_path, tokenizer):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    for name in PLANTED:
        os.symlink(outside / "precious.txt", run / name)
    os.symlink(outside, run / "checkpoint")
    name = writer(run, tokenizer)
    assert not (run / name).is_symlink()
    assert (outside / "precious.txt").read_text() == "mine"
    assert sorted(os.listdir(outside)) == ["precious.txt"]


def test_appending_to_a_symlink_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    os.symlink(tmp_path / "precious.txt", tmp_path / "log.jsonl")
    with pytest.raises(OSError) as caught:
        append_line(tmp_path / "log.jsonl", "{}")
    assert caught.value.errno == errno.ELOOP
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_overwrite_removes_a_planted_link_not_what_it_points_to(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("mine")
    (tmp_path / "run").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "run" / "checkpoint")
    os.symlink(tmp_path / "outside" / "keep.txt", tmp_path / "run" / "results.json")
    clear_old_run(str(tmp_path / "run"))
    assert os.listdir(tmp_path / "run") == [] and (tmp_path / "outside" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("folder_mode", [0o700, 0o750, 0o755])
def test_files_and_checkpoint_folders_take_the_run_folders_mode(folder_mode, tmp_path):
    from minillm.nn import Linear
    from minillm.optim import AdamW

    old_umask = os.umask(0o022)
    try:
        run = tmp_path / "run"
        run.mkdir()
        os.chmod(run, folder_mode)
        layer = Linear(2, 2)
        save_checkpoint(run / "checkpoint", layer, AdamW(layer.parameters()))
        atomic_write_text(run / "results.json", "{}")
        TrainingLog(str(run / "log.jsonl"), str(run / "c.png")).start()
    finally:
        os.umask(old_umask)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    file_mode = folder_mode & 0o644  # the folder's read/write bits, minus umask 022, never execute
    assert mode(run / "checkpoint") == folder_mode
    for file in ("checkpoint/model.safetensors", "checkpoint/optimizer.safetensors",
                 "checkpoint/trainer_state.json", "results.json", "log.jsonl"):
        assert mode(run / file) == file_mode, file


# ---------------------------------------------------------------------------------- 3. the lock, in one process
def test_the_lock_is_reentrant_and_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "new" / "runs" / "one"
    with runlock.acquire(str(folder), "first") as lock:
        assert (folder / runlock.LOCK_NAME).exists()
        assert json.loads((folder / runlock.LOCK_NAME).read_text())["pid"] == os.getpid()
        again = runlock.acquire(str(folder), "second")  # the Trainer inside the command that locked
        assert again is lock
        again.release()
        assert (folder / runlock.LOCK_NAME).exists()  # still held by the outer acquire
    assert os.listdir(tmp_path) == []  # the folders the lock created, left empty: removed


def test_convert_never_writes_into_its_source_or_over_a_run(tmp_path):
    source = tmp_path / "run"
    (source / "model").mkdir(parents=True)
    (source / "model" / "config.json").write_text("{}")
    for out in (source, source / "model", tmp_path / "link"):
        if out.name == "link":
            os.symlink(source, out)
        with pytest.raises(ValueError, match="is the folder being converted"):
            check_convert_out(str(out), str(source), overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"already holds a run or model \(model.safetensors\)"):
        check_convert_out(str(other), str(source), overwrite=False)
    check_convert_out(str(other), str(source), overwrite=True)  # allowed with --overwrite
    check_convert_out(str(tmp_path / "fresh"), str(source), overwrite=False)


# ---------------------------------------------------------------------------------- 6. weights
def bits(dtype, values) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


# name -> (safetensors dtype, raw little-endian bytes, float32 values expected, worked out by hand)
WEIGHTS = {
    # bfloat16 is the top 16 bits of a float32: 0x3F80 -> 0x3F800000 = 1.0, 0xC000 -> -2.0,
    # 0x3FC0 -> 1.5, 0x4049 -> 0x40490000 = 3.140625 (pi, cut to 8 significant bits).
    "bf16": ("BF16", bits("<u2", [0x3F80, 0xC000, 0x3FC0, 0x4049]), [1.0, -2.0, 1.5, 3.140625]),
    # float16: 0x3C00 = 1.0, 0xC000 = -2.0, 0x7BFF = 65504 (the largest), 0x0001 = 2**-24 (the smallest).
    "f16": ("F16", bits("<u2", [0x3C00, 0xC000, 0x7BFF, 0x0001]), [1.0, -2.0, 65504.0, 2.0**-24]),
    "f32": ("F32", bits("<f4", [1.0, -2.0, 0.5, 3.0]), [1.0, -2.0, 0.5, 3.0]),
}
REFUSED_DTYPES = {"I8": bits("i1", [1, 2, 3, 4]), "I64": bits("<i8", [1, 2, 3, 4]), "BOOL": bits("?", [1, 0, 1, 0]),
                  "F8_E4M3": bits("u1", [1, 2, 3, 4]), "U8": bits("u1", [1, 2, 3, 4])}


@pytest.mark.parametrize("name", WEIGHTS)
def test_half_precision_weights_load_as_float32(name, tmp_path):
    dtype, raw, expected = WEIGHTS[name]
    safetensors_file(tmp_path / "w.safetensors", {"layer.weight": (dtype, (2, 2), raw)})
    loaded = load_safetensors(tmp_path / "w.safetensors")["layer.weight"]
    assert loaded.dtype == np.float32 and loaded.shape == (2, 2)
    assert loaded.ravel().tolist() == expected


@pytest.mark.parametrize("dtype", REFUSED_DTYPES)
def test_integer_tensors_are_refused_by_name_and_dtype(dtype, tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_file(path, {"ok": ("F32", (1,), bits("<f4", [1.0])), "encoder.q.weight": (dtype, (4,),
                                                                                           REFUSED_DTYPES[dtype])})
    with pytest.raises(ValueError, match=rf"{path}: tensor 'encoder.q.weight' holds {dtype} values"):
        load_safetensors(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_tensors(bad, tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_file(path, {"a.weight": ("F32", (3,), bits("<f4", [1.0, bad, bad])),
                            "b.weight": ("F32", (1,), bits("<f4", [2.0])),
                            "c.weight": ("BF16", (2,), bits("<u2", [0x7FC0, 0x3F80]))})  # bf16 nan
    with pytest.raises(ValueError) as caught:
        load_safetensors(path)
    message = str(caught.value)
    assert f"{path}: 2 tensor(s) hold nan or inf: a.weight (2 of 3 values), c.weight (1 of 2 values)" in message
    assert "b.weight" not in message


def test_a_bfloat16_hugging_face_folder_loads_as_the_float32_model(tmp_path, model_dir):
    from minillm.files import load_safetensors as load

    original = load(model_dir / "model.safetensors")
    folder = tmp_path / "bf16"
    folder.mkdir()
    for file in ("config.json", "tokenizer.json"):
        (folder / file).write_bytes((model_dir / file).read_bytes())
    # round each weight to bfloat16 (truncate the low 16 bits) and store the top halves
    safetensors_file(folder / "model.safetensors", {
        name: ("BF16", array.shape, (array.view(np.uint32) >> 16).astype("<u2").tobytes())
        for name, array in original.items()})
    model, _ = load_model(str(folder))
    for name, array in original.items():
        truncated = (array.view(np.uint32) & 0xFFFF0000).view(np.float32)
        assert np.array_equal(model.state_dict()[name], truncated), name


# ---------------------------------------------------------------------------------- 6. special ids
@pytest.mark.parametrize("name,value", [("eos_token_id", 5), ("pad_token_id", 3), ("decoder_start_token_id", 1)])
def test_special_ids_that_disagree_with_the_tokenizer_are_refused_naming_both_files(name, value, tmp_path,
                                                                                      model_dir):
    folder = tmp_path / "m"
    folder.mkdir()
    for file in ("model.safetensors", "tokenizer.json"):
        (folder / file).write_bytes((model_dir / file).read_bytes())
    config = json.loads((model_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, name: value}))
    with pytest.raises(ValueError) as caught:
        load_model(str(folder))
    assert (f"{folder / 'config.json'}: {name} is {value}, but {folder / 'tokenizer.json'} gives"
            in str(caught.value))


def test_matching_special_ids_pass(model_dir, tokenizer):
    config = T5Config.from_json_file(model_dir / "config.json")
    check_special_ids(config, "config.json", tokenizer, "tokenizer.json")  # no error


# ---------------------------------------------------------------------------------- 4. failed starts, the log
def test_a_torn_last_log_line_is_dropped_with_a_message_naming_the_file(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo')
    log = TrainingLog(str(path), str(tmp_path / "c.png"))
    log.start(keep_until_step=2)
    assert log.entries == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    assert f"{path}: dropped line 3, the last line, which was cut off" in "".join(capsys.readouterr())
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')  # damage in the middle is not a crash's
    with pytest.raises(ValueError, match=rf"{path}, line 2: not a JSON object; the log is damaged"):
        TrainingLog(str(path), str(tmp_path / "c.png")).start(keep_until_step=3)


def test_a_mismatched_checkpoint_is_summarised_in_a_few_lines(tmp_path, model_dir):
    from minillm.nn import Linear

    model = T5ForConditionalGeneration.from_pretrained(str(model_dir))
    save_checkpoint(tmp_path / "checkpoint", Linear(3, 2))
    with pytest.raises(KeyError) as caught:
        load_checkpoint(tmp_path / "checkpoint", model)
    message = caught.value.args[0]
    n = len(list(model.named_parameters()))  # each once: embed_tokens and the tied lm_head are shared.weight
    assert f"{tmp_path / 'checkpoint' / 'model.safetensors'} does not match the model: {n} tensor(s) the model " \
           "needs but the file lacks: " in message
    assert f", ... ({n - 3} more); 2 tensor(s) the file has but the model lacks: bias, weight" in message
    assert len(message) < 500


def test_resuming_a_full_checkpoint_as_peft_is_refused_before_anything_is_written(tmp_path, model_dir):
    model = T5ForConditionalGeneration.from_pretrained(str(model_dir))
    save_checkpoint(tmp_path / "run" / "checkpoint", model)
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(ResumeMismatchError, match="holds a full model's weights .* this run trains a PEFT adapter"):
        check_checkpoint_fits(str(tmp_path / "run" / "checkpoint"), model, peft=True)
    check_checkpoint_fits(str(tmp_path / "run" / "checkpoint"), model, peft=False)  # the right method passes
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before


def test_an_interrupted_save_is_recovered_before_the_resume_path_is_checked(tmp_path, capsys, model_dir):
    model = T5ForConditionalGeneration.from_pretrained(str(model_dir))
    save_checkpoint(tmp_path / "run" / "checkpoint", model, step=4)
    # killed between the two renames: the last good checkpoint moved aside, the new one not yet in
    os.replace(tmp_path / "run" / "checkpoint", tmp_path / "run" / "checkpoint.old-k2j4")
    (tmp_path / "run" / "checkpoint.tmp-x9q1").mkdir()
    prepare_resume(str(tmp_path / "run" / "checkpoint"))
    assert "checkpoint.old-k2j4 (restored as checkpoint)" in "".join(capsys.readouterr())
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint"]
    assert load_checkpoint(tmp_path / "run" / "checkpoint", model)["step"] == 4
