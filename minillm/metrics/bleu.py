"""BLEU with sacreBLEU's exact semantics (Papineni et al., 2002; Post, 2018).

BLEU compares a *corpus* of hypotheses with one or more reference translations. For each
order n = 1..4 it counts the hypothesis n-grams (`totals[n]`) and how many of them also occur
in a reference (`counts[n]`), clipping each n-gram to the largest count it has in any single
reference of that segment. Counts are summed over the whole corpus before dividing:

    p_n  = counts[n] / totals[n]                                  (modified precision)
    BP   = 1 if c >= r else exp(1 - r / c)                       (brevity penalty)
    BLEU = 100 * BP * exp( (1/N) * sum_{n=1..N} log p_n )

c is the total hypothesis length; r sums, per segment, the reference length closest to the
hypothesis length (the shorter one on ties). A single zero p_n makes BLEU 0, so sacreBLEU
offers smoothing (Chen & Cherry, 2014, "A Systematic Comparison of Smoothing Techniques for
Sentence-Level BLEU"):

    none  : no smoothing.
    floor : (method 1) a zero count becomes `smooth_value` (default 0.1).
    add-k : (method 2) add k (default 1) to counts and totals for n > 1.
    exp   : (method 3, NIST's mteval-v13a) the i-th order with a zero count gets precision
            1 / (2^i * totals[n]). sacreBLEU's default.

With `use_effective_order=True`, orders that have no hypothesis n-grams at all (a 2-word
sentence has no 3-grams) are left out of the average, so N shrinks instead of BLEU dropping to
0. `sentence_bleu` turns this on by default, as sacreBLEU's `sentence_bleu` does.

Before counting, every segment is (optionally) lowercased, right-stripped, and tokenized:
`13a` reproduces the mteval-v13a.pl tokenizer that WMT uses; `none` splits on whitespace only.
chrF and chrF++ live in `chrf.py`.
"""
import math
import re
from collections import Counter
from dataclasses import dataclass, field

MAX_NGRAM_ORDER = 4

# Smoothing value used when the caller passes None (sacreBLEU's BLEU.SMOOTH_DEFAULTS).
SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}

# sacreBLEU floors log(0) at this constant instead of -inf; any order with p_n = 0 then
# drives exp(mean log) to exactly 0.0 without a math domain error.
_LOG_ZERO = -9999999999


# ----------------------------------------------------------------------------- tokenizers

# mteval-v13a's language-dependent rules, applied in this order (see sacrebleu's
# tokenizers/tokenizer_re.py for the original regexes):
_TOKENIZE_13A_RULES = [
    # 1. split off every ASCII symbol except ' , - . (which need context, below)
    (re.compile(r"""([!"#$%&()*+/:;<=>?@\[\\\]^_`{|}~])"""), r" \1 "),
    # 2. split period and comma unless preceded by a digit ("3.5", "1,000" stay whole) ...
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),
    # 3. ... and unless followed by a digit
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),
    # 4. split a dash that follows a digit ("1-2" -> "1 - 2"), but keep "well-known"
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line):
    """Tokenize one segment like mteval-v13a.pl / sacreBLEU's `13a`; returns a token list."""
    # Language-independent part: drop <skipped> markers, join hyphenated line breaks, turn
    # newlines into spaces and unescape the four XML entities mteval knows (order matters:
    # "&amp;quot;" must become "&quot;", not '"').
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(entity, char)
    line = f" {line} "
    for pattern, replacement in _TOKENIZE_13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def tokenize_none(line):
    """No tokenization: split on whitespace only (sacreBLEU's `none`)."""
    return line.split()


TOKENIZERS = {"13a": tokenize_13a, "none": tokenize_none}


def _preprocess(segment, tokenize, lowercase):
    # sacreBLEU order: lowercase, strip trailing whitespace, then tokenize.
    if lowercase:
        segment = segment.lower()
    return tokenize(segment.rstrip())


# ----------------------------------------------------------------------------- inputs

def _segment_references(hypotheses, references):
    """Validate corpus inputs; return (hypotheses, per-segment reference lists, nrefs).

    `references` is a list of reference *streams*, each as long as `hypotheses` (sacreBLEU's
    layout). A None entry means "this stream has no reference for this segment"; nrefs is
    then "var" in the signature.
    """
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a list of strings, not a single string")
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("need at least one hypothesis")
    if not all(isinstance(h, str) for h in hypotheses):
        raise TypeError("every hypothesis must be a string")
    if isinstance(references, str) or any(isinstance(s, str) for s in references):
        raise TypeError("references must be a list of reference streams (lists of strings), "
                        "e.g. corpus_bleu(hyps, [refs]) for a single reference per segment")
    streams = [list(stream) for stream in references]
    if not streams:
        raise ValueError("need at least one reference stream")
    for index, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            raise ValueError(f"reference stream {index} has {len(stream)} segments but there "
                             f"are {len(hypotheses)} hypotheses")
    per_segment = []
    for index, refs in enumerate(zip(*streams)):
        refs = [r for r in refs if r is not None]
        if not refs:
            raise ValueError(f"segment {index} has no reference (all streams are None)")
        if not all(isinstance(r, str) for r in refs):
            raise TypeError(f"references of segment {index} must be strings or None")
        per_segment.append(refs)
    counts = {len(refs) for refs in per_segment}
    nrefs = counts.pop() if len(counts) == 1 else "var"
    return hypotheses, per_segment, nrefs


# ----------------------------------------------------------------------------- scoring

def _ngrams(tokens, max_order):
    """Counter of all n-grams (as tuples) with 1 <= n <= max_order."""
    return Counter(tuple(tokens[i:i + n])
                   for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def _closest_reference_length(hyp_len, ref_lens):
    # Closest to the hypothesis length; the shorter reference wins a tie.
    return min(ref_lens, key=lambda ref_len: (abs(hyp_len - ref_len), ref_len))


def _segment_statistics(hyp_tokens, refs_tokens, max_order):
    """(hyp_len, ref_len, counts[max_order], totals[max_order]) of one segment."""
    max_ref_counts = Counter()
    for ref_tokens in refs_tokens:
        max_ref_counts |= _ngrams(ref_tokens, max_order)  # |= keeps the max count per n-gram
    counts, totals = [0] * max_order, [0] * max_order
    for ngram, count in _ngrams(hyp_tokens, max_order).items():
        totals[len(ngram) - 1] += count
        counts[len(ngram) - 1] += min(count, max_ref_counts[ngram])
    ref_len = _closest_reference_length(len(hyp_tokens), [len(r) for r in refs_tokens])
    return len(hyp_tokens), ref_len, counts, totals


def _brevity_penalty(sys_len, ref_len):
    if sys_len >= ref_len:
        return 1.0
    return math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0


def _smoothed_precisions(counts, totals, smooth_method, smooth_value, use_effective_order):
    """Percent precisions per order and the number of orders to average over.

    Follows sacreBLEU's BLEU.compute_bleu: orders are visited from 1 upwards and the walk stops
    at the first order without hypothesis n-grams; higher orders keep precision 0.
    """
    max_order = len(counts)
    precisions = [0.0] * max_order
    averaged_orders = max_order
    halvings = 1.0  # exp smoothing: 2^i for the i-th order with no match
    for n in range(max_order):
        count, total = counts[n], totals[n]
        if smooth_method == "add-k" and n > 0:
            count, total = count + smooth_value, total + smooth_value
        if total == 0:
            break
        if use_effective_order:
            averaged_orders = n + 1
        if count > 0:
            precisions[n] = 100.0 * count / total
        elif smooth_method == "exp":
            halvings *= 2
            precisions[n] = 100.0 / (halvings * total)
        elif smooth_method == "floor":
            precisions[n] = 100.0 * smooth_value / total
    return precisions, averaged_orders


@dataclass
class BLEUScore:
    """A BLEU result; `str()` prints it like sacreBLEU.

    Attributes:
        score: BLEU in [0, 100].
        counts / totals: matched / hypothesis n-grams per order, summed over the corpus (raw:
            with add-k smoothing sacreBLEU's own object shows them with k already added).
        precisions: smoothed modified precisions per order, in percent.
        bp: brevity penalty. sys_len / ref_len: hypothesis / effective reference length.
        signature: sacreBLEU-style description of the settings, without a version field
            (these numbers come from minillm, so quoting a sacreBLEU version would mislead).
    """
    score: float
    counts: list
    totals: list
    precisions: list
    bp: float
    sys_len: int
    ref_len: int
    signature: str = field(default="", compare=False)

    @property
    def ratio(self):
        """Hypothesis length over reference length (0 when the reference is empty)."""
        return self.sys_len / self.ref_len if self.ref_len else 0

    def __str__(self):
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} "
                f"ratio = {self.ratio:.3f} hyp_len = {self.sys_len:d} ref_len = {self.ref_len:d})")


def _bleu_signature(nrefs, lowercase, use_effective_order, tokenize, smooth_method, smooth_value):
    smooth = smooth_method
    if SMOOTH_DEFAULTS[smooth_method] is not None:
        smooth += f"[{smooth_value:.2f}]"  # sacreBLEU shows the value of floor / add-k
    return (f"nrefs:{nrefs}|case:{'lc' if lowercase else 'mixed'}|"
            f"eff:{'yes' if use_effective_order else 'no'}|tok:{tokenize}|smooth:{smooth}")


def compute_bleu(counts, totals, sys_len, ref_len, smooth_method="none", smooth_value=None,
                 use_effective_order=False):
    """BLEU from sufficient statistics (sacreBLEU's BLEU.compute_bleu). See module docstring.

    Returns:
        BLEUScore (without signature).
    """
    if smooth_method not in SMOOTH_DEFAULTS:
        raise ValueError(f"smooth_method must be one of {sorted(SMOOTH_DEFAULTS)}, "
                         f"got {smooth_method!r}")
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    counts, totals = list(counts), list(totals)
    bp = _brevity_penalty(sys_len, ref_len)
    if not any(counts):
        # No n-gram matches at all: BLEU is 0 whatever the smoothing (sacreBLEU issue #141).
        return BLEUScore(0.0, counts, totals, [0.0] * len(counts), bp, sys_len, ref_len)
    precisions, orders = _smoothed_precisions(counts, totals, smooth_method, smooth_value,
                                              use_effective_order)
    log_sum = sum(math.log(p) if p != 0.0 else _LOG_ZERO for p in precisions[:orders])
    score = bp * math.exp(log_sum / orders)  # geometric mean of the percent precisions
    return BLEUScore(score, counts, totals, precisions, bp, sys_len, ref_len)


def corpus_bleu(hypotheses, references, smooth_method="exp", smooth_value=None,
                lowercase=False, tokenize="13a", use_effective_order=False,
                max_ngram_order=MAX_NGRAM_ORDER):
    """Corpus BLEU, like `sacrebleu.corpus_bleu`.

    Args:
        hypotheses: list of N system outputs.
        references: list of reference streams, each a list of N strings (or None where a
            stream has no reference for a segment): `corpus_bleu(hyps, [refs_a, refs_b])`.
        smooth_method: "exp" (default), "floor", "add-k" or "none".
        smooth_value: value for floor (default 0.1) / add-k (default 1).
        lowercase: compare case-insensitively.
        tokenize: "13a" (default) or "none".
        use_effective_order: average only over orders that have hypothesis n-grams.
        max_ngram_order: N in BLEU-N.

    Returns:
        BLEUScore with corpus totals and a `signature`.
    """
    if tokenize not in TOKENIZERS:
        raise ValueError(f"tokenize must be one of {sorted(TOKENIZERS)}, got {tokenize!r}")
    if smooth_method not in SMOOTH_DEFAULTS:
        raise ValueError(f"smooth_method must be one of {sorted(SMOOTH_DEFAULTS)}, "
                         f"got {smooth_method!r}")
    hypotheses, per_segment, nrefs = _segment_references(hypotheses, references)
    tokenizer = TOKENIZERS[tokenize]
    sys_len = ref_len = 0
    counts, totals = [0] * max_ngram_order, [0] * max_ngram_order
    for hypothesis, refs in zip(hypotheses, per_segment):
        stats = _segment_statistics(_preprocess(hypothesis, tokenizer, lowercase),
                                    [_preprocess(r, tokenizer, lowercase) for r in refs],
                                    max_ngram_order)
        sys_len, ref_len = sys_len + stats[0], ref_len + stats[1]
        counts = [a + b for a, b in zip(counts, stats[2])]
        totals = [a + b for a, b in zip(totals, stats[3])]
    result = compute_bleu(counts, totals, sys_len, ref_len, smooth_method, smooth_value,
                          use_effective_order)
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    result.signature = _bleu_signature(nrefs, lowercase, use_effective_order, tokenize,
                                       smooth_method, smooth_value)
    return result


def sentence_bleu(hypothesis, references, smooth_method="exp", smooth_value=None,
                  lowercase=False, tokenize="13a", use_effective_order=True):
    """BLEU of one sentence against a list of references, like `sacrebleu.sentence_bleu`.

    Identical to `corpus_bleu([hypothesis], [[r] for r in references])`, except that effective
    order is on by default (sentence BLEU is otherwise 0 for any sentence under 4 tokens).
    """
    if not isinstance(hypothesis, str):
        raise TypeError(f"hypothesis must be a string, got {type(hypothesis).__name__}")
    if isinstance(references, str):
        raise TypeError("references must be a list of strings, e.g. sentence_bleu(hyp, [ref])")
    return corpus_bleu([hypothesis], [[r] for r in references], smooth_method, smooth_value,
                       lowercase, tokenize, use_effective_order)
