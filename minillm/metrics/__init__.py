"""Evaluation metrics: ROUGE, BLEU, chrF(++) and classification/correlation/calibration.

The text metrics reproduce the reference tools bit for bit (rouge-score 0.1.2, sacreBLEU 2.x),
so numbers computed here can be put next to published ones. Only numpy and the standard
library are needed; ROUGE stemming lazily imports NLTK (`pip install "minillm[metrics]"`).
"""
from .bleu import BLEUScore, compute_bleu, corpus_bleu, sentence_bleu, tokenize_13a
from .chrf import CHRFScore, corpus_chrf, sentence_chrf
from .classification import (accuracy, expected_calibration_error, f1_score,
                             matthews_corrcoef, pearson_correlation, rank_with_ties,
                             spearman_correlation)
from .rouge import (AggregateRougeScore, RougeScore, corpus_rouge, default_tokenize,
                    rouge_score, unicode_tokenize)

__all__ = [
    "AggregateRougeScore", "BLEUScore", "CHRFScore", "RougeScore",
    "accuracy", "compute_bleu", "corpus_bleu", "corpus_chrf", "corpus_rouge",
    "default_tokenize", "expected_calibration_error", "f1_score", "matthews_corrcoef",
    "pearson_correlation", "rank_with_ties", "rouge_score", "sentence_bleu", "sentence_chrf",
    "spearman_correlation", "tokenize_13a", "unicode_tokenize",
]
