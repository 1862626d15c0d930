"""docs/hub.md, run: every ``sh`` block's minillm command and every ``python`` block, in order, on a
random folder of the flan-t5-small structure (untied lm_head, gated-gelu, a Unigram tokenizer with
sentinels, generation_config.json) built by transformers, shrunk so that CI runs it in seconds."""
import json
import re
import shlex
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the page's Hub folder is built by transformers")
transformers = pytest.importorskip("transformers", reason="the page's Hub folder is built by transformers")
pytest.importorskip("peft", reason="the page loads the adapter with Hugging Face PEFT")

from minillm.cli.main import main  # noqa: E402
from minillm.data import Tokenizer  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "hub.md"
RECORDS = [{"prompt": f"Add one to {a}.", "completion": str(a + 1)} for a in range(16)]


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def hub_folder(directory: Path):
    """What `huggingface-cli download google/flan-t5-small` gives, at a test's size."""
    texts = [r["prompt"] + " " + r["completion"] for r in RECORDS] * 4 + ["Translate to German: the house is small"]
    tokenizer = Tokenizer.train(texts, vocab_size=120, model="unigram", num_sentinels=8)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save(str(directory))
    assert (directory / "generation_config.json").is_file()


def test_the_page_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    hub_folder(tmp_path / "flan-t5-small")
    Path("train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    commands = [shlex.split(line) for block in blocks("sh") for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["minillm", "generate"], ["minillm", "finetune"], ["minillm", "generate"],
                                         ["minillm", "evaluate"], ["minillm", "convert"]]
    for command in commands:
        assert main(command[1:]) == 0, command
    run = tmp_path / "runs" / "flan-lora"
    assert (run / "base_model.json").is_file() and not (run / "model.safetensors").exists()
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "flan-t5-small")
    assert {"generation_config.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "flan-lora-merged").iterdir()}
    capsys.readouterr()
    for block in blocks("python"):
        exec(compile(block, str(PAGE), "exec"), {})
    assert capsys.readouterr().out.strip() == "PeftModelForSeq2SeqLM 8"
