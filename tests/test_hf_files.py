"""Specification of models/hf.py: Hugging Face folders (config.json + safetensors), no torch needed."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from minillm.models import T5Config, T5ForConditionalGeneration

TINY = dict(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)
IDS = np.array([[3, 4, 5, 1], [6, 7, 1, 0]])
DEC = np.array([[0, 5, 6], [0, 7, 8]])


def tiny_t5(**overrides):
    return T5ForConditionalGeneration(T5Config(**{**TINY, **overrides})).eval()


def logits(model):
    return model(input_ids=IDS, attention_mask=IDS != 0, decoder_input_ids=DEC).logits.data


@pytest.mark.parametrize("overrides", [
    dict(), dict(tie_word_embeddings=False), dict(scale_decoder_outputs=False),
    dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)])
def test_save_then_load_gives_identical_logits(tmp_path, overrides):
    model = tiny_t5(**overrides)
    model.save_pretrained(tmp_path)
    again = T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert again.config.tie_word_embeddings == model.config.tie_word_embeddings
    assert again.config.scale_decoder_outputs == model.config.scale_decoder_outputs
    assert not again.training
    np.testing.assert_array_equal(logits(again), logits(model))


def test_tied_weights_are_stored_once_under_hugging_face_names(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "shared.weight" in stored
    assert not {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"} & set(stored)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "t5" and config["d_model"] == 32
    tiny_t5(tie_word_embeddings=False).save_pretrained(tmp_path / "untied")
    assert "lm_head.weight" in load_file(str(tmp_path / "untied" / "model.safetensors"))


def test_a_separate_lm_head_in_the_file_is_kept_even_if_the_config_says_tied(tmp_path):
    """transformers 5 writes tie_word_embeddings=true for every T5 but saves an untied lm_head."""
    model = tiny_t5(tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = T5ForConditionalGeneration.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again.lm_head.weight.data, model.lm_head.weight.data)
    np.testing.assert_array_equal(logits(again), logits(model))


def test_sharded_safetensors_with_an_index_load(tmp_path):
    model = tiny_t5()
    model.save_pretrained(tmp_path / "single")
    tensors = load_file(str(tmp_path / "single" / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
        weight_map.update({k: shard for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    np.testing.assert_array_equal(logits(T5ForConditionalGeneration.from_pretrained(tmp_path)), logits(model))


def test_a_missing_shard_is_named(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"shared.weight": "model-00001-of-00001.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-00001-of-00001.safetensors"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_a_pickled_pytorch_checkpoint_is_refused_with_a_way_to_convert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(T5Config(**TINY).to_dict()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError) as info:
        T5ForConditionalGeneration.from_pretrained(tmp_path)
    message = str(info.value)
    assert "pickle" in message and "pytorch_model.bin" in message
    assert "safetensors" in message and "save_pretrained" in message


def test_missing_config_names_the_file(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_bad_json_in_config_names_the_file_and_line(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{\n  "d_model": 32,\n  "num_heads": 4\n  "d_kv": 8\n}\n')
    with pytest.raises(ValueError, match=r"config\.json.*line 4"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_no_weights_at_all_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(T5Config(**TINY).to_dict()))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_not_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        T5ForConditionalGeneration.from_pretrained(tmp_path / "nowhere")


def test_a_wrongly_shaped_weight_names_the_key(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["decoder.block.1.layer.0.SelfAttention.k.weight"] = np.zeros((32, 16), dtype=np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"decoder\.block\.1\.layer\.0\.SelfAttention\.k\.weight"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_a_missing_weight_names_the_key(tmp_path):
    tiny_t5().save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError, match=r"encoder\.block\.1\.layer\.1\.DenseReluDense\.wo\.weight"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)


def test_half_precision_weights_load_as_float32(tmp_path):
    model = tiny_t5()
    model.save_pretrained(tmp_path)
    tensors = {k: v.astype(np.float16) for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    again = T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert all(p.dtype == np.float32 for p in again.parameters())
    np.testing.assert_array_equal(again.shared.weight.data, tensors["shared.weight"].astype(np.float32))


def test_hf_py_does_not_import_t5_py():
    # The model class hands its config class in (config_class); models/hf.py stands on its own.
    import ast
    import inspect

    import minillm.models.hf as hf
    imported = [node.module for node in ast.walk(ast.parse(inspect.getsource(hf)))
                if isinstance(node, ast.ImportFrom)]
    assert not any(name and name.endswith("t5") for name in imported)


@pytest.mark.parametrize("change, message", [
    (dict(d_model="32"), "d_model must be an integer"), (dict(num_heads=0), "num_heads must be >= 1"),
    (dict(dropout_rate=float("nan")), "dropout_rate must be a finite number"),
    (dict(dropout_rate=1.0), "dropout_rate must be a finite number in"),
    (dict(pad_token_id=40), "pad_token_id=40 is not an id"), (dict(tie_word_embeddings="yes"), "true or false"),
])
def test_config_json_types_and_ranges_are_checked_and_the_file_named(tmp_path, change, message):
    tiny_t5().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message) as error:
        T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'config.json'}: ")


def test_weights_are_checked_against_config_before_the_model_is_built(tmp_path, monkeypatch):
    tiny_t5().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "d_ff": 10**8, "num_layers": 3}))
    built = []
    monkeypatch.setattr(T5ForConditionalGeneration, "__init__", lambda self, c: built.append(c))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor .*wi.weight has shape \[64, 32\].*needs "
                                         r"\[100000000, 32\]"):
        T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert built == []  # no array of 10**8 rows was ever allocated


def test_a_truncated_or_padded_safetensors_file_is_refused_by_size(tmp_path):
    from minillm.files import read_safetensors_header

    tiny_t5().save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    assert read_safetensors_header(path)["shared.weight"] == ("F32", (40, 32))
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_safetensors_header(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="longer than its header says"):
        read_safetensors_header(path)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""])
def test_shard_paths_are_confined_to_the_folder(tmp_path, shard):
    folder = tmp_path / "model"
    tiny_t5().save_pretrained(folder)
    os.replace(folder / "model.safetensors", tmp_path / "outside.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"shared.weight": shard}}))
    with pytest.raises(ValueError, match="model.safetensors.index.json: shard") as error:
        T5ForConditionalGeneration.from_pretrained(folder)
    assert repr(shard) in str(error.value)
