"""Bad input and hostile files, over the command line (issue 13).

Every case is one ``minillm`` invocation with one thing wrong. Each must end with exit code 2, a
message that names the file (or the option) and what is wrong, and no traceback. The table
covers the data files that already failed well (so they stay that way), the run directory,
``--resume``, numbers, ``--config``, ``--out``, ``generate``'s settings, and every file minillm
reads from a model or adapter folder. A few cases also run as real subprocesses, where a
traceback would show.
"""
import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from minillm.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished smoke pretraining run (model, tokenizer, checkpoint) and a small LoRA adapter."""
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILLM_SMOKE", "1")
        assert main(["pretrain", "--out", str(root / "run")]) == 0
        data = root / "good.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"What is {a} plus 1?", "completion": str(a + 1)}) + "\n"
                                for a in range(12)))
        assert main(["finetune", "--model", str(root / "run"), "--data", str(data), "--method", "lora",
                     "--lora-r", "2", "--out", str(root / "lora")]) == 0
    return root


def model_copy(base, tmp_path, name="model"):
    """A copy of the base run's model folder (config.json, model.safetensors, tokenizer.json)."""
    folder = tmp_path / name
    folder.mkdir()
    for file in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(base / "run" / file, folder / file)
    return folder


def adapter_copy(base, tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(base / "lora" / file, folder / file)
    return folder


def edit_json(path, **changes):
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# ---------------------------------------------------------------------------------- the cases
# Each builder takes (tmp_path, base) and returns (argv, [texts the message must contain]).
def data_missing_field(tmp, base):
    f = tmp / "bad.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}, line 2: missing field 'completion'"]


def data_invalid_json(tmp, base):
    f = tmp / "bad.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a" "completion": "b"}\n')
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}, line 2: not valid JSON"]


def data_control_character(tmp, base):
    f = tmp / "bad.jsonl"
    f.write_text('{"prompt": "a\tb", "completion": "c"}\n')
    return (["finetune", "--data", str(f), "--out", str(tmp / "out")],
            [f"{f}, line 1: not valid JSON (Invalid control character at column"])


def data_not_utf8(tmp, base):
    f = tmp / "bad.jsonl"
    f.write_bytes(b'{"prompt": "caf\xe9", "completion": "b"}\n')
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}, line 1: not valid UTF-8"]


def data_empty(tmp, base):
    f = tmp / "empty.jsonl"
    f.write_text("\n\n")
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}: file is empty"]


def data_csv_without_columns(tmp, base):
    f = tmp / "bad.csv"
    f.write_text("question,answer\nx,y\n")
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}, line 1: no column for the prompt"]


def data_unknown_extension(tmp, base):
    f = tmp / "data.txt"
    f.write_text("hello\n")
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}: unknown extension '.txt'"]


def data_missing_file(tmp, base):
    f = tmp / "nope.jsonl"
    return ["finetune", "--data", str(f), "--out", str(tmp / "out")], [f"{f}: no such file"]


def run_dir_holds_a_run(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    return (["pretrain", "--out", str(out)],
            [f"{out} already holds a run", f"--resume {out / 'checkpoint'}", "--overwrite", "nothing was changed"])


def quickstart_dir_holds_a_run(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    return ["quickstart", "--out", str(out)], [f"{out} already holds a run", "--overwrite"]


def resume_missing_checkpoint(tmp, base):
    return (["pretrain", "--resume", str(tmp / "nope"), "--out", str(tmp / "out")],
            [f"--resume {tmp / 'nope'}: no such checkpoint directory"])


def resume_with_another_batch_size(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out), "--batch-size", "2"],
            [f"{out / 'checkpoint'}/trainer_state.json", "cannot resume with batch_size=2", "made with 4"])


def resume_with_another_model_size(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out), "--d-model", "8"],
            [str(out / "run_config.json"), "cannot resume with --d-model 8", "--d-model 16"])


def resume_with_other_data(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out), "--num-documents", "30"],
            [f"{out / 'checkpoint'}/trainer_state.json", "different training data"])


def nan_learning_rate(tmp, base):
    return ["pretrain", "--learning-rate", "nan", "--out", str(tmp / "out")], ["--learning-rate", "finite", "'nan'"]


def negative_learning_rate(tmp, base):
    return ["pretrain", "--learning-rate", "-1", "--out", str(tmp / "out")], ["learning_rate must be > 0, got -1.0"]


def infinite_grad_norm(tmp, base):
    return ["finetune", "--max-grad-norm", "inf", "--out", str(tmp / "out")], ["--max-grad-norm", "finite", "'inf'"]


def nan_epochs(tmp, base):
    return ["finetune", "--num-epochs", "nan", "--out", str(tmp / "out")], ["--num-epochs", "finite"]


def dropout_out_of_range(tmp, base):
    return ["pretrain", "--dropout", "1.5", "--out", str(tmp / "out")], ["--dropout must be in [0, 1), got 1.5"]


def abbreviated_flag(tmp, base):
    return ["pretrain", "--max-step", "3", "--out", str(tmp / "out")], ["unrecognized arguments: --max-step"]


def config_value_of_wrong_type(tmp, base):
    f = tmp / "cfg.json"
    f.write_text(json.dumps({"max_steps": "ten"}))
    return ["pretrain", "--config", str(f)], [f"--config {f}: key 'max_steps': must be an integer, got 'ten'"]


def config_list_for_a_number(tmp, base):
    f = tmp / "cfg.json"
    f.write_text(json.dumps({"learning-rate": [0.1]}))
    return ["finetune", "--config", str(f)], [f"--config {f}: key 'learning-rate': must be a finite number"]


def config_number_for_a_switch(tmp, base):
    f = tmp / "cfg.json"
    f.write_text(json.dumps({"bitfit": 3}))
    return ["finetune", "--config", str(f)], [f"--config {f}: key 'bitfit': must be true or false, got 3"]


def config_choice_not_allowed(tmp, base):
    f = tmp / "cfg.json"
    f.write_text(json.dumps({"optimizer": "sgd"}))
    return ["finetune", "--config", str(f)], [f"--config {f}: key 'optimizer': must be one of adamw, adafactor"]


def config_invalid_json(tmp, base):
    f = tmp / "cfg.json"
    f.write_text('{"max_steps": 3,}')
    return ["pretrain", "--config", str(f)], [f"--config {f}: line 1: not a valid --config file"]


def out_is_a_file(tmp, base):
    f = tmp / "afile"
    f.write_text("x")
    return ["pretrain", "--out", str(f)], [f"--out {f}: is a file, not a directory"]


def out_cannot_be_created(tmp, base):
    f = tmp / "afile"
    f.write_text("x")
    return ["pretrain", "--out", str(f / "sub")], [f"--out {f / 'sub'}: cannot write there (Not a directory)"]


def evaluate_output_is_a_directory(tmp, base):
    return (["evaluate", "--model", str(base / "run"), "--output", str(tmp)],
            [f"--output {tmp}: is a directory"])


def generate_zero_beams(tmp, base):
    return ["generate", "--model", str(base / "run"), "--prompt", "x", "--num-beams", "0"], ["--num-beams must be >= 1"]


def generate_top_p_above_one(tmp, base):
    return ["generate", "--model", str(base / "run"), "--prompt", "x", "--top-p", "1.5"], ["--top-p must be in (0, 1]"]


def generate_top_p_zero(tmp, base):
    return ["generate", "--model", str(base / "run"), "--prompt", "x", "--top-p", "0"], ["--top-p must be in (0, 1]"]


def generate_negative_top_k(tmp, base):
    return ["generate", "--model", str(base / "run"), "--prompt", "x", "--top-k", "-1"], ["--top-k must be >= 0"]


def generate_negative_length(tmp, base):
    return (["generate", "--model", str(base / "run"), "--prompt", "x", "--max-new-tokens", "-5"],
            ["--max-new-tokens must be >= 1"])


def generate_zero_temperature(tmp, base):
    return (["generate", "--model", str(base / "run"), "--prompt", "x", "--do-sample", "--temperature", "0"],
            ["--temperature must be > 0"])


def generate(folder):
    return ["generate", "--model", str(folder), "--prompt", "x"]


def config_json_invalid(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "config.json").write_text('{"d_model": 16,,}')
    return generate(folder), [f"{folder / 'config.json'}: line 1: not a valid config.json"]


def config_json_wrong_type(tmp, base):
    folder = model_copy(base, tmp)
    edit_json(folder / "config.json", d_model="16")
    return generate(folder), [f"{folder / 'config.json'}", "d_model must be an integer, got '16'"]


def config_json_out_of_range(tmp, base):
    folder = model_copy(base, tmp)
    edit_json(folder / "config.json", num_heads=0)
    return generate(folder), [f"{folder / 'config.json'}", "num_heads must be >= 1"]


def config_json_huge_but_weights_small(tmp, base):
    folder = model_copy(base, tmp)
    edit_json(folder / "config.json", d_model=10**9)  # would allocate terabytes if believed
    return generate(folder), [f"{folder / 'model.safetensors'}", "needs [", "config.json"]


def config_json_not_an_object(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "config.json").write_text("[1, 2]")
    return generate(folder), [f"{folder / 'config.json'}: expected a JSON object"]


def safetensors_truncated(tmp, base):
    folder = model_copy(base, tmp)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return generate(folder), [f"{folder / 'model.safetensors'}: truncated"]


def safetensors_tiny(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "model.safetensors").write_bytes(b"\x01\x02")
    return generate(folder), [f"{folder / 'model.safetensors'}: not a safetensors file"]


def safetensors_corrupt_header(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 6) + b"{nope}")
    return generate(folder), [f"{folder / 'model.safetensors'}: corrupt safetensors header"]


def safetensors_huge_header_length(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")
    return generate(folder), [f"{folder / 'model.safetensors'}: corrupt or truncated"]


def safetensors_shape_disagrees_with_offsets(tmp, base):
    folder = model_copy(base, tmp)
    header = {"shared.weight": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 8]}}
    (folder / "model.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 8))
    return generate(folder), [f"{folder / 'model.safetensors'}", "'shared.weight'", "needs"]


def safetensors_shape_against_config(tmp, base):
    folder = model_copy(base, tmp)
    header = {"shared.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    (folder / "model.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 24))
    return generate(folder), [f"{folder / 'model.safetensors'}: tensor shared.weight has shape [2, 3]"]


def shard_index_invalid(tmp, base):
    folder = model_copy(base, tmp)
    os.remove(folder / "model.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": ')
    return generate(folder), [f"{folder / 'model.safetensors.index.json'}: line 1: not a valid safetensors index"]


def shard_index_without_weight_map(tmp, base):
    folder = model_copy(base, tmp)
    os.remove(folder / "model.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    return generate(folder), [f"{folder / 'model.safetensors.index.json'}: not a valid safetensors index"]


def shard_outside_the_folder(tmp, base):
    folder = model_copy(base, tmp)
    os.replace(folder / "model.safetensors", tmp / "elsewhere.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"shared.weight": "../elsewhere.safetensors"}}))
    return generate(folder), [f"{folder / 'model.safetensors.index.json'}", "'../elsewhere.safetensors'",
                              "points outside"]


def shard_absolute_path(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "/etc/passwd"}}))
    os.remove(folder / "model.safetensors")
    return generate(folder), [f"{folder / 'model.safetensors.index.json'}", "'/etc/passwd'"]


def tokenizer_malformed(tmp, base):
    folder = model_copy(base, tmp)
    (folder / "tokenizer.json").write_text('{"model": 3}')
    return generate(folder), [f"{folder / 'tokenizer.json'}: not a valid tokenizer.json"]


def tokenizer_larger_than_the_model(tmp, base):
    """Config and weights agree on a vocabulary of 50; the tokenizer beside them has 300 ids."""
    from safetensors.numpy import load_file, save_file

    folder = model_copy(base, tmp)
    edit_json(folder / "config.json", vocab_size=50)
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: np.ascontiguousarray(v[:50]) if k in ("shared.weight", "lm_head.weight") else v
               for k, v in weights.items()}, str(folder / "model.safetensors"))
    return generate(folder), [f"{folder / 'tokenizer.json'}: the tokenizer has 300 ids", "has vocab_size 50"]


def adapter_config_invalid(tmp, base):
    adapter = adapter_copy(base, tmp)
    (adapter / "adapter_config.json").write_text("{")
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_config.json'}: line 1: not a valid adapter_config.json"])


def adapter_config_wrong_type(tmp, base):
    adapter = adapter_copy(base, tmp)
    edit_json(adapter / "adapter_config.json", r="2")
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_config.json'}: LoraConfig: r must be an integer, got '2'"])


def adapter_config_unknown_type(tmp, base):
    adapter = adapter_copy(base, tmp)
    edit_json(adapter / "adapter_config.json", peft_type="IA3")
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_config.json'}: unsupported peft_type 'IA3'"])


def adapter_regex_needing_backtracking(tmp, base):
    adapter = adapter_copy(base, tmp)
    edit_json(adapter / "adapter_config.json", target_modules=r"(\w+)\.\1")
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_config.json'}", "needs backtracking"])


def adapter_weights_missing(tmp, base):
    adapter = adapter_copy(base, tmp)
    os.remove(adapter / "adapter_model.safetensors")
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_model.safetensors'} does not exist"])


def adapter_weights_truncated(tmp, base):
    adapter = adapter_copy(base, tmp)
    data = (adapter / "adapter_model.safetensors").read_bytes()
    (adapter / "adapter_model.safetensors").write_bytes(data[:-4])
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_model.safetensors'}: truncated"])


def adapter_weights_of_another_rank(tmp, base):
    adapter = adapter_copy(base, tmp)
    edit_json(adapter / "adapter_config.json", r=4)
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_model.safetensors'}: adapter shapes do not fit"])


def checkpoint_state_corrupt(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    (out / "checkpoint" / "trainer_state.json").write_text("{")
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)],
            [f"{out / 'checkpoint' / 'trainer_state.json'}: line 1: not a valid trainer_state.json"])


def checkpoint_weights_truncated(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    path = out / "checkpoint" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)], [f"{path}"])



# ---------------------------------------------------------------------------------- round two (issue 23)
def data_duplicate_key(tmp, base):
    f = tmp / "bad.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "b", "completion": "c"}\n')
    return (["finetune", "--data", str(f), "--out", str(tmp / "out")],
            [f"{f}, line 2: key 'completion' appears twice"])


def data_is_a_device(tmp, base):
    f = tmp / "zero.jsonl"
    os.symlink("/dev/zero", f)  # read whole, this was a MemoryError
    return (["finetune", "--data", str(f), "--out", str(tmp / "out")],
            [f"{f}: is a character device, not a regular file"])


def text_is_a_directory(tmp, base):
    (tmp / "texts").mkdir()
    return (["pretrain", "--text", str(tmp / "texts"), "--out", str(tmp / "out")],
            [f"{tmp / 'texts'}: is a directory, not a regular file"])


def config_file_duplicate_key(tmp, base):
    f = tmp / "options.json"
    f.write_text('{"max_steps": 3,\n "max_steps": 300}')
    return (["pretrain", "--config", str(f), "--out", str(tmp / "out")],
            [f"{f}: line 2: key 'max_steps' appears twice"])


def config_json_duplicate_key(tmp, base):
    folder = model_copy(base, tmp)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text.replace('"d_model":', '"d_ff": 7,\n  "d_model":', 1))
    return generate(folder), [f"{folder / 'config.json'}: line", "key 'd_ff' appears twice"]


def config_eos_disagrees_with_tokenizer(tmp, base):
    folder = model_copy(base, tmp)
    edit_json(folder / "config.json", eos_token_id=5)
    return generate(folder), [f"{folder / 'config.json'}: eos_token_id is 5, but {folder / 'tokenizer.json'} "
                              "gives </s> the id 1"]


def _rewrite_weights(folder, change):
    """Rewrite model.safetensors with ``change(name, float32 array)`` -> array applied to every tensor."""
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "model.safetensors"))
    save_file({name: change(name, array) for name, array in arrays.items()}, str(folder / "model.safetensors"))


def weights_int8(tmp, base):
    folder = model_copy(base, tmp)
    _rewrite_weights(folder, lambda name, a: a.astype(np.int8) if name == "shared.weight" else a)
    return generate(folder), [f"{folder / 'model.safetensors'}: tensor 'shared.weight' holds I8 values"]


def _with_nan(name, array):
    if name.endswith("SelfAttention.q.weight"):
        array = array.copy()
        array.flat[0] = np.nan
    return array


def weights_nan_in_generate(tmp, base):
    folder = model_copy(base, tmp)
    _rewrite_weights(folder, _with_nan)
    return generate(folder), [f"{folder / 'model.safetensors'}: 2 tensor(s) hold nan or inf",
                              "encoder.block.0.layer.0.SelfAttention.q.weight (1 of"]


def weights_nan_in_evaluate(tmp, base):
    folder = model_copy(base, tmp)
    _rewrite_weights(folder, _with_nan)
    return ["evaluate", "--model", str(folder)], [f"{folder / 'model.safetensors'}: 2 tensor(s) hold nan or inf"]


def resume_full_checkpoint_as_lora(tmp, base):
    # The checkpoint holds a full model; LoRA's is another set of tensors. Refused before --out is
    # written (once this left config.json and model.safetensors there, and a 4,164-character message).
    return (["finetune", "--resume", str(base / "run" / "checkpoint"), "--method", "lora", "--out", str(tmp / "new")],
            [f"{base / 'run' / 'checkpoint' / 'model.safetensors'} holds a full model's weights", "--method full"])


def log_damaged_in_the_middle(tmp, base):
    out = tmp / "run"
    shutil.copytree(base / "run", out)
    lines = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join([lines[0], lines[1][:5], *lines[2:]]) + "\n")
    return (["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)],
            [f"{out / 'log.jsonl'}, line 2: not a JSON object; the log is damaged"])


def adapter_modules_to_save_missing(tmp, base):
    adapter = adapter_copy(base, tmp)
    edit_json(adapter / "adapter_config.json", modules_to_save=["nonexistent"])  # once a bare KeyError
    return (["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)],
            [f"{adapter / 'adapter_config.json'}: modules_to_save=['nonexistent'] matched no module"])


def lora_targets_matching_nothing(tmp, base):
    # Found while PEFT wraps the model, after run_config.json was written: the start is undone.
    return (["finetune", "--model", str(base / "run"), "--data", str(base / "good.jsonl"), "--method", "lora",
             "--lora-targets", "zzz", "--out", str(tmp / "new")], ["target_modules=['zzz'] matched no module"])


ROUND_TWO = [lora_targets_matching_nothing, adapter_modules_to_save_missing, data_duplicate_key, data_is_a_device, text_is_a_directory, config_file_duplicate_key,
             config_json_duplicate_key, config_eos_disagrees_with_tokenizer, weights_int8, weights_nan_in_generate,
             weights_nan_in_evaluate, resume_full_checkpoint_as_lora, log_damaged_in_the_middle]

CASES = [data_missing_field, data_invalid_json, data_control_character, data_not_utf8, data_empty,
         data_csv_without_columns, data_unknown_extension, data_missing_file,
         run_dir_holds_a_run, quickstart_dir_holds_a_run, resume_missing_checkpoint, resume_with_another_batch_size,
         resume_with_another_model_size, resume_with_other_data, nan_learning_rate, negative_learning_rate,
         infinite_grad_norm, nan_epochs, dropout_out_of_range, abbreviated_flag, config_value_of_wrong_type,
         config_list_for_a_number, config_number_for_a_switch, config_choice_not_allowed, config_invalid_json,
         out_is_a_file, out_cannot_be_created, evaluate_output_is_a_directory, generate_zero_beams,
         generate_top_p_above_one, generate_top_p_zero, generate_negative_top_k, generate_negative_length,
         generate_zero_temperature, config_json_invalid, config_json_wrong_type, config_json_out_of_range,
         config_json_huge_but_weights_small, config_json_not_an_object, safetensors_truncated, safetensors_tiny,
         safetensors_corrupt_header, safetensors_huge_header_length, safetensors_shape_disagrees_with_offsets,
         safetensors_shape_against_config, shard_index_invalid, shard_index_without_weight_map,
         shard_outside_the_folder, shard_absolute_path, tokenizer_malformed, tokenizer_larger_than_the_model,
         adapter_config_invalid, adapter_config_wrong_type, adapter_config_unknown_type,
         adapter_regex_needing_backtracking, adapter_weights_missing, adapter_weights_truncated,
         adapter_weights_of_another_rank, checkpoint_state_corrupt, checkpoint_weights_truncated, *ROUND_TWO]


def run_in_process(argv, capsys) -> tuple[int, str]:
    """(exit code, stdout + stderr) of ``minillm argv``; argparse's SystemExit counts as its code."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_bad_input_exits_2_with_a_located_message_and_no_traceback(case, base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    argv, expected = case(tmp_path, base)
    before = snapshot(tmp_path)
    code, output = run_in_process(argv, capsys)
    assert code == 2, output
    assert "Traceback" not in output
    for text in expected:
        assert text in output, f"{text!r} not in {output!r}"
    assert snapshot(tmp_path) == before  # nothing the user had was changed (a refused resume included)


def test_a_full_disk_while_saving_is_a_message_and_the_last_checkpoint_survives(base, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "run"
    shutil.copytree(base / "run", out)
    before = (out / "checkpoint" / "model.safetensors").read_bytes()
    import safetensors.numpy

    def full_disk(arrays, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    code, output = run_in_process(["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out),
                                   "--max-steps", "4"], capsys)
    assert code == 2 and "Traceback" not in output
    assert "could not write" in output and str(out) in output and "No space left on device" in output
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == before  # never half-overwritten
    code, output = run_in_process(["pretrain", "--out", str(tmp_path / "new")], capsys)
    assert code == 2 and "Traceback" not in output and "No space left on device" in output


def test_a_failed_adapter_load_leaves_no_half_registered_adapter(base, tmp_path):
    from minillm.models import T5ForConditionalGeneration
    from minillm.peft import PeftModel

    adapter = adapter_copy(base, tmp_path)
    edit_json(adapter / "adapter_config.json", r=4)  # the file's matrices have rank 2
    model = T5ForConditionalGeneration.from_pretrained(str(base / "run"))
    before = [(n, type(m).__name__) for n, m in model.named_modules()]
    with pytest.raises(ValueError, match="adapter shapes do not fit"):
        PeftModel.from_pretrained(model, str(adapter))
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == before  # no LoRA wrapper left
    assert all(p.requires_grad for p in model.parameters())                    # and nothing frozen
    (tmp_path / "good").mkdir()
    peft = PeftModel.from_pretrained(model, str(adapter_copy(base, tmp_path / "good")))
    with pytest.raises(ValueError):
        peft.load_adapter(str(adapter), adapter_name="second")
    assert list(peft.peft_config) == ["default"] and peft.active_adapter == "default"
    assert not any("second" in name for name, _ in peft.named_parameters())


def test_adapter_names_cannot_leave_the_folder(base, tmp_path):
    from minillm.models import T5ForConditionalGeneration
    from minillm.peft import LoraConfig, get_peft_model

    peft = get_peft_model(T5ForConditionalGeneration.from_pretrained(str(base / "run")), LoraConfig(r=2))
    for name in ("../escape", "/tmp/escape", "a/b", "a.b", ""):
        with pytest.raises(ValueError, match="adapter names"):
            peft.add_adapter(name, LoraConfig(r=2))
    with pytest.raises(KeyError):
        peft.save_pretrained(str(tmp_path / "out"), selected_adapters=["../escape"])
    assert not (tmp_path / "escape").exists()


def test_a_pathological_target_modules_regex_loads_in_linear_time(base, tmp_path, capsys, monkeypatch):
    # (a+)+$ against a 30-letter name takes Python's re about 2**30 steps; here it is one pass.
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    adapter = adapter_copy(base, tmp_path)
    edit_json(adapter / "adapter_config.json", target_modules=r"(.*a+)+\.q(x+x+)+y")
    started = time.perf_counter()
    code, output = run_in_process(["evaluate", "--model", str(base / "run"), "--adapter", str(adapter)], capsys)
    assert time.perf_counter() - started < 30
    assert code == 2 and "matched no module" in output and str(adapter / "adapter_config.json") in output

    from minillm.peft.tuners import module_matches
    started = time.perf_counter()
    assert not module_matches("a" * 5000 + "!", "(a+)+$")
    assert module_matches("encoder.block.0.layer.0.SelfAttention.q", r"(\w+\.)+q")
    assert time.perf_counter() - started < 2


def test_saved_safetensors_get_the_permissions_of_the_json_beside_them(base, tmp_path):
    from minillm.models import T5ForConditionalGeneration
    from minillm.peft import LoraConfig, get_peft_model

    model = T5ForConditionalGeneration.from_pretrained(str(base / "run"))
    model.save_pretrained(str(tmp_path / "model"))
    get_peft_model(model, LoraConfig(r=2)).save_pretrained(str(tmp_path / "adapter"))
    mode = lambda path: os.stat(path).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "model" / "model.safetensors") == mode(tmp_path / "model" / "config.json")
    adapter = tmp_path / "adapter"
    assert mode(adapter / "adapter_model.safetensors") == mode(adapter / "adapter_config.json")
    for file in ("model.safetensors", "optimizer.safetensors"):  # a checkpoint written by a training run
        assert mode(base / "run" / "checkpoint" / file) == mode(base / "run" / "checkpoint" / "trainer_state.json")
    assert mode(tmp_path / "model" / "model.safetensors") & 0o044 == 0o666 & ~_umask() & 0o044


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_overwrite_replaces_the_run_and_resume_continues_it_with_a_reported_change(base, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "run"
    shutil.copytree(base / "run", out)
    (out / "notes.txt").write_text("mine")
    code, output = run_in_process(["pretrain", "--out", str(out), "--resume", str(out / "checkpoint"),
                                   "--learning-rate", "0.001"], capsys)
    assert code == 0, output
    assert "changed options (applied): learning_rate 0.002 -> 0.001" in output
    code, output = run_in_process(["pretrain", "--out", str(out), "--overwrite"], capsys)
    assert code == 0, output
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only what a run writes
    assert [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()][0]["step"] == 1


SUBPROCESS_CASES = [nan_learning_rate, safetensors_corrupt_header, tokenizer_malformed, config_value_of_wrong_type,
                    adapter_config_wrong_type]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda case: case.__name__)
def test_as_a_real_process_there_is_no_traceback(case, base, tmp_path):
    argv, expected = case(tmp_path, base)
    env = {**os.environ, "MINILLM_SMOKE": "1", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "minillm", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output
    assert all(text in output for text in expected), output


# ---------------------------------------------------------------------------------- round two: runs that go on
def test_resume_after_a_save_killed_between_its_renames_recovers_the_checkpoint(base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "run"
    shutil.copytree(base / "run", out)
    os.replace(out / "checkpoint", out / "checkpoint.old-k2j4")  # the last good checkpoint, moved aside
    code, output = run_in_process(["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)], capsys)
    assert code == 0, output
    assert f"{out}: checkpoint.old-k2j4 (restored as checkpoint), left by an interrupted save" in output
    assert not (out / "checkpoint.old-k2j4").exists() and (out / "checkpoint" / "trainer_state.json").exists()


def test_resume_drops_a_torn_last_log_line_naming_the_file(base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "run"
    shutil.copytree(base / "run", out)
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 3, "loss": 4.')  # a crash in the middle of a line
    lines = (out / "log.jsonl").read_text().count("\n")
    code, output = run_in_process(["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)], capsys)
    assert code == 0, output
    assert f"{out / 'log.jsonl'}: dropped line {lines + 1}, the last line, which was cut off" in output
    for line in (out / "log.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line)["step"], int)  # every line whole again


def test_a_resumed_run_never_writes_through_a_planted_symlink(base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out, outside = tmp_path / "run", tmp_path / "outside.json"
    shutil.copytree(base / "run", out)
    outside.write_text("mine")
    written = ("results.json", "training_args.json", "tokenizer_config.json")  # files a resume writes, not reads
    for name in written:
        (out / name).unlink()
        os.symlink(outside, out / name)
    code, output = run_in_process(["pretrain", "--resume", str(out / "checkpoint"), "--out", str(out)], capsys)
    assert code == 0, output
    assert outside.read_text() == "mine"
    assert not any((out / name).is_symlink() for name in written)


def test_a_planted_best_folder_link_is_replaced_not_written_through(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out, outside = tmp_path / "run", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(outside, out / "best")  # best/ is written at the first evaluation that improves
    code, output = run_in_process(["pretrain", "--out", str(out)], capsys)
    assert code == 0, output
    assert os.listdir(outside) == ["keep.txt"] and (outside / "keep.txt").read_text() == "mine"
    assert not (out / "best").is_symlink() and (out / "best" / "model.safetensors").exists()
