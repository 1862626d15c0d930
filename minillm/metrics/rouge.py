"""ROUGE: recall-oriented n-gram and subsequence overlap for summaries.

ROUGE (Lin, 2004, "ROUGE: A Package for Automatic Evaluation of Summaries") compares a
predicted summary with a reference. This module reproduces Google's `rouge-score` package
(v0.1.2) to the last bit, so scores here can be compared with published numbers.

ROUGE-N (n = 1..9) counts n-grams shared by prediction P and reference R, clipping each
n-gram's count to the smaller of its two counts:

    overlap   = sum_g min(count_P(g), count_R(g))
    precision = overlap / max(#n-grams in P, 1)
    recall    = overlap / max(#n-grams in R, 1)
    F1        = 2 * precision * recall / (precision + recall)    (0 when both are 0)

ROUGE-L uses the longest common subsequence (LCS) instead of n-grams: precision = LCS/|P|,
recall = LCS/|R|. It rewards in-order matches without requiring them to be contiguous.

ROUGE-Lsum (summary-level ROUGE-L, section 3.2 of the paper) splits both texts into
sentences (one per line). For each reference sentence r it takes the *union* of the LCS
token positions between r and every predicted sentence, and counts those tokens as hits,
never counting a token more often than it occurs in either whole text:

    precision = hits / (#tokens in P),  recall = hits / (#tokens in R)

Tokenization (rouge-score's, which copies the Perl original): lowercase, replace every run of
characters outside [a-z0-9] by a space, split, and keep tokens matching ^[a-z0-9]+$. With
`use_stemmer=True`, tokens longer than 3 characters go through NLTK's Porter stemmer.

A consequence that surprises people: **any non-Latin text scores 0**, because Chinese,
Cyrillic, Greek, Arabic, ... characters are all "non-alphanumeric" and vanish. Pass
`tokenizer="unicode"` for a Unicode-aware tokenizer (see `unicode_tokenize`); its scores are
then no longer comparable with rouge-score's.
"""
import re
import unicodedata
from collections import Counter, namedtuple

import numpy as np

RougeScore = namedtuple("RougeScore", ["precision", "recall", "fmeasure"])
RougeScore.__doc__ = "Precision, recall and F1 of one ROUGE type (rouge-score's field names)."

AggregateRougeScore = namedtuple("AggregateRougeScore", ["low", "mid", "high"])
AggregateRougeScore.__doc__ = (
    "Corpus ROUGE: `mid` is the mean over examples; `low`/`high` bound the bootstrap "
    "confidence interval (None when no interval was asked for).")

DEFAULT_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
_ROUGE_N = re.compile(r"rouge([1-9])")
_NLTK_HINT = 'pip install "minillm[metrics]"'


# ----------------------------------------------------------------------------- tokenizers

def _load_porter_stemmer():
    """Import NLTK only when stemming is asked for, so the core stays numpy-only."""
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as error:
        raise ImportError(
            f"ROUGE with use_stemmer=True needs NLTK's Porter stemmer: {_NLTK_HINT}") from error
    return PorterStemmer()  # default mode NLTK_EXTENSIONS, exactly what rouge-score builds


def _stem_tokens(tokens, stemmer):
    # rouge-score leaves tokens of 1-3 characters alone ("was" must not become "wa").
    return [stemmer.stem(token) if len(token) > 3 else token for token in tokens]


def default_tokenize(text, stemmer=None):
    """Tokenize like rouge-score: lowercase, keep [a-z0-9] runs, optionally Porter-stem.

    Args:
        text: the raw text.
        stemmer: an object with a `stem(word)` method, or None.

    Returns:
        list of str tokens, each matching ^[a-z0-9]+$.
    """
    text = _NON_ALPHANUMERIC.sub(" ", text.lower())
    tokens = text.split(" ")
    if stemmer is not None:
        tokens = _stem_tokens(tokens, stemmer)
    # The final filter drops the empty strings left by leading/trailing spaces.
    return [token for token in tokens if _VALID_TOKEN.match(token)]


def _is_unsegmented_script(char):
    """True for CJK ideographs and kana: scripts written without spaces between words."""
    code = ord(char)
    return (0x3040 <= code <= 0x30FF            # Hiragana, Katakana
            or 0x3400 <= code <= 0x4DBF         # CJK Extension A
            or 0x4E00 <= code <= 0x9FFF         # CJK Unified Ideographs
            or 0xF900 <= code <= 0xFAFF         # CJK Compatibility Ideographs
            or 0x20000 <= code <= 0x2FA1F)      # CJK Extensions B.. and supplement


def unicode_tokenize(text, stemmer=None):
    """Unicode-aware tokenizer (opt-in; NOT what rouge-score does).

    Rules, in order:
      1. NFKC-normalize and casefold (so full-width "Ａ" == "a" and "Straße" == "strasse");
      2. every CJK ideograph / kana character is a token on its own (Chinese and Japanese
         put no spaces between words; per-character tokens are the usual convention);
      3. otherwise a token is a maximal run of letters, combining marks and digits
         (Unicode categories L*, M*, N*), so "naïve", "Привет" and Devanagari words with
         vowel signs stay whole; everything else separates tokens;
      4. with a stemmer, tokens that are pure [a-z0-9] and longer than 3 characters are
         stemmed (the Porter stemmer only knows English).
    Scripts such as Thai that also omit spaces come out as one token per run; use a proper
    word segmenter upstream for them.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    tokens, current = [], []
    for char in text:
        if _is_unsegmented_script(char):
            tokens.extend(["".join(current), char])
            current = []
        elif unicodedata.category(char)[0] in "LMN":
            current.append(char)
        else:
            tokens.append("".join(current))
            current = []
    tokens.append("".join(current))
    tokens = [token for token in tokens if token]
    if stemmer is not None:
        tokens = [stemmer.stem(t) if len(t) > 3 and _VALID_TOKEN.match(t) else t for t in tokens]
    return tokens


def _make_tokenizer(tokenizer, use_stemmer):
    """Resolve the `tokenizer` argument into a function text -> list of tokens."""
    if callable(tokenizer):
        return tokenizer
    base = {"default": default_tokenize, "unicode": unicode_tokenize}.get(tokenizer)
    if base is None:
        raise ValueError(
            f"tokenizer must be 'default', 'unicode' or a callable, got {tokenizer!r}")
    stemmer = _load_porter_stemmer() if use_stemmer else None
    return lambda text: base(text, stemmer)


# ----------------------------------------------------------------------------- scores

def _f1(precision, recall):
    # Harmonic mean, defined as 0 when both are 0 (rouge-score's scoring.fmeasure).
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ngram_counts(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _rouge_n(reference_tokens, prediction_tokens, n):
    reference_ngrams = _ngram_counts(reference_tokens, n)
    prediction_ngrams = _ngram_counts(prediction_tokens, n)
    overlap = sum(min(count, prediction_ngrams[gram]) for gram, count in reference_ngrams.items())
    # max(., 1): an empty side gives 0, not a division error.
    precision = overlap / max(sum(prediction_ngrams.values()), 1)
    recall = overlap / max(sum(reference_ngrams.values()), 1)
    return RougeScore(precision, recall, _f1(precision, recall))


def _lcs_table(a, b):
    """table[i][j] = length of the LCS of a[:i] and b[:j] (classic O(|a||b|) DP)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        row, above = table[i], table[i - 1]
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                row[j] = above[j - 1] + 1
            else:
                row[j] = max(above[j], row[j - 1])
    return table


def _lcs_positions(reference, candidate):
    """Positions in `reference` of one LCS with `candidate`.

    Several LCSs can exist and the union-LCS depends on which one is read out, so the walk
    back through the table breaks ties like rouge-score (and ROUGE-1.5.5): on a mismatch
    move left only if that keeps a strictly longer LCS, otherwise move up.
    """
    table = _lcs_table(reference, candidate)
    i, j, positions = len(reference), len(candidate), []
    while i > 0 and j > 0:
        if reference[i - 1] == candidate[j - 1]:
            positions.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return positions[::-1]


def _rouge_l(reference_tokens, prediction_tokens):
    if not reference_tokens or not prediction_tokens:
        return RougeScore(0.0, 0.0, 0.0)
    lcs = _lcs_table(reference_tokens, prediction_tokens)[-1][-1]
    precision = lcs / len(prediction_tokens)
    recall = lcs / len(reference_tokens)
    return RougeScore(precision, recall, _f1(precision, recall))


def _rouge_lsum(reference_sentences, prediction_sentences):
    """Summary-level LCS over tokenized sentences (Lin 2004, section 3.2)."""
    reference_total = sum(map(len, reference_sentences))
    prediction_total = sum(map(len, prediction_sentences))
    if reference_total == 0 or prediction_total == 0:
        return RougeScore(0.0, 0.0, 0.0)
    # Budgets stop a token from being a hit more often than it occurs in either text
    # (ROUGE-1.5.5 does this; the paper's plain sum of union-LCS lengths would not).
    reference_budget = Counter(t for sentence in reference_sentences for t in sentence)
    prediction_budget = Counter(t for sentence in prediction_sentences for t in sentence)
    hits = 0
    for reference in reference_sentences:
        union = set()
        for prediction in prediction_sentences:
            union.update(_lcs_positions(reference, prediction))
        for position in sorted(union):
            token = reference[position]
            if reference_budget[token] > 0 and prediction_budget[token] > 0:
                hits += 1
                reference_budget[token] -= 1
                prediction_budget[token] -= 1
    precision = hits / prediction_total
    recall = hits / reference_total
    return RougeScore(precision, recall, _f1(precision, recall))


def _split_sentences(text, split_summaries):
    """Sentences for ROUGE-Lsum: one per line, or NLTK's sentence splitter if asked."""
    if split_summaries:
        try:
            import nltk
        except ImportError as error:
            raise ImportError(f"split_summaries=True needs NLTK: {_NLTK_HINT}") from error
        sentences = nltk.sent_tokenize(text)
    else:
        sentences = text.split("\n")  # only "\n", exactly like rouge-score
    return [sentence for sentence in sentences if sentence]


def _check_rouge_types(rouge_types):
    if isinstance(rouge_types, str):
        rouge_types = [rouge_types]
    for rouge_type in rouge_types:
        if not (_ROUGE_N.fullmatch(rouge_type) or rouge_type in ("rougeL", "rougeLsum")):
            raise ValueError(f"unknown ROUGE type {rouge_type!r}; expected 'rouge1'..'rouge9', "
                             "'rougeL' or 'rougeLsum'")
    return list(rouge_types)


def _score_one_reference(reference, prediction, rouge_types, tokenize, split_summaries):
    result = {}
    reference_tokens = tokenize(reference)
    prediction_tokens = tokenize(prediction)
    for rouge_type in rouge_types:
        if rouge_type == "rougeL":
            result[rouge_type] = _rouge_l(reference_tokens, prediction_tokens)
        elif rouge_type == "rougeLsum":
            result[rouge_type] = _rouge_lsum(
                [tokenize(s) for s in _split_sentences(reference, split_summaries)],
                [tokenize(s) for s in _split_sentences(prediction, split_summaries)])
        else:
            n = int(_ROUGE_N.fullmatch(rouge_type).group(1))
            result[rouge_type] = _rouge_n(reference_tokens, prediction_tokens, n)
    return result


def _as_reference_list(references, where=""):
    if isinstance(references, str):
        return [references]
    references = list(references)
    if not references or not all(isinstance(r, str) for r in references):
        raise ValueError(f"references{where} must be a string or a non-empty list of strings")
    return references


def rouge_score(prediction, references, rouge_types=DEFAULT_ROUGE_TYPES, use_stemmer=False,
                split_summaries=False, tokenizer="default"):
    """ROUGE of one prediction against one or several references.

    With several references each ROUGE type keeps the reference with the best F1 (first one
    on ties), like rouge-score's `RougeScorer.score_multi`.

    Args:
        prediction: the generated text.
        references: a reference string, or a list of them.
        rouge_types: any of "rouge1".."rouge9", "rougeL", "rougeLsum".
        use_stemmer: Porter-stem tokens longer than 3 characters (needs NLTK).
        split_summaries: for rougeLsum, split sentences with `nltk.sent_tokenize` instead of
            on newlines.
        tokenizer: "default" (rouge-score's, ASCII only), "unicode" (see `unicode_tokenize`)
            or a callable text -> list of tokens.

    Returns:
        dict rouge_type -> RougeScore(precision, recall, fmeasure), all in [0, 1].
    """
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    rouge_types = _check_rouge_types(rouge_types)
    references = _as_reference_list(references)
    tokenize = _make_tokenizer(tokenizer, use_stemmer)
    per_reference = [_score_one_reference(r, prediction, rouge_types, tokenize, split_summaries)
                     for r in references]
    return {rouge_type: max(per_reference, key=lambda s: s[rouge_type].fmeasure)[rouge_type]
            for rouge_type in rouge_types}  # max() returns the first maximum, as argmax does


def _bootstrap_interval(matrix, n_bootstrap, confidence_interval, seed):
    """Percentile bootstrap of the mean of each column of `matrix` (examples, 3)."""
    rng = np.random.default_rng(seed)
    n_examples = matrix.shape[0]
    sample_means = np.empty((n_bootstrap, matrix.shape[1]))
    for b in range(n_bootstrap):
        # Resample examples with replacement; one row of means per bootstrap replicate.
        sample_means[b] = matrix[rng.integers(0, n_examples, size=n_examples)].mean(axis=0)
    tail = 100 * (1 - confidence_interval) / 2
    low, high = np.percentile(sample_means, [tail, 100 - tail], axis=0)
    return RougeScore(*map(float, low)), RougeScore(*map(float, high))


def corpus_rouge(predictions, references, rouge_types=DEFAULT_ROUGE_TYPES, use_stemmer=False,
                 split_summaries=False, tokenizer="default", confidence_interval=None,
                 n_bootstrap=1000, seed=0):
    """Mean ROUGE over a corpus, with an optional seeded bootstrap confidence interval.

    Args:
        predictions: list of generated texts.
        references: one entry per prediction: a string or a list of strings.
        confidence_interval: e.g. 0.95 for a 95% percentile-bootstrap interval on the mean;
            None (default) skips the bootstrap.
        n_bootstrap: number of bootstrap resamples of the examples.
        seed: seed of the numpy Generator, so the interval is reproducible.
        (other args as in `rouge_score`)

    Returns:
        dict rouge_type -> AggregateRougeScore(low, mid, high). `mid` is the exact mean of the
        per-example scores. rouge-score's BootstrapAggregator instead reports the median of
        the bootstrap means as `mid` and uses the global numpy RNG, so its intervals differ
        by resampling noise; its `mid` is close to, not equal to, the mean.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("corpus_rouge needs at least one prediction")
    if confidence_interval is not None and not 0 < confidence_interval < 1:
        raise ValueError(f"confidence_interval must be in (0, 1), got {confidence_interval}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be positive, got {n_bootstrap}")
    rouge_types = _check_rouge_types(rouge_types)
    scores = [rouge_score(p, r, rouge_types, use_stemmer, split_summaries, tokenizer)
              for p, r in zip(predictions, references)]
    result = {}
    for rouge_type in rouge_types:
        matrix = np.array([s[rouge_type] for s in scores], dtype=np.float64)  # (examples, 3)
        mid = RougeScore(*map(float, matrix.mean(axis=0)))
        low = high = None
        if confidence_interval is not None:
            low, high = _bootstrap_interval(matrix, n_bootstrap, confidence_interval, seed)
        result[rouge_type] = AggregateRougeScore(low, mid, high)
    return result
