"""Edges of the fast-layer switch and the distributed sampler, pinned by hand (issue 26).

* ``fast_paths(...)`` must restore what was there before, not a constant: nested switches, an
  exception inside, and each value of ``MINILLM_FAST`` read at import.
* ``DistributedSampler`` at a global batch equal to the world size (one example per rank), one
  short of it (refused) and one past it (one rank gets two).
"""
import runpy

import pytest

import minillm
from minillm.distributed.sampler import DistributedSampler
from minillm.fast import dispatch


class _Key:
    """A private op key, so the registry entry below cannot change any real op."""


@dispatch.register(_Key)
def _fast_key():
    return "fast"


def test_fast_paths_restores_the_previous_setting_at_every_level():
    start = dispatch.fast_paths_enabled()
    with minillm.fast_paths(False):
        assert not dispatch.fast_paths_enabled() and dispatch.lookup(_Key) is None
        with minillm.fast_paths(True):
            assert dispatch.fast_paths_enabled() and dispatch.lookup(_Key) is _fast_key
            with minillm.fast_paths(False):
                assert not dispatch.fast_paths_enabled()
            assert dispatch.fast_paths_enabled()          # back to the inner True, not to the outer False
        assert not dispatch.fast_paths_enabled()          # back to False, not to the default True
        with minillm.fast_paths():                        # the default argument switches them on
            assert dispatch.fast_paths_enabled()
        assert not dispatch.fast_paths_enabled()
    assert dispatch.fast_paths_enabled() is start


def test_fast_paths_restores_after_an_exception_inside():
    start = dispatch.fast_paths_enabled()
    with pytest.raises(KeyError):
        with minillm.fast_paths(not start):
            assert dispatch.fast_paths_enabled() is (not start)
            raise KeyError("boom")
    assert dispatch.fast_paths_enabled() is start
    with minillm.fast_paths(0):                            # any falsy value means off, stored as a bool
        assert dispatch.fast_paths_enabled() is False


def test_lookup_returns_the_first_implementation_that_accepts():
    class Key:
        pass

    @dispatch.register(Key, accepts=lambda x: x > 0)
    def positive(x):
        return "positive"

    @dispatch.register(Key)
    def anything(x):
        return "anything"

    with minillm.fast_paths(True):
        assert dispatch.lookup(Key, 1) is positive and dispatch.lookup(Key, -1) is anything
        assert dispatch.lookup(object, 1) is None                       # nothing registered
        assert isinstance(dispatch.context(object), type(dispatch.context(object)))  # a do-nothing context


@pytest.mark.parametrize("value, enabled", [
    (None, True),                           # unset: on
    ("1", True), (" 1 ", True), ("", True),
    ("0", False), (" 0\n", False), ("false", False), ("False", False), ("no", False),
])
def test_minillm_fast_values_read_at_import(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("MINILLM_FAST", raising=False)
    else:
        monkeypatch.setenv("MINILLM_FAST", value)
    fresh = runpy.run_path(dispatch.__file__)   # a fresh copy of the module: the real one is untouched
    assert fresh["fast_paths_enabled"]() is enabled


# ------------------------------------------------------------------------------ sampler


def test_a_global_batch_equal_to_the_world_size_gives_each_rank_one_example():
    batch = [7, 3, 9, 4]                                   # 4 examples, 4 ranks
    shards = [DistributedSampler(rank, 4).shard(batch) for rank in range(4)]
    assert shards == [[7], [3], [9], [4]]
    for rank in range(4):
        DistributedSampler(rank, 4).check_batch_size(4)    # exact fit: accepted


def test_one_example_short_of_the_world_size_is_refused_and_one_past_is_dealt_round():
    with pytest.raises(ValueError, match="3 example\\(s\\) cannot be shared out over 4 processes; use at least 4"):
        DistributedSampler(0, 4).check_batch_size(3)
    shards = [DistributedSampler(rank, 4).shard([10, 11, 12, 13, 14]) for rank in range(4)]
    assert shards == [[10, 14], [11], [12], [13]]
    assert [DistributedSampler(rank, 4).shard([10, 11, 12]) for rank in range(4)] == [[10], [11], [12], []]


def test_a_world_of_one_takes_the_whole_batch_and_a_bad_rank_is_refused():
    assert DistributedSampler(0, 1).shard([5, 6, 7]) == [5, 6, 7]
    DistributedSampler(0, 1).check_batch_size(1)
    for rank, size in ((4, 4), (-1, 4), (0, 0)):
        with pytest.raises(ValueError, match=f"rank {rank} is not in a world of {size}"):
            DistributedSampler(rank, size)
    assert repr(DistributedSampler(1, 2)) == "DistributedSampler(rank=1, world_size=2)"
