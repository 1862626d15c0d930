"""minillm's BLEU / chrF / chrF++ must equal sacreBLEU (the oracle) within 1e-9."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sacrebleu = pytest.importorskip("sacrebleu")
from sacrebleu.metrics import BLEU, CHRF  # noqa: E402

from minillm.metrics import corpus_bleu, corpus_chrf, sentence_bleu, sentence_chrf  # noqa: E402

# Fragments aimed at the 13a rules: ASCII symbols, "." and "," next to digits or not, dashes
# after digits, the XML entities, <skipped>, "-\n" line joins, apostrophes, mixed case,
# non-Latin text and Unicode whitespace/digits that str.split() and [0-9] treat differently.
FRAGMENTS = [
    "the", "The", "THE", "cat", "dog", "sat", "on", "mat", "a", "A", "man", "bit",
    "don't", "it's", "well-known", "e-mail", "3", "3.14", "1,000", "1-2", "5-", "-7", "x.y",
    ".", ",", "!", "?", ";", ":", "(", ")", '"', "'", "-", "--", "&", "&amp;", "&quot;",
    "&lt;", "&gt;", "&AMP;", "<skipped>", "/", "@", "#", "...", "$5", "100%", "{x}", "[y]",
    "café", "Straße", "İstanbul", "日本語", "Привет", "😀", "\u0663", "\u00a0", "\u2003",
]
SEPARATORS = [" ", " ", " ", "", "\n", "\t", "  ", "-\n", " \n", "\r\n"]
fragment_text = st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)),
                         max_size=15).map(lambda parts: "".join(w + s for w, s in parts))
texts = st.one_of(fragment_text, fragment_text, fragment_text, st.text(max_size=25), st.just(""))

smoothing = st.one_of(
    st.tuples(st.just("exp"), st.none()),
    st.tuples(st.just("none"), st.none()),
    st.tuples(st.just("floor"), st.sampled_from([None, 0.1, 0.01, 0.5])),
    st.tuples(st.just("add-k"), st.sampled_from([None, 1, 0.5, 2])),
)


@st.composite
def corpora(draw, allow_missing=True):
    """(hypotheses, reference streams) with 1-4 segments and 1-3 streams; streams after the
    first may miss a segment (None), as sacreBLEU allows."""
    n_segments = draw(st.integers(1, 4))
    n_streams = draw(st.integers(1, 3))
    hypotheses = draw(st.lists(texts, min_size=n_segments, max_size=n_segments))
    missing = st.one_of(texts, st.none()) if allow_missing else texts
    streams = [draw(st.lists(texts if s == 0 else missing, min_size=n_segments,
                             max_size=n_segments)) for s in range(n_streams)]
    return hypotheses, streams


def without_version(signature):
    return re.sub(r"\|version:[^|]*$", "", signature.format())


def assert_same_bleu(ours, theirs, smooth_method):
    assert abs(ours.score - theirs.score) <= 1e-9
    assert abs(ours.bp - theirs.bp) <= 1e-9
    assert all(abs(a - b) <= 1e-9 for a, b in zip(ours.precisions, theirs.precisions))
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert abs(ours.ratio - theirs.ratio) <= 1e-9
    if smooth_method != "add-k":  # sacreBLEU's add-k writes k into its counts/totals lists
        assert (ours.counts, ours.totals) == (list(theirs.counts), list(theirs.totals))
    assert str(ours) == str(theirs)


@settings(max_examples=150, deadline=None)
@given(corpus=corpora(), tokenize=st.sampled_from(["13a", "none"]), lowercase=st.booleans(),
       smooth=smoothing, use_effective_order=st.booleans())
def test_corpus_bleu_matches_sacrebleu_for_every_option(corpus, tokenize, lowercase, smooth,
                                                         use_effective_order):
    hypotheses, streams = corpus
    smooth_method, smooth_value = smooth
    metric = BLEU(lowercase=lowercase, tokenize=tokenize, smooth_method=smooth_method,
                  smooth_value=smooth_value, effective_order=use_effective_order)
    theirs = metric.corpus_score(hypotheses, streams)
    ours = corpus_bleu(hypotheses, streams, smooth_method=smooth_method,
                       smooth_value=smooth_value, lowercase=lowercase, tokenize=tokenize,
                       use_effective_order=use_effective_order)
    assert_same_bleu(ours, theirs, smooth_method)
    assert ours.signature == without_version(metric.get_signature())


@settings(max_examples=100, deadline=None)
@given(hypothesis=texts, references=st.lists(texts, min_size=1, max_size=3),
       tokenize=st.sampled_from(["13a", "none"]), lowercase=st.booleans(), smooth=smoothing,
       use_effective_order=st.booleans())
def test_sentence_bleu_matches_sacrebleu_for_every_option(hypothesis, references, tokenize,
                                                           lowercase, smooth,
                                                           use_effective_order):
    smooth_method, smooth_value = smooth
    theirs = sacrebleu.sentence_bleu(hypothesis, references, smooth_method=smooth_method,
                                     smooth_value=smooth_value, lowercase=lowercase,
                                     tokenize=tokenize, use_effective_order=use_effective_order)
    ours = sentence_bleu(hypothesis, references, smooth_method=smooth_method,
                         smooth_value=smooth_value, lowercase=lowercase, tokenize=tokenize,
                         use_effective_order=use_effective_order)
    assert_same_bleu(ours, theirs, smooth_method)


@settings(max_examples=60, deadline=None)
@given(hypothesis=texts, references=st.lists(texts, min_size=1, max_size=3))
def test_sentence_bleu_defaults_are_sacrebleus(hypothesis, references):
    # Defaults: exp smoothing, effective order on, 13a, case-sensitive.
    theirs = sacrebleu.sentence_bleu(hypothesis, references)
    ours = sentence_bleu(hypothesis, references)
    assert_same_bleu(ours, theirs, "exp")


chrf_options = st.fixed_dictionaries({
    "word_order": st.sampled_from([0, 2]),
    "beta": st.sampled_from([2, 2, 1, 3]),
    "lowercase": st.booleans(),
    "whitespace": st.booleans(),
    "eps_smoothing": st.booleans(),
})


@settings(max_examples=120, deadline=None)
@given(corpus=corpora(), options=chrf_options)
def test_corpus_chrf_and_chrf_plus_plus_match_sacrebleu(corpus, options):
    hypotheses, streams = corpus
    metric = CHRF(char_order=6, **options)
    theirs = metric.corpus_score(hypotheses, streams)
    ours = corpus_chrf(hypotheses, streams, char_order=6, **options)
    assert abs(ours.score - theirs.score) <= 1e-9
    assert str(ours) == str(theirs)
    assert ours.signature == without_version(metric.get_signature())


@settings(max_examples=80, deadline=None)
@given(hypothesis=texts, references=st.lists(texts, min_size=1, max_size=3),
       options=chrf_options)
def test_sentence_chrf_and_chrf_plus_plus_match_sacrebleu(hypothesis, references, options):
    theirs = CHRF(**options).sentence_score(hypothesis, references)
    ours = sentence_chrf(hypothesis, references, **options)
    assert abs(ours.score - theirs.score) <= 1e-9
