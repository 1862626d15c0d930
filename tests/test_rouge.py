"""ROUGE specification tests that need no oracle: expected values are worked out by hand in
the comments, or taken from rouge-score's README / the ROUGE paper."""
import sys

import pytest

from minillm.metrics import corpus_rouge, default_tokenize, rouge_score, unicode_tokenize


def approx(value):
    return pytest.approx(value, abs=1e-12)


def test_rouge_score_readme_example_rouge1_and_rougeL():
    # rouge-score README: target "The quick brown fox jumps over the lazy dog",
    # prediction "The quick brown dog jumps on the log." -> rouge1 P=0.75 R=0.6667 F=0.7059,
    # rougeL P=0.625 R=0.5556 F=0.5882. By hand: target has 9 tokens, prediction 8.
    # Unigram overlap: the(min(2,2)=2) quick brown dog jumps -> 6, so P = 6/8, R = 6/9.
    # LCS: "the quick brown jumps the" -> 5, so P = 5/8, R = 5/9.
    scores = rouge_score("The quick brown dog jumps on the log.",
                         "The quick brown fox jumps over the lazy dog", ["rouge1", "rougeL"])
    assert scores["rouge1"].precision == approx(6 / 8)
    assert scores["rouge1"].recall == approx(6 / 9)
    assert scores["rouge1"].fmeasure == approx(2 * (6 / 8) * (6 / 9) / (6 / 8 + 6 / 9))
    assert scores["rougeL"].precision == approx(5 / 8)
    assert scores["rougeL"].recall == approx(5 / 9)
    assert scores["rougeL"].fmeasure == approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))


def test_rouge2_counts_clipped_bigrams():
    # reference "a b a b" has bigrams ab x2, ba x1 (3); prediction "a b a b a b" has ab x3,
    # ba x2 (5). Clipped overlap: min(2,3) + min(1,2) = 3 -> P = 3/5, R = 3/3.
    score = rouge_score("a b a b a b", "a b a b", ["rouge2"])["rouge2"]
    assert (score.precision, score.recall) == (approx(3 / 5), approx(1.0))


def test_rouge_n_accepts_orders_up_to_nine_and_rejects_others():
    # "a b c d e f g h i" against itself: the single 9-gram matches.
    nine = "a b c d e f g h i"
    assert rouge_score(nine, nine, ["rouge9"])["rouge9"].fmeasure == 1
    for bad in ("rouge0", "rouge10", "rougeX", "ROUGE1"):
        with pytest.raises(ValueError, match="unknown ROUGE type"):
            rouge_score("a", "a", [bad])


def test_rouge_lsum_uses_union_lcs_from_the_rouge_paper():
    # Lin (2004) section 3.2: r = w1 w2 w3 w4 w5; candidate sentences c1 = w1 w2 w6 w7 w8 and
    # c2 = w1 w3 w8 w9 w5. LCS(r, c1) = w1 w2, LCS(r, c2) = w1 w3 w5, union = w1 w2 w3 w5:
    # 4 hits. recall = 4/5, precision = 4/10 (the candidate has 10 tokens).
    score = rouge_score("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5", ["rougeLsum"])
    assert score["rougeLsum"].recall == approx(4 / 5)
    assert score["rougeLsum"].precision == approx(4 / 10)


def test_rouge_lsum_credits_sentences_in_any_order_unlike_rouge_l():
    # Prediction sentences "w3 w4" and "w1 w2", reference "w1 w2 w3 w4".
    # ROUGE-L on the concatenation "w3 w4 w1 w2": LCS = 2 ("w1 w2" or "w3 w4"), R = P = 2/4.
    # ROUGE-Lsum: LCS(r, "w3 w4") = w3 w4, LCS(r, "w1 w2") = w1 w2, union = 4 tokens: R = P = 1.
    scores = rouge_score("w3 w4\nw1 w2", "w1 w2 w3 w4", ["rougeL", "rougeLsum"])
    assert (scores["rougeL"].precision, scores["rougeL"].recall) == (approx(0.5), approx(0.5))
    assert (scores["rougeLsum"].precision, scores["rougeLsum"].recall) == (approx(1), approx(1))


def test_rouge_lsum_never_counts_a_token_more_often_than_it_occurs():
    # Reference sentences "a" and "a"; prediction "a" once. Each reference sentence's LCS is
    # "a", but the prediction has only one "a" to give: hits = 1, so P = 1/1 and R = 1/2
    # (a plain sum of union-LCS lengths would give 2 hits and a precision of 2).
    score = rouge_score("a", "a\na", ["rougeLsum"])["rougeLsum"]
    assert (score.precision, score.recall) == (approx(1.0), approx(0.5))


def test_rouge_lsum_splits_only_on_newlines_and_skips_empty_lines():
    # "a b. c d" is one sentence (no newline): ROUGE-Lsum equals ROUGE-L on it.
    one_line = rouge_score("c d a b", "a b. c d", ["rougeL", "rougeLsum"])
    assert one_line["rougeLsum"] == one_line["rougeL"]
    # Blank lines are dropped, so they change nothing.
    assert (rouge_score("a b\n\n\nc", "a\nb c", ["rougeLsum"])
            == rouge_score("a b\nc", "a\nb c", ["rougeLsum"]))


def test_tokenizer_lowercases_and_turns_non_alphanumerics_into_separators():
    assert default_tokenize("Hello, World! It's 2024-01-01.") == [
        "hello", "world", "it", "s", "2024", "01", "01"]
    assert default_tokenize("") == []
    assert default_tokenize("  --  ") == []


def test_non_latin_text_scores_zero_with_the_default_tokenizer_but_not_with_unicode():
    # rouge-score's behaviour: every CJK/Cyrillic character is a "non-alphanumeric".
    assert default_tokenize("東京 Привет") == []
    assert rouge_score("東京 Привет", "東京 Привет", ["rouge1"])["rouge1"].fmeasure == 0
    # Unicode tokenizer: 東, 京 and привет are three tokens, all matched.
    assert rouge_score("東京 Привет", "東京 Привет", ["rouge1"],
                       tokenizer="unicode")["rouge1"].fmeasure == 1


def test_unicode_tokenizer_normalizes_casefolds_and_splits_cjk_per_character():
    # NFKC: full-width ＡＢＣ -> abc; casefold: ß -> ss; ï and Devanagari vowel signs (marks)
    # stay inside their word; each kanji/kana is its own token; punctuation separates.
    assert unicode_tokenize("Straße ＡＢＣ naïve, हिन्दी 東京タワー!") == [
        "strasse", "abc", "naïve", "हिन्दी", "東", "京", "タ", "ワ", "ー"]


def test_a_callable_tokenizer_is_used_as_is():
    score = rouge_score("A-B", "a-b", ["rouge1"], tokenizer=lambda text: text.split("-"))
    assert score["rouge1"].fmeasure == 0  # case-sensitive custom tokens "A","B" vs "a","b"


def test_stemming_applies_only_to_tokens_longer_than_three_characters():
    pytest.importorskip("nltk")
    # Porter: running -> run, cats -> cat. Without stemming nothing matches.
    assert rouge_score("running cats", "run cat", ["rouge1"])["rouge1"].fmeasure == 0
    assert rouge_score("running cats", "run cat", ["rouge1"],
                       use_stemmer=True)["rouge1"].fmeasure == 1
    # "its" has 3 characters, so it is not stemmed to "it" and does not match "it".
    assert rouge_score("its", "it", ["rouge1"], use_stemmer=True)["rouge1"].fmeasure == 0


def test_missing_nltk_gives_an_install_hint(monkeypatch):
    for module in ("nltk", "nltk.stem", "nltk.stem.porter"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import nltk...` fail
    with pytest.raises(ImportError, match=r'pip install "minillm\[metrics\]"'):
        rouge_score("a", "a", use_stemmer=True)
    # Without the stemmer NLTK is never imported.
    assert rouge_score("a", "a", ["rouge1"])["rouge1"].fmeasure == 1


def test_empty_texts_score_zero_without_errors():
    for prediction, reference in (("", "a b"), ("a b", ""), ("", ""), ("!!", "a")):
        for score in rouge_score(prediction, reference).values():
            assert tuple(score) == (0, 0, 0)


def test_several_references_keep_the_one_with_best_f_per_type():
    # Prediction "a b c" (bigrams ab, bc):
    #   vs "c b a":   rouge1 P = R = 1, F = 1;          rouge2 overlap 0, F = 0.
    #   vs "a b":     rouge1 P = 2/3, R = 1, F = 0.8;   rouge2 overlap 1 (ab): P=1/2 R=1 F=2/3.
    #   vs "a b c d": rouge1 P = 1, R = 3/4, F = 6/7;   rouge2 overlap 2: P=1 R=2/3 F=0.8.
    # So rouge1 keeps "c b a" and rouge2 keeps "a b c d": different references per type.
    scores = rouge_score("a b c", ["c b a", "a b", "a b c d"], ["rouge1", "rouge2"])
    assert tuple(scores["rouge1"]) == (approx(1), approx(1), approx(1))
    assert (scores["rouge2"].precision, scores["rouge2"].recall) == (approx(1), approx(2 / 3))


def test_ties_between_references_keep_the_first():
    # Both references give rouge1 F = 2/3 but with swapped P and R.
    # vs "a": P = 1/2, R = 1. vs "a b c d": P = 2/2, R = 2/4. F = 2/3 for both.
    first = rouge_score("a b", ["a", "a b c d"], ["rouge1"])["rouge1"]
    assert (first.precision, first.recall) == (approx(0.5), approx(1.0))
    second = rouge_score("a b", ["a b c d", "a"], ["rouge1"])["rouge1"]
    assert (second.precision, second.recall) == (approx(1.0), approx(0.5))


def test_corpus_rouge_is_the_mean_of_per_example_scores():
    # Example 1: "a b" vs "a b": P=R=F=1. Example 2: "a" vs "b": all 0. Mean = 0.5 each.
    result = corpus_rouge(["a b", "a"], ["a b", "b"], ["rouge1"])["rouge1"]
    assert tuple(result.mid) == (0.5, 0.5, 0.5)
    assert result.low is None and result.high is None


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    predictions = ["a b c", "a", "b c d", "x y", "a b"] * 4
    references = ["a b c", "a b", "b c", "y", "c"] * 4
    first = corpus_rouge(predictions, references, ["rouge1"], confidence_interval=0.9,
                         n_bootstrap=200, seed=7)["rouge1"]
    again = corpus_rouge(predictions, references, ["rouge1"], confidence_interval=0.9,
                         n_bootstrap=200, seed=7)["rouge1"]
    other_seed = corpus_rouge(predictions, references, ["rouge1"], confidence_interval=0.9,
                              n_bootstrap=200, seed=8)["rouge1"]
    assert first == again
    assert first != other_seed
    for low, mid, high in zip(first.low, first.mid, first.high):
        assert low < mid < high


def test_bootstrap_interval_collapses_when_every_example_scores_the_same():
    result = corpus_rouge(["a b"] * 5, ["a b"] * 5, ["rouge1"], confidence_interval=0.95)
    assert result["rouge1"].low == result["rouge1"].mid == result["rouge1"].high


def test_corpus_rouge_names_both_counts_on_mismatch():
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        corpus_rouge(["a", "b", "c"], ["a", "b"])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="prediction must be a string"):
        rouge_score(["a"], "a")
    with pytest.raises(ValueError, match="references"):
        rouge_score("a", [])
    with pytest.raises(ValueError, match="tokenizer"):
        rouge_score("a", "a", tokenizer="whitespace")
    with pytest.raises(ValueError, match="confidence_interval"):
        corpus_rouge(["a"], ["a"], confidence_interval=95)
