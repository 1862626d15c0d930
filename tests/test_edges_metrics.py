"""Edges of the metrics, worked out by hand (issue 26): chrF's word n-grams around punctuation and
its hypothesis counts for orders the reference lacks, ROUGE's bootstrap interval tails, and BLEU's
scale in ``score_with_metric``.

Each chrF expectation is computed in the comment from hand-counted n-gram statistics with the
formula F_β = (1 + β²) P R / (β² P + R) (P, R averaged over the effective orders); sacreBLEU gives
the same numbers (tests/parity/test_edges_parity.py), but these tests do not need it.
"""
import math

import pytest

from minillm.evaluation.scoring import score_predictions, score_with_metric
from minillm.metrics import corpus_rouge
from minillm.metrics.chrf import corpus_chrf, sentence_chrf


def f_beta(precision, recall, beta=2):
    return 100 * (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)


# ------------------------------------------------------------------------------ chrF: characters


@pytest.mark.parametrize("hyp, ref, expected", [
    ("abc", "abc", 100.0),
    # orders 1, 2: hyp a b | ab, ref a b c | ab bc; order 3: the hypothesis has no 3-gram → not
    # effective. P = (2/2 + 1/1)/2 = 1, R = (2/3 + 1/2)/2 = 7/12.
    ("ab", "abc", f_beta(1, 7 / 12)),
    ("ab", "cd", 0.0),          # nothing matches: P = R = 0
    ("", "abc", 0.0),           # no hypothesis n-grams: no effective order
    ("a b", "ab", 100.0),       # whitespace is removed before the n-grams
    ("AB", "ab", 0.0),          # case matters unless lowercase=True
])
def test_sentence_chrf_by_hand(hyp, ref, expected):
    assert sentence_chrf(hyp, [ref]).score == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_a_reference_lacking_an_order_makes_that_orders_hypothesis_count_zero():
    # Segment 1: hyp "abcd", ref "ab"; segment 2: hyp "xyz", ref "xyz"; char_order 3.
    #   order 1: hyp 4 + 3, ref 2 + 3, match 2 + 3
    #   order 2: hyp 3 + 2, ref 1 + 2, match 1 + 2
    #   order 3: hyp 0 + 1 (segment 1's two 3-grams are not counted: its reference has none),
    #            ref 0 + 1, match 0 + 1
    # P = (5/7 + 3/5 + 1/1)/3, R = (5/5 + 3/3 + 1/1)/3 = 1. Counting the 2 would give P3 = 1/3.
    got = corpus_chrf(["abcd", "xyz"], [["ab", "xyz"]], char_order=3).score
    assert got == pytest.approx(f_beta((5 / 7 + 3 / 5 + 1) / 3, 1.0), rel=1e-12)
    # One segment alone: orders 1, 2 effective: P = (2/4 + 1/3)/2 = 5/12, R = 1 → 25/32.
    assert sentence_chrf("abcd", ["ab"], char_order=3).score == pytest.approx(78.125, rel=1e-12)


def test_chrf_options_by_hand():
    # beta 1: P = 1, R = 7/12 → 2 (7/12)/(19/12) = 14/19.
    assert sentence_chrf("ab", ["abc"], beta=1).score == pytest.approx(100 * 14 / 19, rel=1e-12)
    assert sentence_chrf("AB", ["ab"], lowercase=True).score == pytest.approx(100.0)
    # whitespace kept: hyp "a", " ", "b" | "a ", " b" | "a b"; ref "a", "b" | "ab" (no 3-gram: hyp
    # order 3 not counted). P = (2/3 + 0/2)/2 = 1/3, R = (2/2 + 0/1)/2 = 1/2 → 5/11.
    assert sentence_chrf("a b", ["ab"], whitespace=True).score == pytest.approx(100 * 5 / 11, rel=1e-12)
    # eps smoothing averages per-order F over all 3 orders: F1 = 5·(2/3)/(4 + 2/3) = 10/14,
    # F2 = 5·(1/2)/(4 + 1/2) = 5/9, order 3 (no hypothesis 3-gram, P = 1e-16, R = 0) adds 0.
    got = sentence_chrf("ab", ["abc"], char_order=3, eps_smoothing=True).score
    assert got == pytest.approx(100 * (10 / 14 + 5 / 9) / 3, rel=1e-9)
    # eps smoothing with nothing at all in an order (neither side): that order adds 1e-16 ≈ 0.
    assert sentence_chrf("a", ["a"], char_order=2, eps_smoothing=True).score == pytest.approx(50.0, rel=1e-9)


def test_chrf_corner_cases_of_the_f_score_by_hand():
    # P = R = 1/5 (one of five characters matches): F2 = 5 · 0.04/(0.8 + 0.2) = 0.2, whose
    # denominator is exactly 1; eps smoothing over one order gives the same 20.
    assert sentence_chrf("abcde", ["avwxy"], char_order=1, eps_smoothing=True).score == pytest.approx(20.0)
    assert sentence_chrf("abcde", ["avwxy"], char_order=1).score == pytest.approx(20.0)
    # As many word orders as character orders: 2 + 2, all four orders match in full.
    assert sentence_chrf("ab", ["ab"], char_order=2, word_order=2).score == pytest.approx(100.0)
    # whitespace kept in the reference: hyp "a" "b" | "ab"; ref "a" " " "b" | "a " " b" (no 3-gram):
    # P = (2/2 + 0)/2 = 1/2, R = (2/3 + 0)/2 = 1/3 → 5 · (1/6)/(2 + 1/3) = 5/14.
    assert sentence_chrf("ab", ["a b"], whitespace=True).score == pytest.approx(100 * 5 / 14, rel=1e-12)
    score = sentence_chrf("ab", ["abc"], char_order=5, word_order=1, beta=3)
    assert (score.char_order, score.word_order, score.beta, score.name) == (5, 1, 3, "chrF3+")


def test_eps_smoothing_also_decides_which_reference_is_best():
    # hyp "ab", char_order 2, references "abc" and "a":
    #   by effective order, "a" wins: order 1 only, P = 1/2, R = 1 → 83.3 (vs 63.6 for "abc");
    #   by eps smoothing, "abc" wins: (F1 + F2)/2 = (10/14 + 5/9)/2 = 63.5, while "a" has
    #   (5/6 + 1e-16)/2 = 41.7. The chosen reference is the one its own smoothing ranks first.
    got = sentence_chrf("ab", ["abc", "a"], char_order=2, eps_smoothing=True).score
    assert got == pytest.approx(100 * (10 / 14 + 5 / 9) / 2, rel=1e-9)
    assert sentence_chrf("ab", ["abc", "a"], char_order=2).score == pytest.approx(f_beta(1 / 2, 1), rel=1e-12)


def test_the_best_reference_of_several_is_kept_first_on_ties():
    assert sentence_chrf("abc", ["xbc", "abc"]).score == pytest.approx(100.0)
    # A tie with different statistics (char_order 1, beta 1): hyp "aa" against "a" is [hyp 2, ref 1,
    # match 1] (P = 1/2, R = 1), against "aaaa" [2, 4, 2] (P = 1, R = 1/2): both F1 = 2/3. The first
    # reference's statistics enter the corpus sum. With a second segment "b"/"b" = [1, 1, 1]:
    #   first "a":    [3, 2, 2] → P = 2/3, R = 1   → F1 = 0.8
    #   first "aaaa": [3, 5, 3] → P = 1,   R = 3/5 → F1 = 0.75
    hyps = ["aa", "b"]
    assert corpus_chrf(hyps, [["a", "b"], ["aaaa", "b"]], char_order=1, beta=1).score == pytest.approx(80.0)
    assert corpus_chrf(hyps, [["aaaa", "b"], ["a", "b"]], char_order=1, beta=1).score == pytest.approx(75.0)


# ------------------------------------------------------------------------------ chrF++: words


@pytest.mark.parametrize("hyp, ref, expected", [
    # char_order 0, word_order 1: word-unigram F2 only.
    # "Hello," → "Hello" ","; "world!" → "world" "!": 4 hyp words, 2 ref words, 2 matches.
    ("Hello, world!", "Hello world", f_beta(2 / 4, 2 / 2)),
    # A leading mark is split off when there is no trailing one: ".hi" → "." "hi".
    (".hi there", ". hi there", 100.0),
    # Only one mark is split: "(hi)" → "(hi" ")", against "(" "hi" ")": 1 match of 2 and of 3.
    ("(hi)", "( hi )", f_beta(1 / 2, 1 / 3)),
    # A one-character word is never split: "," stays ","; "a," → "a" ",".
    (", a,", ", a ,", 100.0),
    # "..." → ".." "." (the last mark only); the reference's ".." is itself split into "." ".":
    # hyp ".." "." against ref "." "." ".": one "." matches (clipped at the hypothesis's one).
    ("...", ".. .", f_beta(1 / 2, 1 / 3)),
])
def test_word_unigrams_split_one_punctuation_mark_off_each_word(hyp, ref, expected):
    got = sentence_chrf(hyp, [ref], char_order=0, word_order=1).score
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_word_bigrams_span_the_split_punctuation():
    # "(a b)" → "(" "a" "b" ")": bigrams "( a", "a b", "b )", all in "( a b )": 100.
    assert sentence_chrf("(a b)", ["( a b )"], char_order=0, word_order=2).score == pytest.approx(100.0)
    # "a, b" → "a" "," "b": bigrams "a ,", ", b"; ref "a b": "a b". Unigrams P = 2/3, R = 1;
    # bigrams P = 0/2, R = 0/1. Means: P = 1/3, R = 1/2 → 5/11.
    got = sentence_chrf("a, b", ["a b"], char_order=0, word_order=2).score
    assert got == pytest.approx(100 * 5 / 11, rel=1e-12)


def test_chrf_plus_plus_averages_character_and_word_orders():
    # char orders 1, 2 of "ab" vs "abc": P = 1, 1 and R = 2/3, 1/2; word order 1: "ab" vs "abc", no
    # match: P = R = 0. P = 2/3, R = (2/3 + 1/2 + 0)/3 = 7/18 → 5 (2/3)(7/18)/(8/3 + 7/18) = 14/33.
    assert sentence_chrf("ab", ["abc"], char_order=2, word_order=1).score == pytest.approx(100 * 14 / 33, rel=1e-12)


def test_a_word_order_tie_between_references_keeps_the_first():
    # Word unigrams, beta 1: hyp "a a" against "a a a a" is [2, 4, 2] and against "a" [2, 1, 1]: both
    # F1 = 2/3. The first is kept; with segment 2 ("b"/"b", [1, 1, 1]) the totals are [3, 5, 3]:
    # P = 1, R = 3/5 → F1 = 0.75 (the second reference would give [3, 2, 2] → 0.8).
    got = corpus_chrf(["a a", "b"], [["a a a a", "b"], ["a", "b"]], char_order=0, word_order=1, beta=1).score
    assert got == pytest.approx(75.0)


def test_chrf_plus_plus_name_signature_and_errors():
    score = sentence_chrf("ab", ["abc"], word_order=2)
    assert score.name == "chrF2++" and str(score).startswith("chrF2++ = ")
    assert str(sentence_chrf("ab", ["abc"])) == "chrF2 = 63.64"   # 100 · 35/55 = 63.636...
    assert sentence_chrf("ab", ["abc"]).signature == "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no"
    assert corpus_chrf(["a"], [["a"], ["b"]], lowercase=True, eps_smoothing=True, whitespace=True,
                       word_order=2).signature == "nrefs:2|case:lc|eff:no|nc:6|nw:2|space:yes"
    for bad in (dict(char_order=0, word_order=0), dict(char_order=-1), dict(word_order=-1)):
        with pytest.raises(ValueError, match="need char_order \\+ word_order > 0"):
            sentence_chrf("a", ["a"], **bad)
    with pytest.raises(TypeError, match="^hypothesis must be a string, got list$"):
        sentence_chrf(["a"], ["a"])
    with pytest.raises(TypeError, match=r"^references must be a list of strings, e\.g\. sentence_chrf\(hyp, \[ref\]\)$"):
        sentence_chrf("a", "a")


# ------------------------------------------------------------------------------ ROUGE bootstrap


def test_rouge_bootstrap_interval_tails_by_hand():
    # Two examples scoring 0 and 1 (disjoint / identical): a resample's mean is 0, 1/2 or 1 with
    # probabilities 1/4, 1/2, 1/4. A c-interval cuts (1 - c)/2 off each tail:
    #   c = 0.4: 30% tails, past the 25% atoms → [1/2, 1/2];
    #   c = 0.6: 20% tails, inside them → [0, 1].
    # Cutting 1 - c off each tail (not half of it) would give [1/2, 1/2] at c = 0.6 too.
    predictions, references = ["x y", "a b"], ["p q", "a b"]
    narrow = corpus_rouge(predictions, references, ["rouge1"], confidence_interval=0.4, n_bootstrap=2000)
    wide = corpus_rouge(predictions, references, ["rouge1"], confidence_interval=0.6, n_bootstrap=2000)
    assert narrow["rouge1"].mid.fmeasure == 0.5 == wide["rouge1"].mid.fmeasure
    assert (narrow["rouge1"].low.fmeasure, narrow["rouge1"].high.fmeasure) == (0.5, 0.5)
    assert (wide["rouge1"].low.fmeasure, wide["rouge1"].high.fmeasure) == (0.0, 1.0)
    assert (wide["rouge1"].low.precision, wide["rouge1"].high.recall) == (0.0, 1.0)


def test_rouge_bootstrap_of_equal_scores_is_a_point_and_its_arguments_are_checked():
    same = corpus_rouge(["a b", "c d"], ["a b", "c d"], ["rouge1"], confidence_interval=0.95, n_bootstrap=10)
    assert (same["rouge1"].low.fmeasure, same["rouge1"].mid.fmeasure, same["rouge1"].high.fmeasure) == (1, 1, 1)
    assert corpus_rouge(["a"], ["a"], ["rouge1"])["rouge1"].low is None   # no interval unless asked
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="confidence_interval must be in \\(0, 1\\)"):
            corpus_rouge(["a"], ["a"], confidence_interval=bad)
    with pytest.raises(ValueError, match="n_bootstrap must be positive, got 0"):
        corpus_rouge(["a"], ["a"], confidence_interval=0.9, n_bootstrap=0)


# ------------------------------------------------------------------------------ BLEU's scale


def test_score_with_metric_reports_bleu_on_sacrebleus_0_to_100_scale():
    # Every n-gram precision is 1 (4 words, all in order); the hypothesis has 4 words against 5:
    # brevity penalty exp(1 - 5/4) = e^-0.25, so BLEU = 100 e^-0.25 = 77.88.
    hyp, ref = "the cat sat down", "the cat sat down today"
    assert score_with_metric("bleu", [hyp], [ref]) == {"bleu": pytest.approx(100 * math.exp(-0.25), rel=1e-9)}
    assert score_with_metric("bleu", [ref], [ref]) == {"bleu": pytest.approx(100.0)}


def test_score_predictions_puts_bleu_on_the_0_to_1_scale_of_the_other_headlines():
    class Record:
        def __init__(self, completion, task):
            self.completion, self.task = completion, task

    records = [Record("the cat sat down today", "translation"), Record("yes", "mine")]
    got = score_predictions(["the cat sat down", " yes "], records)
    assert got["translation/bleu"] == pytest.approx(100 * math.exp(-0.25), rel=1e-9)
    assert got["mine/exact_match"] == 1.0 and got["mine/rougeL"] == 1.0
    # score = mean of the headlines: bleu/100 for translation, rougeL for the unknown task.
    assert got["score"] == pytest.approx((math.exp(-0.25) + 1.0) / 2, rel=1e-9)


# ------------------------------------------------------------------------------ few-shot examples


def test_a_shot_pool_copy_of_the_query_is_never_a_demonstration():
    from minillm.evaluation.harness import select_shots

    query = {"text": "q", "target": "t"}
    pool = [dict(query), {"text": "a", "target": "1"}, {"text": "b", "target": "2"}]  # an equal copy, first
    for seed in range(20):
        shots = select_shots(pool, query, 2, seed, query_index=0)
        assert sorted(s["text"] for s in shots) == ["a", "b"]        # exact fit: both others, never "q"
    assert select_shots(pool, query, 0, 0, 0) == []
    assert select_shots([query, pool[1]], query, 1, 0, 0) == [pool[1]]  # the query object itself is skipped
    with pytest.raises(ValueError, match="asked for 3 shots but the pool has only 2 examples"):
        select_shots(pool, query, 3, 0, 0)                                 # one past


def test_build_prompts_gives_each_query_seeded_shots_that_differ_from_it():
    from minillm.evaluation.harness import EvalTask, build_prompts

    examples = [{"text": str(i), "target": str(i)} for i in range(6)]
    seen = []

    def render(shots, query):
        seen.append((query["text"], [s["text"] for s in shots]))
        return " ".join(s["text"] for s in shots) + " | " + query["text"], query["target"]

    task = EvalTask("t", examples, render)
    prompts, targets = build_prompts(task, shots=5)
    assert targets == [str(i) for i in range(6)]
    for query, shots in seen:                    # 5 shots from 6 examples: all the others, exactly
        assert sorted(shots) == sorted(str(i) for i in range(6) if str(i) != query)
    assert build_prompts(task, shots=5) == (prompts, targets)       # the same seed, the same prompts
    with pytest.raises(ValueError, match="asked for 6 shots but the pool has only 5"):
        build_prompts(task, shots=6)
