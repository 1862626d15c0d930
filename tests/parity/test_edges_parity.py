"""The edges of tests/test_edges_*.py against the reference tools (issue 26).

The hand tests pin these cases on their own; here the same cases are checked against sacreBLEU's
chrF, transformers' schedules and Adafactor, and torch's ``clip_grad_norm_``, so a hand-worked
number that was itself wrong would show up. Each part skips cleanly when its tool is absent.
"""
import math

import numpy as np
import pytest

from minillm.metrics.chrf import corpus_chrf, sentence_chrf
from minillm.nn import Parameter
from minillm.optim import SGD, Adafactor, clip_grad_norm_, get_scheduler

CHRF_CASES = [
    # (hypothesis, references, options) from tests/test_edges_metrics.py
    ("ab", ["abc"], {}),
    ("abcd", ["ab"], {"char_order": 3}),
    ("ab", ["abc"], {"beta": 1}),
    ("a b", ["ab"], {"whitespace": True}),
    ("ab", ["abc"], {"char_order": 3, "eps_smoothing": True}),
    ("AB", ["ab"], {"lowercase": True}),
    ("Hello, world!", ["Hello world"], {"char_order": 0, "word_order": 1}),
    ("(hi)", ["( hi )"], {"char_order": 0, "word_order": 1}),
    (".hi there", [". hi there"], {"char_order": 0, "word_order": 1}),
    ("...", [".. ."], {"char_order": 0, "word_order": 1}),
    ("a, b", ["a b"], {"char_order": 0, "word_order": 2}),
    ("abcde", ["avwxy"], {"char_order": 1, "eps_smoothing": True}),
    ("ab", ["a b"], {"whitespace": True}),
    ("ab", ["abc", "a"], {"char_order": 2, "eps_smoothing": True}),
    ("ab", ["abc", "a"], {"char_order": 2}),
    ("The cat (sat) on the mat.", ["A cat sat, on the mat!", "the cat sat on a mat"], {"word_order": 2}),
]


@pytest.mark.parametrize("hyp, refs, options", CHRF_CASES)
def test_chrf_edges_match_sacrebleu(hyp, refs, options):
    sacrebleu = pytest.importorskip("sacrebleu")
    theirs = sacrebleu.metrics.CHRF(**options).sentence_score(hyp, refs).score
    assert sentence_chrf(hyp, refs, **options).score == pytest.approx(theirs, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("hyps, streams, options", [
    (["abcd", "xyz"], [["ab", "xyz"]], {"char_order": 3}),
    (["aa", "b"], [["a", "b"], ["aaaa", "b"]], {"char_order": 1, "beta": 1}),
    (["aa", "b"], [["aaaa", "b"], ["a", "b"]], {"char_order": 1, "beta": 1}),
])
def test_chrf_corpus_edges_match_sacrebleu(hyps, streams, options):
    sacrebleu = pytest.importorskip("sacrebleu")
    theirs = sacrebleu.metrics.CHRF(**options).corpus_score(hyps, streams).score
    assert corpus_chrf(hyps, streams, **options).score == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("name, warmup, total, extra", [
    ("inverse_sqrt", 4, None, {}),
    ("inverse_sqrt", 4, None, {"timescale": 10}),
    ("inverse_sqrt", 0, None, {}),
    ("linear", 2, 5, {}), ("cosine", 2, 5, {}), ("constant_with_warmup", 2, None, {}),
    ("linear", 3, 3, {}), ("cosine", 0, 4, {"num_cycles": 1.0}),
])
def test_schedule_edges_match_transformers(name, warmup, total, extra):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ours = get_scheduler(name, SGD([Parameter(np.zeros(1))], lr=1.0), num_warmup_steps=warmup,
                         num_training_steps=total, scheduler_specific_kwargs=dict(extra))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = transformers.get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total,
                                        scheduler_specific_kwargs=dict(extra))
    for step in list(range(12)) + [34, 30_000]:
        assert ours.lr_lambdas[0](step) == pytest.approx(theirs.lr_lambdas[0](step), rel=1e-12, abs=1e-15), step


@pytest.mark.parametrize("theta", [[0.0, 0.0], [5e-4, -5e-4], [1e-3, 1e-3], [2e-3, -2e-3]])
@pytest.mark.parametrize("relative_step", [True, False])
def test_adafactor_parameter_scale_floor_matches_transformers(theta, relative_step):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    lr = None if relative_step else 0.1
    ours = Parameter(np.array(theta))
    theirs = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    ours.grad, theirs.grad = np.array([1.0, -2.0]), torch.tensor([1.0, -2.0], dtype=torch.float64)
    Adafactor([ours], lr=lr, relative_step=relative_step).step()
    transformers.optimization.Adafactor([theirs], lr=lr, relative_step=relative_step).step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, 4.0, math.inf])
@pytest.mark.parametrize("max_norm", [3.0, 6.0, 6.0 + 1e-6, 7.0])
def test_clip_grad_norm_edges_match_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    grads = [np.array([-3.0, 4.0]), np.array([-5.0])]
    ours = [Parameter(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = g.copy(), torch.from_numpy(g.copy())
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert total == pytest.approx(float(expected), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)
