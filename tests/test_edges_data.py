"""Edges of the data path, pinned by hand (issue 26): the tokenizer's punctuation cut, truncation at
an exact fit, a JSONL/CSV byte-order mark, and span corruption's span count.

Every expected value is written out by hand in the test (pieces, ids, counts), never produced by
the code under test; each edge comes with its neighbours (exact fit, one past, empty).
"""
import numpy as np
import pytest

from minillm.data import DataError, Tokenizer, load_csv, load_jsonl
from minillm.data.collate import tokenize_records, truncate
from minillm.data.span_corruption import (count_spans, noise_span_to_sentinel, random_spans_noise_mask,
                                          span_corruption)

# ------------------------------------------------------------------------------ tokenizer

CORPUS = ["the day. the day, (the) day! 42 days.", "a day; the (day) 42, the day 42."] * 40


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(CORPUS, vocab_size=200, num_sentinels=2)


@pytest.mark.parametrize("text, pieces", [
    # Punctuation is cut off a word; the word keeps its "▁" (the space before it), and punctuation
    # that starts a word keeps the "▁" itself.
    ("the day.", ["▁the", "▁day", "."]),
    ("day, the", ["▁day", ",", "▁the"]),
    ("(the) day!", ["▁(", "the", ")", "▁day", "!"]),
    ("42 days.", ["▁42", "▁days", "."]),
    ("the42", ["▁the", "42"]),
])
def test_punctuation_is_cut_off_words_and_the_word_keeps_its_start_marker(tokenizer, text, pieces):
    assert tokenizer.tokenize(text) == pieces
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_a_word_gets_the_same_id_before_a_full_stop_a_comma_and_a_space(tokenizer):
    day = tokenizer.token_to_id("▁day")
    assert day is not None
    for text in ("the day.", "the day,", "the day the"):
        assert tokenizer.encode(text, add_eos=False)[1] == day


# ------------------------------------------------------------------------------ truncation


@pytest.mark.parametrize("ids, max_length, expected, cut", [
    ([5, 6, 7, 1], 4, [5, 6, 7, 1], False),    # exact fit: untouched
    ([5, 6, 7, 1], 5, [5, 6, 7, 1], False),    # room to spare
    ([5, 6, 7, 1], 3, [5, 6, 1], True),        # one past: cut, and still ends with </s>
    ([5, 6, 7, 1], 1, [1], True),              # only </s> fits
    ([5, 6, 7, 8], 3, [5, 6, 7], True),        # no </s> to keep: a plain cut
    ([5, 6, 7, 8], None, [5, 6, 7, 8], False),
    ([], 0, [], False),
])
def test_truncate_at_the_exact_fit_and_one_past(ids, max_length, expected, cut):
    assert truncate(list(ids), max_length, eos_id=1) == (expected, cut)


def test_batch_encode_truncates_only_past_the_exact_fit(tokenizer):
    ids = tokenizer.encode("the day.")          # "▁the", "▁day", ".", "</s>": 4 ids
    assert len(ids) == 4 and ids[-1] == 1
    fit = tokenizer.batch_encode(["the day."], max_length=4, padding="max_length")
    assert fit["input_ids"].tolist() == [ids] and fit["num_truncated"] == 0
    assert fit["attention_mask"].tolist() == [[1, 1, 1, 1]]
    cut = tokenizer.batch_encode(["the day."], max_length=3, padding="max_length")
    assert cut["input_ids"].tolist() == [ids[:2] + [1]] and cut["num_truncated"] == 1
    padded = tokenizer.batch_encode(["the day.", "the"], max_length=5, padding="max_length")
    assert padded["input_ids"].tolist() == [ids + [0], [ids[0], 1, 0, 0, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    assert tokenizer.batch_encode(["the day."], max_length=4, truncation=False)["num_truncated"] == 0
    with pytest.raises(ValueError, match="text has 4 tokens > max_length=3"):
        tokenizer.batch_encode(["the day."], max_length=3, truncation=False)


def test_tokenize_records_counts_cuts_at_the_exact_fit_and_one_past(tokenizer):
    records = [("the day.", "the"), ("day", "the day.")]   # sources 4 and 2 ids, targets 2 and 4
    pairs, report = tokenize_records(records, tokenizer, max_source_length=4, max_target_length=3)
    assert (report.num_source_truncated, report.num_target_truncated) == (0, 1)
    assert (report.longest_source, report.longest_target) == (4, 4)
    assert [len(s) for s, _ in pairs] == [4, 2] and [len(t) for _, t in pairs] == [2, 3]
    assert pairs[1][1][-1] == 1


# ------------------------------------------------------------------------------ byte-order mark

BOM = b"\xef\xbb\xbf"


def test_a_byte_order_mark_before_the_first_jsonl_line_is_skipped(tmp_path):
    path = tmp_path / "excel.jsonl"
    path.write_bytes(BOM + b'{"prompt": "p1", "completion": "c1"}\n{"prompt": "p2", "completion": "c2"}\n')
    data = load_jsonl(str(path))
    assert [(r.prompt, r.completion) for r in data] == [("p1", "c1"), ("p2", "c2")]
    assert data.num_lines == 2 and data.records[0].task == "excel"


def test_a_byte_order_mark_later_in_the_file_is_an_error_on_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "p1", "completion": "c1"}\n' + BOM + b'{"prompt": "p2", "completion": "c2"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: not valid JSON"):
        load_jsonl(str(path))


def test_a_file_of_only_a_byte_order_mark_is_empty(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(BOM + b"\n")
    with pytest.raises(DataError, match="file is empty"):
        load_jsonl(str(path))


def test_a_byte_order_mark_before_a_csv_header_leaves_the_column_names_intact(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(BOM + b"prompt,completion\r\nhello,world\r\n")
    data = load_csv(str(path))
    assert [(r.prompt, r.completion) for r in data] == [("hello", "world")]


# ------------------------------------------------------------------------------ span corruption


@pytest.mark.parametrize("length, density, mean_span, noise, spans", [
    # noise = round(length · density) kept in [1, length - 1]; spans = max(round(noise/mean), 1),
    # at most the number of kept tokens. np.round rounds halves to even: 2.5 → 2.
    (2, 0.15, 3.0, 1, 1),        # round(0.3) = 0 → at least 1 hidden
    (20, 0.15, 3.0, 3, 1),       # 3/3 = 1
    (100, 0.15, 3.0, 15, 5),     # 15/3 = 5
    (100, 0.15, 3.5, 15, 4),     # 15/3.5 = 4.29 → 4 (rounded, not ceiled)
    (20, 0.2, 3.0, 4, 1),        # 4/3 = 1.33 → 1
    (10, 0.25, 3.0, 2, 1),       # round(2.5) = 2 (to even); 2/3 → 1
    (10, 0.5, 3.0, 5, 2),        # 5/3 = 1.67 → 2
    (12, 0.5, 1.0, 6, 6),        # exact fit: 6 spans of 1 noise and 6 of 1 kept token
    (13, 0.5, 1.0, 6, 6),        # round(6.5) = 6 (to even), 7 kept: 6 spans
    (4, 0.9, 1.0, 3, 1),         # round(3.6) = 4 → at most length - 1 = 3; one kept token → 1 span
    (8, 0.6, 1.0, 5, 3),         # 5 spans wanted, 3 kept tokens → 3 spans
])
def test_span_corruption_hides_the_hand_counted_number_of_tokens_in_spans(length, density, mean_span,
                                                                          noise, spans):
    for seed in range(8):
        mask = random_spans_noise_mask(length, density, mean_span, np.random.default_rng(seed))
        assert mask.shape == (length,) and mask.dtype == bool
        assert int(mask.sum()) == noise
        assert count_spans(mask) == spans
        assert not mask[0]   # the text never begins with a hole


@pytest.mark.parametrize("mask, spans", [
    ([], 0), ([False], 0), ([True], 1), ([True, True], 1), ([True, False, True], 2),
    ([False, True, True, False, True], 2), ([False, False, True], 1),
])
def test_count_spans_counts_runs_of_true(mask, spans):
    assert count_spans(np.array(mask, dtype=bool)) == spans


def test_span_corruption_inputs_and_targets_mirror_each_other():
    # By hand: tokens 10..15, hidden 11,12 and 14 → inputs 10 <s0> 13 <s1> 15 </s>,
    # targets <s0> 11 12 <s1> 14 </s> (the kept runs become the sentinels of the targets).
    mask = np.array([False, True, True, False, True, False])
    assert noise_span_to_sentinel([10, 11, 12, 13, 14, 15], mask, [99, 98, 97]) == [10, 99, 13, 98, 15]
    assert noise_span_to_sentinel([10, 11, 12, 13, 14, 15], ~mask, [99, 98, 97]) == [99, 11, 12, 98, 14, 97]
    inputs, targets = span_corruption(list(range(10, 110)), list(range(200, 300)), eos_id=1,
                                      rng=np.random.default_rng(0))
    # 100 tokens: 15 hidden in 5 spans → inputs 85 kept + 5 sentinels + </s>; targets 15 + 5 + </s>
    assert len(inputs) == 91 and len(targets) == 21 and inputs[-1] == targets[-1] == 1
    assert sorted(t for t in inputs if t >= 200) == [200, 201, 202, 203, 204]


def test_span_corruption_needs_two_tokens_and_enough_sentinels():
    with pytest.raises(ValueError, match="at least 2 tokens, got 1"):
        random_spans_noise_mask(1)
    with pytest.raises(ValueError, match="100 tokens need more than 4 sentinels"):
        span_corruption(list(range(100)), [9, 8, 7, 6], rng=np.random.default_rng(0))
    inputs, _ = span_corruption(list(range(100)), [300, 301, 302, 303, 304], rng=np.random.default_rng(0))
    assert [t for t in inputs if t >= 300] == [300, 301, 302, 303, 304]   # exact fit: all five, in order
