"""minillm's ROUGE must equal Google's rouge-score (the oracle) within 1e-9 on generated text."""
import functools
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
nltk = pytest.importorskip("nltk")

from minillm.metrics import corpus_rouge, rouge_score  # noqa: E402

ALL_TYPES = [f"rouge{n}" for n in range(1, 10)] + ["rougeL", "rougeLsum"]

# Fragments mix what trips tokenizers: case, punctuation, numbers, hyphens, apostrophes,
# stemmable English, HTML-ish entities and non-Latin / compatibility characters.
FRAGMENTS = [
    "the", "The", "THE", "cat", "cats", "dog", "dogs", "running", "runs", "ran", "run",
    "generously", "quickly", "happiness", "was", "is", "a", "on", "mat", "connection",
    "don't", "it's", "well-known", "e-mail", "3", "3.14", "1,000", "1-2", "42nd", "2024",
    ".", ",", "!", "?", ";", "(", ")", '"', "'", "-", "--", "&", "&amp;", "/", "...",
    "café", "naïve", "Straße", "İstanbul", "日本語", "東京", "Привет", "мир", "Ελλάδα",
    "😀", "ＡＢＣ", "\u212a", "ﬁne",
]
SEPARATORS = [" ", " ", " ", "", "\n", "\t", "  ", "\n\n", " \n"]
fragment_text = st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)),
                         max_size=20).map(lambda parts: "".join(w + s for w, s in parts))
texts = st.one_of(fragment_text, fragment_text, fragment_text, st.text(max_size=30), st.just(""))


@functools.lru_cache(maxsize=None)
def oracle(use_stemmer, split_summaries=False):
    return rouge_scorer.RougeScorer(ALL_TYPES, use_stemmer=use_stemmer,
                                    split_summaries=split_summaries)


def assert_same_scores(actual, expected, rouge_types=ALL_TYPES):
    for rouge_type in rouge_types:
        for field in ("precision", "recall", "fmeasure"):
            ours = getattr(actual[rouge_type], field)
            theirs = getattr(expected[rouge_type], field)
            assert abs(ours - theirs) <= 1e-9, (rouge_type, field, ours, theirs)


@settings(max_examples=120, deadline=None)
@given(prediction=texts, reference=texts, use_stemmer=st.booleans())
def test_single_reference_matches_rouge_score_for_every_type(prediction, reference,
                                                             use_stemmer):
    expected = oracle(use_stemmer).score(reference, prediction)
    actual = rouge_score(prediction, reference, ALL_TYPES, use_stemmer=use_stemmer)
    assert_same_scores(actual, expected)


# Words whose stems collide with other words, some of them only if 3-letter words were
# stemmed too ("its" -> "it", "has" -> "ha"), some only with the stemmer ("runs" -> "run").
stem_sensitive = st.lists(st.sampled_from([
    "its", "it", "has", "ha", "was", "wa", "this", "thi", "runs", "run", "running", "cats",
    "cat", "generously", "generous", "ties", "tie", "happiness", "happi", "Cats."]),
    max_size=8).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(prediction=stem_sensitive, reference=stem_sensitive)
def test_stemming_of_words_longer_than_three_matches_rouge_score(prediction, reference):
    expected = oracle(True).score(reference, prediction)
    actual = rouge_score(prediction, reference, ALL_TYPES, use_stemmer=True)
    assert_same_scores(actual, expected)


@settings(max_examples=60, deadline=None)
@given(prediction=texts, references=st.lists(texts, min_size=2, max_size=3),
       use_stemmer=st.booleans())
def test_several_references_keep_the_best_f_like_score_multi(prediction, references,
                                                            use_stemmer):
    expected = oracle(use_stemmer).score_multi(references, prediction)
    actual = rouge_score(prediction, references, ALL_TYPES, use_stemmer=use_stemmer)
    assert_same_scores(actual, expected)


# Sentences made of lines: ROUGE-Lsum's union LCS only differs from ROUGE-L with several.
# A three-word vocabulary makes many equally long LCSs, so the choice of which one the
# backtrack reads out (it changes the union) is exercised too.
tiny_sentence = st.lists(st.sampled_from(["a", "b", "c", "B."]), min_size=0, max_size=5).map(
    " ".join)
lines = st.lists(st.one_of(fragment_text, tiny_sentence, tiny_sentence), min_size=1,
                 max_size=4).map("\n".join)


@settings(max_examples=80, deadline=None)
@given(prediction=lines, reference=lines, use_stemmer=st.booleans())
def test_multi_sentence_rouge_lsum_matches_union_lcs_of_rouge_score(prediction, reference,
                                                                   use_stemmer):
    expected = oracle(use_stemmer).score(reference, prediction)
    actual = rouge_score(prediction, reference, ["rougeLsum"], use_stemmer=use_stemmer)
    assert_same_scores(actual, expected, ["rougeLsum"])


def _punkt_available():
    try:
        nltk.sent_tokenize("One. Two.")
        return True
    except LookupError:
        return False


@pytest.mark.skipif(not _punkt_available(), reason="NLTK punkt_tab data not downloaded")
@settings(max_examples=30, deadline=None)
@given(prediction=texts, reference=texts)
def test_split_summaries_matches_rouge_score_with_real_punkt(prediction, reference):
    expected = oracle(False, True).score(reference, prediction)
    actual = rouge_score(prediction, reference, ["rougeLsum"], split_summaries=True)
    assert_same_scores(actual, expected, ["rougeLsum"])


def _toy_sentence_splitter(text):
    # Stands in for punkt (data that may not be installed): split after ". ".
    return [part for part in text.replace(". ", ".\x00").split("\x00")]


@settings(max_examples=40, deadline=None)
@given(prediction=texts, reference=texts, use_stemmer=st.booleans())
def test_split_summaries_delegates_to_nltk_sent_tokenize_like_rouge_score(
        prediction, reference, use_stemmer):
    with mock.patch.object(nltk, "sent_tokenize", _toy_sentence_splitter):
        expected = oracle(use_stemmer, True).score(reference, prediction)
        actual = rouge_score(prediction, reference, ["rougeLsum"], use_stemmer=use_stemmer,
                             split_summaries=True)
    assert_same_scores(actual, expected, ["rougeLsum"])


@settings(max_examples=20, deadline=None)
@given(predictions=st.lists(texts, min_size=1, max_size=5), data=st.data())
def test_corpus_mean_equals_mean_of_rouge_score_per_example(predictions, data):
    references = data.draw(st.lists(texts, min_size=len(predictions),
                                    max_size=len(predictions)))
    per_example = [oracle(False).score(r, p) for p, r in zip(predictions, references)]
    actual = corpus_rouge(predictions, references, ALL_TYPES)
    for rouge_type in ALL_TYPES:
        expected_mean = np.mean([list(s[rouge_type]) for s in per_example], axis=0)
        np.testing.assert_allclose(list(actual[rouge_type].mid), expected_mean, atol=1e-9, rtol=0)
