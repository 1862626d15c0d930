"""The optimizers' fast path (minillm/fast/cpu_optim.py) against their reference update rules (optim/).

The fast path runs each reference line as the same float operations on the same operands in the
same order, only written with ``out=`` into scratch arrays and spread over threads. So the
comparison is bitwise: parameters and every state array after each of several steps, for any
shapes, hyper-parameters and gradients hypothesis draws. Threads do not change the arithmetic
either (each parameter is updated whole, by one thread), so a threaded step is bitwise equal too.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm
from minillm.fast import fast_paths, lookup
from minillm.nn import Parameter
from minillm.optim import SGD, Adafactor, Adam, AdamW

SHAPES = st.lists(st.sampled_from([(3,), (4, 5), (2, 3, 4), (1,), (6, 1)]), min_size=1, max_size=3)

OPTIMIZERS = st.one_of(
    st.builds(lambda lr, b1, b2, wd: (Adam, dict(lr=lr, betas=(b1, b2), weight_decay=wd)),
              st.sampled_from([1e-3, 0.1]), st.sampled_from([0.0, 0.9]), st.sampled_from([0.5, 0.999]),
              st.sampled_from([0.0, 0.1])),
    st.builds(lambda lr, wd, eps: (AdamW, dict(lr=lr, weight_decay=wd, eps=eps)),
              st.sampled_from([1e-3, 0.1]), st.sampled_from([0.0, 0.01, 0.5]), st.sampled_from([1e-8, 1e-3])),
    st.builds(lambda mom, damp, wd, nesterov: (SGD, dict(lr=0.05, momentum=mom, dampening=0.0 if nesterov else damp,
                                                         weight_decay=wd, nesterov=nesterov and mom > 0)),
              st.sampled_from([0.0, 0.9]), st.sampled_from([0.0, 0.3]), st.sampled_from([0.0, 0.1]), st.booleans()),
    st.sampled_from([
        (Adafactor, dict()),
        (Adafactor, dict(warmup_init=True)),
        (Adafactor, dict(lr=1e-2, relative_step=False, scale_parameter=False)),
        (Adafactor, dict(lr=1e-2, relative_step=False, beta1=0.9, weight_decay=0.1, clip_threshold=0.5)),
    ]),
)


def _bits(a):
    return np.ascontiguousarray(a).tobytes()


def _run(make, init, grads, fast: bool):
    """Step a fresh optimizer over ``grads`` (one list per step); return the parameters and states after each step."""
    params = [Parameter(w.copy()) for w in init]
    opt = make(params)
    history = []
    with fast_paths(fast):
        assert (lookup(type(opt), *[p.data for p in params]) is not None) == fast, "the fast path must be registered"
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.copy()
            opt.step()
            history.append(([p.data.copy() for p in params],
                            [{k: np.copy(v) for k, v in opt.state[p].items()} for p in params]))
    return history


def assert_bitwise_equal(reference, fast):
    for step, ((ref_params, ref_states), (fast_params, fast_states)) in enumerate(zip(reference, fast), 1):
        for i, (r, f) in enumerate(zip(ref_params, fast_params)):
            assert _bits(r) == _bits(f), (f"step {step}, parameter {i}: fast differs from reference by up to "
                                          f"{np.max(np.abs(r.astype(np.float64) - f))}")
        for i, (r, f) in enumerate(zip(ref_states, fast_states)):
            assert r.keys() == f.keys(), f"step {step}, parameter {i}: state keys {sorted(r)} != {sorted(f)}"
            for key in r:
                assert _bits(r[key]) == _bits(f[key]), f"step {step}, parameter {i}: state {key!r} differs"


@settings(max_examples=60, deadline=None)
@given(optimizer=OPTIMIZERS, shapes=SHAPES, steps=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([1e-4, 1.0, 30.0]))
def test_fast_optimizer_step_is_bitwise_the_reference_update(optimizer, shapes, steps, seed, scale):
    cls, options = optimizer
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[(scale * rng.standard_normal(s)).astype(np.float32) for s in shapes] for _ in range(steps)]
    make = lambda ps: cls(ps, **options)  # noqa: E731
    assert_bitwise_equal(_run(make, init, grads, fast=False), _run(make, init, grads, fast=True))


@pytest.mark.parametrize("cls, options", [(AdamW, {}), (SGD, dict(lr=0.1, momentum=0.9)), (Adafactor, {})])
def test_threaded_fast_step_over_large_parameters_is_bitwise_the_reference(cls, options):
    # Large enough that map_in_threads really shares the parameters out over two threads.
    rng = np.random.default_rng(1)
    shapes = [(256, 300), (300,), (128, 256), (4, 64, 32)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    minillm.set_num_threads(2)
    try:
        fast = _run(lambda ps: cls(ps, **options), init, grads, fast=True)
    finally:
        minillm.set_num_threads(None)  # back to NumPy's defaults, not to a limit of our own
    assert_bitwise_equal(_run(lambda ps: cls(ps, **options), init, grads, fast=False), fast)


def test_reference_step_runs_in_the_calling_thread_even_with_threads_set(monkeypatch):
    # "Optimizers step on one thread unless the fast layer is on".
    import threading
    seen = []
    update = AdamW._update
    monkeypatch.setattr(AdamW, "_update", lambda self, *job: (seen.append(threading.current_thread()),
                                                               update(self, *job)))
    params = [Parameter(np.ones((400, 400), np.float32)) for _ in range(4)]
    for p in params:
        p.grad = np.ones_like(p.data)
    minillm.set_num_threads(2)
    try:
        with fast_paths(False):
            AdamW(params).step()
    finally:
        minillm.set_num_threads(None)  # back to NumPy's defaults, not to a limit of our own
    assert seen == [threading.current_thread()] * 4
    assert all(np.all(p.data < 1) for p in params)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, Adafactor])
def test_each_optimizer_registers_a_subclass_whose_update_all_step_runs_on_its_state(cls, monkeypatch):
    params = [Parameter(np.ones(3, np.float32))]
    params[0].grad = np.ones(3, np.float32)
    opt = cls(params)
    with fast_paths(True):  # also under MINILLM_FAST=0
        fast = lookup(cls, params[0].data)
    assert fast is not None and fast is not cls and issubclass(fast, cls)  # class-shaped, as ops register
    ran = []
    monkeypatch.setattr(fast, "update_all", lambda self, jobs: ran.append((type(self), self.state is opt.state,
                                                                           self.param_groups is opt.param_groups,
                                                                           len(jobs))))
    with fast_paths(True):
        opt.step()
    assert ran == [(fast, True, True, 1)]


def test_an_optimizer_is_viewed_only_as_a_subclass_of_its_own():
    adam = Adam([Parameter(np.ones(2, np.float32))])
    with pytest.raises(TypeError, match="not a subclass of Adam"):
        adam.viewed_as(SGD)
