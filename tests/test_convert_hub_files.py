"""``minillm convert`` keeps what a Hub folder carries beside the weights, and says who wrote it."""
import json

import pytest

import minillm
from minillm.cli.main import main
from minillm.data import Tokenizer
from minillm.models import T5Config, T5ForConditionalGeneration

HUB_TOKENIZER_CONFIG = {"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "extra_ids": 2,
                        "additional_special_tokens": ["<extra_id_0>", "<extra_id_1>"], "eos_token": "</s>",
                        "pad_token": "<pad>", "unk_token": "<unk>", "sp_model_kwargs": {}}


@pytest.fixture
def hub_folder(tmp_path):
    """A folder as the Hub ships one: a 4.x config.json, generation_config.json, a full tokenizer_config."""
    tokenizer = Tokenizer.train(["one two three four five"] * 4, vocab_size=60, num_sentinels=2)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=8, d_kv=4, d_ff=16,
                                                num_layers=1, num_heads=2))
    hub = tmp_path / "hub"
    model.save_pretrained(hub)
    tokenizer.save(str(hub))
    config = json.loads((hub / "config.json").read_text())
    config.pop("minillm_version")
    (hub / "config.json").write_text(json.dumps({**config, "transformers_version": "4.23.1"}))
    (hub / "generation_config.json").write_text(json.dumps({"decoder_start_token_id": 0, "eos_token_id": 1,
                                                            "pad_token_id": 0, "num_beams": 4, "max_length": 40,
                                                            "transformers_version": "4.27.0.dev0"}))
    (hub / "tokenizer_config.json").write_text(json.dumps(HUB_TOKENIZER_CONFIG))
    (hub / "special_tokens_map.json").write_text(json.dumps({"eos_token": "</s>", "pad_token": "<pad>"}))
    (hub / "spiece.model").write_bytes(bytes(range(256)) * 4)
    return hub


def test_convert_keeps_generation_config_merges_tokenizer_config_and_copies_tokenizer_files(hub_folder, tmp_path):
    assert main(["convert", "--from-hf", str(hub_folder), "--out", str(tmp_path / "run")]) == 0
    assert main(["convert", "--to-hf", str(tmp_path / "run"), "--out", str(tmp_path / "back")]) == 0
    for out in (tmp_path / "run", tmp_path / "back"):
        generation = json.loads((out / "generation_config.json").read_text())
        assert (generation["num_beams"], generation["max_new_tokens"], generation["eos_token_id"]) == (4, 39, 1)
        assert "transformers_version" not in generation
        tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
        assert {k: tokenizer_config[k] for k in HUB_TOKENIZER_CONFIG} == HUB_TOKENIZER_CONFIG
        config = json.loads((out / "config.json").read_text())
        assert "transformers_version" not in config and config["minillm_version"] == minillm.__version__
        assert (out / "spiece.model").read_bytes() == (hub_folder / "spiece.model").read_bytes()
        assert (out / "special_tokens_map.json").read_text() == (hub_folder / "special_tokens_map.json").read_text()


def test_a_source_without_generation_config_gets_one_with_the_models_special_ids(hub_folder, tmp_path):
    (hub_folder / "generation_config.json").unlink()
    assert main(["convert", "--from-hf", str(hub_folder), "--out", str(tmp_path / "run")]) == 0
    generation = json.loads((tmp_path / "run" / "generation_config.json").read_text())
    assert {k: generation[k] for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id")} == {
        "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
