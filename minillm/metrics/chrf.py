"""chrF and chrF++ with sacreBLEU's exact semantics (Popović 2015, 2017).

chrF scores character n-grams instead of words, so it gives partial credit for a right stem
with a wrong ending and needs no tokenizer. For every order n = 1..char_order (default 6) it
counts hypothesis n-grams, reference n-grams and their clipped overlap; chrF++ adds word
n-grams of order 1..word_order (word_order = 2). Statistics are summed over the corpus, then

    P = mean over orders of  matches_n / hyp_n
    R = mean over orders of  matches_n / ref_n
    chrF_beta = 100 * (1 + beta^2) * P * R / (beta^2 * P + R)        (beta = 2: recall x2)

sacreBLEU details reproduced here:
  * whitespace: by default every whitespace character is removed before character n-grams
    are extracted ("a b" and "ab" look the same), as in the original chrF.
  * effective order (default): the means above run only over orders where both the
    hypothesis and the reference have n-grams, so a 3-character sentence is not punished for
    having no 6-grams.
  * `eps_smoothing=True` instead averages per-order F scores over all orders, giving empty
    ones 1e-16 (the chrF++.py / Moses / NLTK convention).
  * word n-grams: words are split on whitespace and one punctuation character is split off
    the end (or else the start) of every word longer than one character.
  * several references: each segment keeps the statistics of the reference with the best
    segment-level chrF (first one on ties).
  * a reference without n-grams of some order makes the hypothesis count of that order 0.
"""
from collections import Counter
from dataclasses import dataclass, field

from .bleu import _segment_references

CHAR_ORDER = 6
WORD_ORDER = 0
BETA = 2

_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # string.punctuation
_EPS = 1e-16


@dataclass
class CHRFScore:
    """A chrF result; `str()` prints it like sacreBLEU (`chrF2 = 59.73`, `chrF2++ = ...`)."""
    score: float
    char_order: int
    word_order: int
    beta: int
    signature: str = field(default="", compare=False)

    @property
    def name(self):
        """"chrF2" for chrF, "chrF2++" for chrF++ (one "+" per word order)."""
        return f"chrF{self.beta}" + "+" * self.word_order

    def __str__(self):
        return f"{self.name} = {self.score:.2f}"


def _char_ngrams(text, order, whitespace):
    if not whitespace:
        text = "".join(text.split())
    return Counter(text[i:i + order] for i in range(len(text) - order + 1))


def _split_words(text):
    """Whitespace words with one leading or trailing punctuation mark split off."""
    words = []
    for word in text.split():
        if len(word) == 1:
            words.append(word)
        elif word[-1] in _PUNCTUATION:  # "(hi)" -> "(hi", ")": only one mark is split
            words.extend([word[:-1], word[-1]])
        elif word[0] in _PUNCTUATION:
            words.extend([word[0], word[1:]])
        else:
            words.append(word)
    return words


def _all_ngrams(text, char_order, word_order, whitespace):
    """List of Counters: character orders 1..char_order, then word orders 1..word_order."""
    ngrams = [_char_ngrams(text, n, whitespace) for n in range(1, char_order + 1)]
    if word_order > 0:
        words = _split_words(text)
        ngrams += [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
                   for n in range(1, word_order + 1)]
    return ngrams


def _match_statistics(hyp_ngrams, ref_ngrams):
    """Flat list [hyp, ref, match] * orders."""
    stats = []
    for hyp, ref in zip(hyp_ngrams, ref_ngrams):
        matches = sum(min(count, ref[gram]) for gram, count in hyp.items())
        # sacreBLEU counts no hypothesis n-grams for an order the reference lacks entirely.
        stats += [sum(hyp.values()) if ref else 0, sum(ref.values()), matches]
    return stats


def _f_score(stats, beta, eps_smoothing):
    """chrF in [0, 100] from flat [hyp, ref, match] statistics (sacreBLEU's _compute_f_score)."""
    factor = beta ** 2
    eps_total, precision_sum, recall_sum, effective_order = 0.0, 0.0, 0.0, 0
    orders = len(stats) // 3
    for i in range(orders):
        n_hyp, n_ref, n_match = stats[3 * i:3 * i + 3]
        precision = n_match / n_hyp if n_hyp > 0 else _EPS
        recall = n_match / n_ref if n_ref > 0 else _EPS
        denominator = factor * precision + recall
        eps_total += (1 + factor) * precision * recall / denominator if denominator > 0 else _EPS
        if n_hyp > 0 and n_ref > 0:
            precision_sum += precision
            recall_sum += recall
            effective_order += 1
    if eps_smoothing:
        return 100 * eps_total / orders
    if effective_order == 0:
        return 0.0
    precision, recall = precision_sum / effective_order, recall_sum / effective_order
    if precision + recall == 0:
        return 0.0
    score = (1 + factor) * precision * recall
    return 100 * (score / (factor * precision + recall))


def _chrf_signature(nrefs, lowercase, eps_smoothing, char_order, word_order, whitespace):
    return (f"nrefs:{nrefs}|case:{'lc' if lowercase else 'mixed'}|"
            f"eff:{'no' if eps_smoothing else 'yes'}|nc:{char_order}|nw:{word_order}|"
            f"space:{'yes' if whitespace else 'no'}")


def corpus_chrf(hypotheses, references, char_order=CHAR_ORDER, word_order=WORD_ORDER,
                beta=BETA, lowercase=False, whitespace=False, eps_smoothing=False):
    """Corpus chrF (word_order=0) or chrF++ (word_order=2), like sacreBLEU's CHRF.corpus_score.

    Args:
        hypotheses: list of N system outputs.
        references: list of reference streams, each a list of N strings (None = missing).
        char_order / word_order: maximum character / word n-gram order.
        beta: recall is weighted beta times as much as precision.
        lowercase: compare case-insensitively.
        whitespace: keep whitespace inside character n-grams (sacreBLEU's `whitespace`;
            its compat function calls the opposite `remove_whitespace`).
        eps_smoothing: average per-order F scores with 1e-16 for empty orders instead of
            using the effective order.

    Returns:
        CHRFScore with a `signature` (no version field, as for BLEU).
    """
    if char_order < 0 or word_order < 0 or char_order + word_order == 0:
        raise ValueError(f"need char_order + word_order > 0, got {char_order} and {word_order}")
    hypotheses, per_segment, nrefs = _segment_references(hypotheses, references)
    totals = [0] * (3 * (char_order + word_order))
    for hypothesis, refs in zip(hypotheses, per_segment):
        if lowercase:
            hypothesis, refs = hypothesis.lower(), [r.lower() for r in refs]
        hyp_ngrams = _all_ngrams(hypothesis, char_order, word_order, whitespace)
        best_stats, best_f = None, -1.0
        for ref in refs:
            stats = _match_statistics(hyp_ngrams, _all_ngrams(ref, char_order, word_order,
                                                              whitespace))
            f = _f_score(stats, beta, eps_smoothing)
            if f > best_f:  # strict: the first best reference wins ties
                best_stats, best_f = stats, f
        totals = [a + b for a, b in zip(totals, best_stats)]
    return CHRFScore(_f_score(totals, beta, eps_smoothing), char_order, word_order, beta,
                     _chrf_signature(nrefs, lowercase, eps_smoothing, char_order, word_order,
                                     whitespace))


def sentence_chrf(hypothesis, references, char_order=CHAR_ORDER, word_order=WORD_ORDER,
                  beta=BETA, lowercase=False, whitespace=False, eps_smoothing=False):
    """chrF of one sentence against a list of references (see `corpus_chrf` for the args)."""
    if not isinstance(hypothesis, str):
        raise TypeError(f"hypothesis must be a string, got {type(hypothesis).__name__}")
    if isinstance(references, str):
        raise TypeError("references must be a list of strings, e.g. sentence_chrf(hyp, [ref])")
    return corpus_chrf([hypothesis], [[r] for r in references], char_order, word_order, beta,
                       lowercase, whitespace, eps_smoothing)
