"""Specification of peft/pattern.py: the same answers as Python's re, in time linear in the name."""
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.peft.pattern import UnsupportedPattern, compile_pattern

# Small regular expressions over a tiny alphabet, built from re's syntax (the oracle is re itself).
ATOMS = st.sampled_from(["a", "b", ".", r"\.", "[ab]", "[^a]", r"\d", r"\w", "(a|b)", "(?:ab|b)", "()"])


def _combine(children):
    return st.one_of(
        st.tuples(children, children).map("".join),
        st.tuples(children, children).map(lambda p: f"({p[0]}|{p[1]})"),
        st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "+?"])).map(
            lambda p: f"(?:{p[0]}){p[1]}"),
    )


PATTERNS = st.recursive(ATOMS, _combine, max_leaves=6).flatmap(
    lambda p: st.sampled_from([p, "^" + p, p + "$", "^" + p + "$"]))
NAMES = st.text(alphabet="ab.1_", max_size=8)


@settings(max_examples=300, deadline=None)
@given(PATTERNS, NAMES)
def test_fullmatch_and_search_agree_with_re(pattern, name):
    compiled = compile_pattern(pattern)
    assert compiled.fullmatch(name) == (re.fullmatch(pattern, name) is not None)
    assert compiled.search(name) == (re.search(pattern, name) is not None)


@pytest.mark.parametrize("pattern, name", [
    ("(a+)+$", "a" * 40 + "!"),                 # 2**40 paths for a backtracking matcher
    ("(a|aa)*b", "a" * 60),
    ("(.*a){12}", "a" * 30 + "b"),
    (r"(\w+\.)+q", "encoder." * 200 + "x"),
])
def test_catastrophic_patterns_finish_at_once(pattern, name):
    started = time.perf_counter()
    assert compile_pattern(pattern).fullmatch(name) is False
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("pattern, what", [
    (r"(a)\1", "groupref"), (r"(?=a)a", "assert"), (r"(?<!b)a", "assert_not"), (r"\bq", "at_boundary"),
    ("(?i)q", "flags"), ("(", "not a valid regular expression"), ("(?:a{1000}){1000}", "too large"),
])
def test_patterns_that_need_backtracking_are_refused_with_the_reason(pattern, what):
    with pytest.raises(UnsupportedPattern, match=re.escape(what)):
        compile_pattern(pattern)
