"""minillm/fast/threads.py and the CPU kernels on it: work split over threads gives the results of
one call (outputs and gradients of every op that splits its work), and the
thread switch (``minillm.set_num_threads``, ``threads_to_blas``) sets and restores BLAS.

The ``split_everything`` fixture lowers the size thresholds to a few elements and asks for three
threads, so that the tiny float64 inputs of a gradient check are cut into many blocks, shared out
over the threads, exactly as a training step's (tokens, d_ff) activations are.
"""
import contextlib
import threading

import numpy as np
import pytest

import minillm
from minillm import Tensor, ops
from minillm.fast import threads as parallel
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.optim import AdamW
from tests.gradcheck import assert_same_computation, forward_and_grads, normal, positive


@pytest.fixture
def split_everything(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 4)
    monkeypatch.setattr(parallel, "BLOCK_ELEMENTS", 3)
    monkeypatch.setattr(parallel, "MIN_MATMUL_FLOPS", 1)
    parallel.set_threads(3)
    yield
    parallel.set_threads(None)


def _unsplit(fn, *inputs):
    """fn's outputs and gradients with one thread and no blocks (the thresholds out of reach)."""
    threads = parallel.num_threads()
    parallel.set_threads(None)
    try:
        saved = parallel.MIN_ELEMENTS, parallel.MIN_MATMUL_FLOPS
        parallel.MIN_ELEMENTS = parallel.MIN_MATMUL_FLOPS = 1 << 60
        try:
            return forward_and_grads(fn, *inputs)
        finally:
            parallel.MIN_ELEMENTS, parallel.MIN_MATMUL_FLOPS = saved
    finally:
        parallel.set_threads(threads)


def _seeded(fn):
    def run(*args):
        minillm.manual_seed(5)  # the same dropout mask on every call
        return fn(*args)
    return run


SPLIT_OPS = {
    # name: (function, input shapes); each runs as blocks over threads under split_everything
    "gelu_tanh": (lambda a: ops.gelu(a, approximate="tanh"), [(5, 7)]),
    "gated_gelu": (ops.gated_gelu, [(2, 5, 7), (2, 5, 7)]),
    "rms_norm": (ops.rms_norm, [(2, 5, 7), (7,)]),
    "dropout": (_seeded(lambda a: ops.dropout(a, 0.3)), [(6, 7)]),
    "matmul_batch_broadcast": (ops.matmul, [(4, 1, 5, 6), (3, 6, 7)]),
    "matmul_rows": (ops.matmul, [(9, 6), (6, 4)]),
    "matmul_columns": (ops.matmul, [(2, 6), (6, 9)]),
    "linear": (ops.linear, [(3, 5, 6), (4, 6), (4,)]),
    "attention_bias_dropout": (
        _seeded(lambda q, k, v, b: ops.scaled_dot_product_attention(q, k, v, bias=b, causal=True,
                                                                    dropout_p=0.2)),
        [(3, 2, 5, 4), (3, 2, 5, 4), (3, 2, 5, 4), (1, 2, 5, 5)]),
}


@pytest.mark.parametrize("name", SPLIT_OPS)
def test_split_op_matches_the_unsplit_op(name, rng, split_everything):
    # (Their gradients are those of the reference formulas: tests/test_fast_vs_reference.py.)
    fn, input_shapes = SPLIT_OPS[name]
    inputs = [normal(rng, s) for s in input_shapes]
    out_split, grads_split = forward_and_grads(fn, *inputs)
    out_one, grads_one = _unsplit(fn, *inputs)
    # Elementwise and row kernels compute each element exactly as one call does; products are
    # separate BLAS calls, which may round differently in the last place.
    exact = not name.startswith(("matmul", "linear", "attention"))
    for a, b in zip(out_split + grads_split, out_one + grads_one):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_split_gated_gelu_matches_its_composition(rng, split_everything):
    gate, up = normal(rng, (4, 3, 8), scale=2.0), normal(rng, (4, 3, 8))
    assert_same_computation(ops.gated_gelu, lambda g, u: ops.gelu(g, approximate="tanh") * u, gate, up)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((7, 5), (5, 6)), ((2, 9), (9, 30)), ((4, 3, 5, 6), (6, 2)), ((1, 5, 6), (4, 6, 3)),
    ((4, 2, 5, 6), (2, 6, 3)), ((5, 4, 6), (5, 6, 2)),
])
def test_parallel_matmul_equals_numpy_matmul(a_shape, b_shape, rng, split_everything):
    a, b = normal(rng, a_shape), normal(rng, b_shape)
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-14)
    # transposed views go to BLAS as they are, without copies
    np.testing.assert_allclose(parallel.matmul(b.swapaxes(-1, -2).swapaxes(-1, -2), b.swapaxes(-1, -2)),
                               b @ b.swapaxes(-1, -2), rtol=1e-12, atol=1e-14)


def test_parallel_matmul_reports_numpys_shape_error(split_everything):
    with pytest.raises(ValueError):
        parallel.matmul(np.ones((3, 4)), np.ones((5, 6)))


def test_for_each_row_block_covers_every_row_once_on_several_threads(split_everything):
    x = np.zeros((40, 3))
    seen = set()

    def fill(block):
        seen.add(threading.get_ident())
        block += 1

    parallel.for_each_row_block(fill, x)
    np.testing.assert_array_equal(x, 1)
    assert len(seen) > 1  # the work really was shared


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8])
def test_cuts_are_contiguous_cover_everything_and_are_balanced(n, parts):
    cuts = parallel._cuts(n, parts)
    assert len(cuts) == min(parts, n)
    assert [i for lo, hi in cuts for i in range(lo, hi)] == list(range(n))  # each index once, in order
    sizes = [hi - lo for lo, hi in cuts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_for_each_row_block_reraises_a_workers_error(split_everything):
    def fail(block):
        if block[0, 0] > 30:  # only a later block, which a worker thread gets
            raise RuntimeError("block failed")

    with pytest.raises(RuntimeError, match="block failed"):
        parallel.for_each_row_block(fail, np.arange(120.0).reshape(40, 3))


def test_for_each_row_block_runs_once_on_a_non_contiguous_array(split_everything):
    x = np.zeros((6, 8))[:, ::2]
    calls = []
    parallel.for_each_row_block(lambda block: (calls.append(block.shape), block.__iadd__(2)), x)
    assert calls == [(6, 4)]
    np.testing.assert_array_equal(x, 2)


def test_map_in_threads_calls_every_item_once(split_everything):
    done = []
    lock = threading.Lock()

    def work(item):
        with lock:
            done.append(item)

    parallel.map_in_threads(work, range(10), sizes=[100] * 10)
    assert sorted(done) == list(range(10))


def test_set_num_threads_gives_minillm_the_threads_and_blas_one(split_everything):
    from threadpoolctl import threadpool_info

    minillm.set_num_threads(None)  # an earlier test (a CLI run with --threads) may have left a limit
    parallel.set_threads(3)
    before = minillm.get_num_threads()
    minillm.set_num_threads(2)
    try:
        assert parallel.num_threads() == 2
        assert minillm.get_num_threads() == 2
        assert all(info["num_threads"] == 1 for info in threadpool_info() if info["user_api"] == "blas")
    finally:
        minillm.set_num_threads(None)
    assert parallel.num_threads() == 1
    assert minillm.get_num_threads() == before


def test_optimizer_step_on_threads_equals_the_step_on_one(rng, split_everything):
    def run():
        params = [Tensor(positive(np.random.default_rng(i), shape), requires_grad=True)
                  for i, shape in enumerate([(4, 3), (7,), (2, 2, 5)])]
        opt = AdamW(params, lr=0.1, weight_decay=0.1)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = np.random.default_rng(100 * step + i).standard_normal(p.shape)
            opt.step()
        return [p.data.copy() for p in params]

    split = run()
    parallel.set_threads(None)
    for a, b in zip(split, run()):
        np.testing.assert_array_equal(a, b)


def test_t5_training_step_on_threads_matches_one_thread(split_everything):
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
                      feed_forward_proj="gated-gelu", dropout_rate=0.1, decoder_start_token_id=0)
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(2, 40, (3, 7)), rng.integers(2, 40, (3, 5))

    def loss_and_grads():
        minillm.manual_seed(0)
        model = T5ForConditionalGeneration(config)
        model.train()
        loss = model(input_ids=ids, attention_mask=np.ones_like(ids), labels=labels).loss
        loss.backward()
        return float(loss.data), {name: p.grad for name, p in model.named_parameters()}

    loss_split, grads_split = loss_and_grads()
    parallel.set_threads(None)
    loss_one, grads_one = loss_and_grads()
    assert loss_split == pytest.approx(loss_one, rel=1e-6)
    for name, grad in grads_one.items():
        np.testing.assert_allclose(grads_split[name], grad, rtol=1e-4, atol=1e-6, err_msg=name)


def test_threads_to_blas_hands_the_threads_over_and_back():
    from threadpoolctl import threadpool_info

    from minillm.fast.threads import threads_to_blas

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    minillm.set_num_threads(2)
    try:
        with threads_to_blas():
            assert parallel.num_threads() == 1 and blas_threads() == {2}
        assert parallel.num_threads() == 2 and blas_threads() == {1}
    finally:
        minillm.set_num_threads(None)


def test_decoding_asks_the_dispatch_for_the_blas_hand_off(monkeypatch):
    from minillm import generation
    from minillm.fast import dispatch

    entered = []
    monkeypatch.setattr(generation, "fast_context", lambda key: entered.append(key) or contextlib.nullcontext())
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=4,
                      decoder_start_token_id=0)
    T5ForConditionalGeneration(config).generate(np.array([[3, 4, 5]]), max_new_tokens=2, eos_token_id=-1)
    assert entered == ["decoding"]
    minillm.set_num_threads(2)
    try:
        with dispatch.lookup("decoding")():  # what the fast layer registered: the BLAS hand-off
            assert parallel.num_threads() == 1
        with minillm.fast_paths(False), dispatch.context("decoding"):  # switched off: no hand-off
            assert parallel.num_threads() == 2
    finally:
        minillm.set_num_threads(None)


def test_generation_on_two_threads_gives_the_tokens_of_one():
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
                      feed_forward_proj="gated-gelu", decoder_start_token_id=0)
    model = T5ForConditionalGeneration(config)
    ids = np.random.default_rng(0).integers(2, 40, (3, 7))
    one = model.generate(ids, max_new_tokens=6, eos_token_id=-1)
    minillm.set_num_threads(2)
    try:
        two = model.generate(ids, max_new_tokens=6, eos_token_id=-1)
        assert parallel.num_threads() == 2  # restored after generate
    finally:
        minillm.set_num_threads(None)
    np.testing.assert_array_equal(two, one)


def test_set_num_threads_limits_blas_and_none_restores_it():
    from minillm.fast.threads import get_num_threads, set_num_threads

    set_num_threads(None)  # an earlier test (a CLI run with --threads) may have left a limit
    before = get_num_threads()
    set_num_threads(1)
    try:
        assert get_num_threads() == 1
    finally:
        set_num_threads(None)
    assert get_num_threads() == before


def test_set_num_threads_rejects_zero():
    from minillm.fast.threads import set_num_threads

    with pytest.raises(ValueError, match="at least 1 thread"):
        set_num_threads(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_subnormals_zeroes_exactly_the_subnormals(dtype, split_everything):
    from minillm.fast.subnormals import count_subnormals, flush_subnormals

    tiny = np.finfo(dtype).tiny
    values = np.array([0.0, tiny, -tiny, tiny / 2, -tiny / 4, tiny * 0.999, 1.0, -3.5, np.inf, -np.inf],
                      dtype=dtype)
    a = np.tile(values, (5, 1))  # several rows, so the row blocks and threads are used
    assert count_subnormals(a) == 5 * 3
    out = flush_subnormals(a)
    assert out is a
    expected = np.array([0.0, tiny, -tiny, 0.0, 0.0, 0.0, 1.0, -3.5, np.inf, -np.inf], dtype=dtype)
    np.testing.assert_array_equal(a, np.tile(expected, (5, 1)))
    nan = np.array([np.nan, tiny / 2], dtype=dtype)
    flush_subnormals(nan)
    assert np.isnan(nan[0]) and nan[1] == 0
