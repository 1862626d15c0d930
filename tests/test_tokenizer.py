"""Specification of minillm.data.tokenizer: T5's id layout, encoding, decoding, files."""
import json
import os
import time

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors

from minillm.data.corpus import pretraining_corpus
from minillm.data.tokenizer import Tokenizer

CORPUS = pretraining_corpus(400, seed=0)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, vocab_size=600, model="bpe", num_sentinels=20)


@pytest.fixture(scope="module")
def unigram():
    return Tokenizer.train(CORPUS, vocab_size=600, model="unigram", num_sentinels=20)


def test_special_tokens_have_t5_ids(tok):
    assert [tok.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)


@pytest.mark.parametrize("fixture", ["tok", "unigram"])
def test_sentinels_count_down_from_the_last_id(fixture, request):
    t = request.getfixturevalue(fixture)
    assert t.num_sentinels == 20
    assert t.sentinel_id(0) == t.vocab_size - 1
    assert t.id_to_token(t.vocab_size - 1) == "<extra_id_0>"
    assert t.id_to_token(t.vocab_size - 2) == "<extra_id_1>"
    assert t.id_to_token(t.sentinel_id(19)) == "<extra_id_19>"
    with pytest.raises(IndexError):
        t.sentinel_id(20)


def test_bpe_reaches_the_requested_vocab_size(tok, unigram):
    assert tok.vocab_size == 600
    assert unigram.vocab_size <= 600  # Unigram may stop early on a small corpus


def test_encode_appends_eos_only_when_asked(tok):
    ids = tok.encode("the cat sees the dog")
    assert ids[-1] == 1 and 1 not in ids[:-1]
    assert tok.encode("the cat sees the dog", add_eos=False) == ids[:-1]


@pytest.mark.parametrize("fixture", ["tok", "unigram"])
def test_decode_inverts_encode(fixture, request):
    t = request.getfixturevalue(fixture)
    for text in CORPUS[:20] + ["What is 17 plus 3?", "miroli sema ka vimta"]:
        assert t.decode(t.encode(text)) == text


def test_a_word_has_the_same_ids_before_punctuation_as_before_a_space():
    # A corpus where "Saturday" nearly always ends a sentence: without the pre-tokenizer's cut,
    # BPE learns "day." and "day,\"" as pieces and "Saturday" splits differently in each place.
    corpus = [f"We meet on Saturday{end}" for end in (".", ",", '."', "!")] * 50 + ["Saturday is free"]
    t = Tokenizer.train(corpus, vocab_size=120, num_sentinels=4)
    word = t.encode("Saturday", add_eos=False)
    for text in ("on Saturday.", "on Saturday,", 'on Saturday."', "Saturday is"):
        ids = t.encode(text, add_eos=False)
        assert any(ids[i:i + len(word)] == word for i in range(len(ids))), (text, ids, word)
        assert t.decode(t.encode(text)) == text


def test_whitespace_runs_and_newlines_are_one_space(tok):
    assert tok.encode("Hello Sam,\n\nhow  are you?") == tok.encode("Hello Sam, how are you?")


def test_unseen_ascii_characters_are_not_unknown(tok):
    ids = tok.encode("Q~{}|^ XYZ", add_eos=False)
    assert tok.unk_token_id not in ids


def test_decode_skips_special_tokens_unless_asked(tok):
    ids = tok.encode("the cat", add_eos=False)
    noisy = [tok.sentinel_id(0)] + ids + [tok.eos_token_id, tok.pad_token_id, -100]
    assert tok.decode(noisy) == "the cat"
    assert "<extra_id_0>" in tok.decode(noisy, skip_special_tokens=False)


def test_sentinel_text_encodes_to_the_sentinel_id(tok):
    assert tok.sentinel_id(3) in tok.encode("the <extra_id_3> sat")


def test_batch_encode_pads_with_zero_and_masks_padding(tok):
    texts = ["the cat", "the big dog sees the small cats in the park"]
    lengths = [len(tok.encode(t)) for t in texts]
    out = tok.batch_encode(texts)
    assert out["input_ids"].dtype == np.int64 and out["attention_mask"].dtype == np.int64
    assert out["input_ids"].shape == (2, max(lengths))
    assert out["attention_mask"].sum(axis=1).tolist() == lengths
    assert out["input_ids"][0, lengths[0]:].tolist() == [0] * (lengths[1] - lengths[0])
    assert out["input_ids"][0, : lengths[0]].tolist() == tok.encode(texts[0])
    assert out["num_truncated"] == 0


def test_call_is_batch_encode_and_lists_are_available(tok):
    out = tok(["a b", "c"], return_numpy=False)
    assert isinstance(out["input_ids"], list) and out == tok.batch_encode(["a b", "c"], return_numpy=False)


def test_truncation_keeps_eos_and_is_counted(tok):
    long = "the big dog sees the small cats in the park " * 3
    out = tok.batch_encode([long, "the cat", long], max_length=6)
    assert out["input_ids"].shape == (3, 6)
    assert out["num_truncated"] == 2
    assert out["input_ids"][0].tolist() == tok.encode(long)[:5] + [1]


def test_padding_to_max_length_and_no_truncation_error(tok):
    out = tok.batch_encode(["the cat"], max_length=10, padding="max_length")
    assert out["input_ids"].shape == (1, 10)
    with pytest.raises(ValueError, match="max_length"):
        tok.batch_encode(["the big dog sees the cat"], max_length=3, truncation=False)


def test_ragged_output_without_padding(tok):
    out = tok.batch_encode(["the cat", "the big dog"], padding=False)
    assert out["input_ids"] == [tok.encode("the cat"), tok.encode("the big dog")]


@pytest.mark.parametrize("target", ["dir", "tokenizer.json"])
def test_save_and_load_round_trip(tok, tmp_path, target):
    path = tmp_path / target
    written = tok.save(str(path))
    loaded = Tokenizer.from_pretrained(str(path)) if target == "dir" else Tokenizer.from_file(written)
    assert loaded.vocab_size == tok.vocab_size and loaded.num_sentinels == 20
    for text in CORPUS[:10]:
        assert loaded.encode(text) == tok.encode(text)
    if target == "dir":
        config = json.loads((path / "tokenizer_config.json").read_text())
        assert config["extra_ids"] == 20 and config["pad_token"] == "<pad>"


def _hf_t5_style_file(directory):
    """A miniature of Hugging Face's T5 tokenizer.json: Unigram, Metaspace, sentinels, "$A </s>"."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁the", -1.0), ("▁cat", -1.5),
              ("▁", -2.0)] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    hf = HFTokenizer(models.Unigram(pieces, unk_id=2))
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    hf.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    hf.add_special_tokens(["<pad>", "</s>", "<unk>"])
    hf.add_special_tokens([f"<extra_id_{i}>" for i in reversed(range(3))])
    hf.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    os.makedirs(directory, exist_ok=True)
    hf.save(os.path.join(directory, "tokenizer.json"))


def test_loads_a_hugging_face_t5_tokenizer_json(tmp_path):
    _hf_t5_style_file(tmp_path)
    t = Tokenizer.from_pretrained(str(tmp_path))
    # 32 pieces (3 special + "▁the" "▁cat" "▁" + 26 letters), then 3 sentinels: 35 ids.
    assert t.vocab_size == 35 and t.num_sentinels == 3
    assert t.sentinel_id(0) == 34 and t.sentinel_id(2) == 32
    assert t.encode("the cat") == [3, 4, 1]
    # "cab" is not a piece: "▁" then the letters c=8, a=6, b=7 (letters start at id 6).
    assert t.encode("cab", add_eos=False) == [5, 8, 6, 7]
    assert t.decode([3, 4, 34, 1]) == "the cat"


def test_rejects_a_file_without_t5_special_ids(tmp_path):
    hf = HFTokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("<pad>", 0.0), ("</s>", 0.0)], unk_id=0))
    hf.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="<pad>"):
        Tokenizer.from_file(str(tmp_path / "tokenizer.json"))


def test_unknown_model_kind_is_rejected():
    with pytest.raises(ValueError, match="unigram"):
        Tokenizer.train(["a b c"], vocab_size=100, model="wordpiece", num_sentinels=2)


def test_training_on_thousands_of_texts_takes_seconds():
    texts = pretraining_corpus(3000, seed=1)
    start = time.perf_counter()
    Tokenizer.train(texts, vocab_size=2000, model="bpe")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("content, problem", [
    ("{", "not a valid tokenizer.json"), ('{"model": 3}', "not a valid tokenizer.json"), ("", "not a valid"),
])
def test_a_malformed_tokenizer_file_is_named(tmp_path, content, problem):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as error:
        Tokenizer.from_file(str(path))
    assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        Tokenizer.from_file(str(tmp_path / "nope.json"))


def test_a_tokenizer_larger_than_the_model_is_refused():
    tokenizer = Tokenizer.train(["the cat sat on the mat"] * 20, vocab_size=60, num_sentinels=2)
    tokenizer.check_fits(tokenizer.vocab_size)  # equal sizes fit
    with pytest.raises(ValueError, match=f"has {tokenizer.vocab_size} ids but config.json has vocab_size 10"):
        tokenizer.check_fits(10, "config.json")
