"""BLEU / chrF specification tests that need no oracle: values are worked out by hand in the
comments, or taken from sacreBLEU's README (its "Using SacreBLEU from Python" section)."""
import math

import pytest

from minillm.metrics import (compute_bleu, corpus_bleu, corpus_chrf, sentence_bleu,
                             sentence_chrf, tokenize_13a)

README_HYPOTHESES = ["The dog bit the man.", "It wasn't surprising.",
                     "The man had just bitten him."]
README_REFERENCES = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def test_corpus_bleu_reproduces_the_sacrebleu_readme_example():
    result = corpus_bleu(README_HYPOTHESES, README_REFERENCES)
    assert str(result) == ("BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 "
                           "hyp_len = 17 ref_len = 18)")
    # README signature "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.0.0", minus
    # the version field that minillm deliberately leaves out.
    assert result.signature == "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp"


def test_missing_references_give_variable_nrefs_like_the_readme():
    references = [[None] + README_REFERENCES[0][1:], README_REFERENCES[1]]
    result = corpus_bleu(README_HYPOTHESES, references)
    assert str(result) == ("BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 "
                           "hyp_len = 17 ref_len = 19)")
    assert result.signature.startswith("nrefs:var|")


def test_corpus_chrf_reproduces_the_sacrebleu_readme_example():
    result = corpus_chrf(README_HYPOTHESES, README_REFERENCES)
    assert str(result) == "chrF2 = 59.73"
    assert result.signature == "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no"


def test_bleu_by_hand_on_the_cat_sat_on_the_mat():
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat" (6 tokens each, BP = 1):
    #   1-grams: the x2 (ref has 1 -> clipped to 1), cat, sat, on, mat       -> 5/6
    #   2-grams: the cat, cat sat, sat on match; on the, the mat do not      -> 3/5
    #   3-grams: the cat sat, cat sat on match; sat on the, on the mat don't -> 2/4
    #   4-grams: the cat sat on matches; the other two do not                -> 1/3
    # BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25
    result = sentence_bleu("the cat sat on the mat", ["the cat sat on a mat"])
    assert result.counts == [5, 3, 2, 1] and result.totals == [6, 5, 4, 3]
    assert result.score == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-9)
    assert result.bp == 1.0


# hyp "a b c d" vs ref "a b x d": 1-grams 3/4; 2-grams ab/bc/cd vs ab/bx/xd -> 1/3;
# 3-grams abc/bcd vs abx/bxd -> 0/2; 4-grams abcd vs abxd -> 0/1. Lengths equal, BP = 1.
@pytest.mark.parametrize("smooth_method, smooth_value, expected_precisions", [
    # exp: the k-th order with no match gets 1 / (2^k * total): 1/(2*2), 1/(4*1).
    ("exp", None, [3 / 4, 1 / 3, 1 / 4, 1 / 4]),
    # floor (default 0.1): a zero count becomes 0.1: 0.1/2, 0.1/1.
    ("floor", None, [3 / 4, 1 / 3, 0.1 / 2, 0.1 / 1]),
    ("floor", 0.5, [3 / 4, 1 / 3, 0.5 / 2, 0.5 / 1]),
    # add-k (default 1) for n > 1: (1+1)/(3+1), (0+1)/(2+1), (0+1)/(1+1).
    ("add-k", None, [3 / 4, 2 / 4, 1 / 3, 1 / 2]),
    ("add-k", 2, [3 / 4, 3 / 5, 2 / 4, 2 / 3]),
])
def test_smoothing_methods_by_hand(smooth_method, smooth_value, expected_precisions):
    result = corpus_bleu(["a b c d"], [["a b x d"]], smooth_method=smooth_method,
                         smooth_value=smooth_value, tokenize="none")
    assert result.precisions == pytest.approx([100 * p for p in expected_precisions], abs=1e-9)
    expected_score = 100 * math.prod(expected_precisions) ** (1 / 4)
    assert result.score == pytest.approx(expected_score, abs=1e-9)
    assert result.counts == [3, 1, 0, 0]  # raw counts, never smoothed


def test_no_smoothing_makes_one_zero_precision_zero_bleu():
    result = corpus_bleu(["a b c d"], [["a b x d"]], smooth_method="none", tokenize="none")
    assert result.score == 0.0
    assert result.precisions[:2] == pytest.approx([75.0, 100 / 3])


def test_no_matching_ngram_at_all_gives_zero_whatever_the_smoothing():
    for method in ("exp", "floor", "add-k", "none"):
        assert corpus_bleu(["x y z"], [["a b c"]], smooth_method=method).score == 0.0


def test_effective_order_skips_orders_without_hypothesis_ngrams():
    # hyp = ref = "a b": 1-grams 2/2, 2-grams 1/1, and no 3- or 4-grams at all.
    # Effective order averages orders 1-2 only -> 100; without it BLEU is 0.
    assert sentence_bleu("a b", ["a b"]).score == pytest.approx(100.0)
    assert corpus_bleu(["a b"], [["a b"]]).score == 0.0
    assert corpus_bleu(["a b"], [["a b"]], use_effective_order=True).score == pytest.approx(100)


def test_brevity_penalty_is_exp_of_one_minus_reference_over_hypothesis_length():
    # hyp "a b" (2 tokens) vs ref "a b c d" (4): BP = exp(1 - 4/2) = e^-1; p1 = p2 = 1.
    result = sentence_bleu("a b", ["a b c d"], tokenize="none")
    assert result.bp == pytest.approx(math.exp(-1))
    assert result.score == pytest.approx(100 * math.exp(-1))
    assert result.ratio == pytest.approx(0.5)


def test_reference_length_is_the_closest_one_and_the_shorter_on_ties():
    # 3-token hypothesis: references of 2 and 4 tokens are both 1 away -> 2 is used.
    assert sentence_bleu("a b c", ["a b", "a b c d"], tokenize="none").ref_len == 2
    # References of 1 and 4 tokens: 4 is closer (1 away vs 2).
    assert sentence_bleu("a b c", ["a", "a b c d"], tokenize="none").ref_len == 4


def test_ngram_counts_are_clipped_to_the_max_count_in_any_single_reference():
    # "the" occurs 3x in the hypothesis, at most 2x in one reference -> 2 matches (not 1+2).
    result = sentence_bleu("the the the", ["the cat", "the the dog"], tokenize="none")
    assert (result.counts[0], result.totals[0]) == (2, 3)


def test_lowercase_makes_matching_case_insensitive_and_shows_in_the_signature():
    assert sentence_bleu("THE CAT", ["the cat"]).counts[0] == 0
    result = sentence_bleu("THE CAT", ["the cat"], lowercase=True)
    assert result.counts[0] == 2
    assert "|case:lc|" in result.signature


def test_signature_records_the_smoothing_value_for_floor_and_add_k():
    assert corpus_bleu(["a"], [["a"]], smooth_method="floor").signature.endswith(
        "smooth:floor[0.10]")
    assert corpus_bleu(["a"], [["a"]], smooth_method="add-k", smooth_value=2).signature.endswith(
        "smooth:add-k[2.00]")
    assert "|eff:yes|" in sentence_bleu("a", ["a"]).signature


@pytest.mark.parametrize("text, tokens", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    ("3.14 and 1,000", ["3.14", "and", "1,000"]),          # . and , between digits stay
    ("end. 5.", ["end", ".", "5", "."]),                     # ... but split elsewhere
    ("well-known 1-2", ["well-known", "1", "-", "2"]),      # dash split only after a digit
    ("don't", ["don't"]),                                    # apostrophes are kept
    ("a&amp;b &quot;q&quot; &lt;t&gt;", ["a", "&", "b", '"', "q", '"', "<", "t", ">"]),
    ("&amp;quot;", ["&", "quot", ";"]),                      # unescaped once, in order
    ("hyph-\nenated line\nbreak", ["hyphenated", "line", "break"]),
    ("a<skipped>b", ["ab"]),
    ("(x)[y]{z}", ["(", "x", ")", "[", "y", "]", "{", "z", "}"]),
])
def test_13a_tokenizer_by_hand(text, tokens):
    assert tokenize_13a(text) == tokens


def test_compute_bleu_from_statistics_matches_the_formula():
    # counts/totals of the cat-sat-on-the-mat example, but hypothesis 6 vs reference 8 tokens.
    result = compute_bleu([5, 3, 2, 1], [6, 5, 4, 3], sys_len=6, ref_len=8)
    assert result.bp == pytest.approx(math.exp(1 - 8 / 6))
    assert result.score == pytest.approx(100 * math.exp(1 - 8 / 6) * (1 / 12) ** 0.25)


def test_chrf_by_hand_with_effective_order():
    # hyp "abc" vs ref "abd": 1-grams a,b,c vs a,b,d -> 2/3 both ways; 2-grams ab,bc vs ab,bd
    # -> 1/2; 3-grams abc vs abd -> 0/1; orders 4-6 have no n-grams and are skipped.
    # P = R = (2/3 + 1/2 + 0) / 3 = 7/18, and F_beta of P = R is P: chrF = 100 * 7/18.
    assert sentence_chrf("abc", ["abd"]).score == pytest.approx(100 * 7 / 18)


def test_chrf_eps_smoothing_averages_per_order_f_over_all_six_orders():
    # Same pair: per-order F = 2/3, 1/2, then ~0 for the four orders without matches
    # (1e-16 each): chrF = 100 * (2/3 + 1/2) / 6 = 100 * 7/36.
    result = sentence_chrf("abc", ["abd"], eps_smoothing=True)
    assert result.score == pytest.approx(100 * 7 / 36)
    assert "|eff:no|" in result.signature


def test_chrf_ignores_whitespace_unless_asked_to_keep_it():
    assert sentence_chrf("a b", ["ab"]).score == pytest.approx(100.0)
    assert sentence_chrf("a b", ["ab"], whitespace=True).score < 100.0


def test_chrf_beta_weights_recall():
    # hyp "ab" vs ref "abcd": 1-grams P = 2/2, R = 2/4; 2-grams ab vs ab,bc,cd: P = 1, R = 1/3.
    # Orders 3-6: the hypothesis has none, skipped. P = 1, R = (1/2 + 1/3)/2 = 5/12.
    # chrF2 = (1 + 4) P R / (4 P + R) = 5 * 5/12 / (4 + 5/12) = 25/53.
    assert sentence_chrf("ab", ["abcd"]).score == pytest.approx(100 * 25 / 53)
    # beta = 1 is the plain harmonic mean: 2 * 5/12 / (1 + 5/12) = 10/17.
    assert sentence_chrf("ab", ["abcd"], beta=1).score == pytest.approx(100 * 10 / 17)


def test_chrf_plus_plus_adds_word_ngrams_and_its_name():
    result = sentence_chrf("the cat", ["the cat"], word_order=2)
    assert str(result) == "chrF2++ = 100.00"
    # Same characters, different words: chrF (no whitespace) is 100, chrF++ is not.
    assert sentence_chrf("thecat", ["the cat"]).score == pytest.approx(100.0)
    assert sentence_chrf("thecat", ["the cat"], word_order=2).score < 100.0


def test_chrf_keeps_the_best_reference_per_segment():
    assert sentence_chrf("abc", ["xyz", "abc"]).score == pytest.approx(100.0)


def test_inputs_are_validated_with_clear_messages():
    with pytest.raises(ValueError, match="reference stream 0 has 1 segments but there are 2"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="list of reference streams"):
        corpus_bleu(["a"], ["a"])  # a stream, not a list of streams
    with pytest.raises(TypeError, match="list of strings"):
        sentence_bleu("a", "a")
    with pytest.raises(ValueError, match="tokenize"):
        corpus_bleu(["a"], [["a"]], tokenize="intl")
    with pytest.raises(ValueError, match="smooth_method"):
        corpus_bleu(["a"], [["a"]], smooth_method="laplace")
    with pytest.raises(ValueError, match="segment 0 has no reference"):
        corpus_bleu(["a"], [[None]])
    with pytest.raises(ValueError, match="at least one hypothesis"):
        corpus_chrf([], [[]])
