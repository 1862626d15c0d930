"""``minillm generate``: GenerationConfig flags (defaults in --help, the folder's file), the memory
bound, answers cut at the limit, and prompts that are not UTF-8."""
import io
import shutil

import numpy as np
import pytest

from minillm.cli.main import main
from minillm.generation_config import GenerationConfig
from minillm.models import T5ForConditionalGeneration

PROMPT = "What is 2 plus 1?"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A smoke pretraining run ("pre"), and a copy whose decoder output is zero ("never_ends"): every
    logit is 0, so greedy search takes id 0 (<pad>) at every step and never emits </s> (id 1)."""
    root = tmp_path_factory.mktemp("gen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILLM_SMOKE", "1")
        assert main(["pretrain", "--out", str(root / "pre")]) == 0
    model = T5ForConditionalGeneration.from_pretrained(root / "pre")
    model.decoder.final_layer_norm.weight.data[:] = 0.0
    model.save_pretrained(root / "never_ends")
    shutil.copy(root / "pre" / "tokenizer.json", root / "never_ends" / "tokenizer.json")
    return root


def test_help_shows_every_decoding_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--max-new-tokens", "else 64"), ("--num-beams", "else 1"), ("--temperature", "else 1.0"),
                          ("--top-k", "else 0"), ("--top-p", "else 1.0"), ("--length-penalty", "else 1.0"),
                          ("--early-stopping", "else false"), ("--num-return-sequences", "else 1")):
        assert flag in text and default in text.split(flag, 2)[-1][:400], flag


def test_an_answer_cut_at_the_limit_says_so(folders, tmp_path, capsys):
    assert main(["generate", "--model", str(folders / "never_ends"), "--prompt", PROMPT, "--max-new-tokens", "5"]) == 0
    assert "prompt 1: the answer was cut at --max-new-tokens 5 before </s>" in capsys.readouterr().err
    # the same model, told that id 0 (the token it always picks) ends an answer, is not cut
    shutil.copytree(folders / "never_ends", tmp_path / "m")
    GenerationConfig(eos_token_id=0).save_pretrained(tmp_path / "m")
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", PROMPT, "--max-new-tokens", "5"]) == 0
    assert "cut" not in capsys.readouterr().err


def test_beam_answers_come_best_first_with_their_scores(folders, capsys):
    assert main(["generate", "--model", str(folders / "pre"), "--prompt", PROMPT, "--num-beams", "3",
                 "--num-return-sequences", "3", "--max-new-tokens", "4", "--output-scores"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    scores = [float(line.split("\t")[0]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_the_folders_generation_config_is_used_and_flags_override_it(folders, tmp_path, capsys):
    model_dir = tmp_path / "m"
    shutil.copytree(folders / "never_ends", model_dir)
    # uniform draws over the vocabulary (every logit is 0): with seed 0 none of them is </s>
    GenerationConfig(do_sample=True, num_return_sequences=2, max_new_tokens=3).save_pretrained(model_dir)
    assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 2 and "--max-new-tokens 3 " in out.err
    assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT, "--num-return-sequences", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--max-new-tokens", "1000000000"], "needs about"),
    (["--num-beams", "1000000", "--max-new-tokens", "1000"], "needs about"),
    (["--num-beams", "2", "--num-return-sequences", "3"], "num_return_sequences (3) must be <= num_beams (2)"),
])
def test_impossible_requests_exit_2_with_one_line(folders, capsys, flags, message):
    assert main(["generate", "--model", str(folders / "pre"), "--prompt", PROMPT, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_early_stopping_other_than_true_false_never_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--model", "m", "--prompt", PROMPT, "--early-stopping", "sometimes"])
    assert exit_.value.code == 2
    assert "expected true, false or never, got 'sometimes'" in capsys.readouterr().err


def test_a_prompt_flag_that_is_not_utf8_is_refused_naming_the_byte(folders, capsys):
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # how Python hands over such an argv entry
    assert main(["generate", "--model", str(folders / "pre"), "--prompt", "fine", "--prompt", bad]) == 2
    err = capsys.readouterr().err
    assert "--prompt 2 is not valid UTF-8 (byte 0xe9 at offset 3)" in err and "Traceback" not in err


def test_a_stdin_line_that_is_not_utf8_is_refused_naming_the_line(folders, capsys, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(b"What is 1 plus 1?\nbad \xff\xfe line\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["generate", "--model", str(folders / "pre"), "--max-new-tokens", "2"]) == 2
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1  # the first line was answered
    assert "stdin line 2 is not valid UTF-8 (byte 0xff at offset 4)" in out.err
