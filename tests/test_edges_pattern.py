"""Edges of the linear-time pattern matcher (peft/pattern.py), by brute force against ``re`` (issue 26).

The oracle is Python's own ``re`` (a reference implementation that is always there): every pattern
below is run on *every* string over a small alphabet up to a length, and on every single character
of a wide one, so a class bound that is off by one (``[b-d]`` taking ``e``), ``\\W`` taking the
underscore, or a repeat with one copy too many cannot hide in an unlucky random sample. The
hand-picked characters sit on the edges: each range's ends and their neighbours, ``_`` (a word
character that is not alphanumeric), a non-ASCII letter and digit, newline and tab.
"""
import itertools
import re

import pytest

from minillm.peft.pattern import MAX_STATES, UnsupportedPattern, compile_pattern

@pytest.fixture(autouse=True)
def _fresh_automata():
    """Each test builds its own automata: ``compile_pattern`` caches them, and a cached automaton
    (built before a change to the builder, or by another test) would hide what is under test."""
    compile_pattern.cache_clear()


# Characters at the edges of the classes below: range ends and their neighbours (a/b, d/e, x/y...),
# "_" (in \w, not alphanumeric), "-" (a range's dash taken literally), a non-ASCII letter and digit.
EDGE_CHARACTERS = "`abcdefwxyz{@AZ[/019:_- \t\n.é٣"

CLASS_PATTERNS = [
    "[b-d]", "[^b-d]", "[a-a]", "[0-9]", "[a-cx-z]", "[^a-cx-z]", "[-a]", "[a-]", "[A-Z_]",
    r"\w", r"\W", r"[\w]", r"[\W]", r"[^\w]", r"[^\W]", r"[\W_]", r"[\w-]",
    r"\d", r"\D", r"[\d]", r"[^\d]", r"\s", r"\S", r"[\s]", r"[^\s]", r"[\s\d]",
    ".", "[.]", r"\.", "[^a]", "a", "_",
]


@pytest.mark.parametrize("pattern", CLASS_PATTERNS)
def test_each_character_class_takes_exactly_the_characters_re_takes(pattern):
    compiled = compile_pattern(pattern)
    wrong = [c for c in EDGE_CHARACTERS if compiled.fullmatch(c) != (re.fullmatch(pattern, c) is not None)]
    assert wrong == []


def test_the_underscore_is_a_word_character_and_not_a_non_word_one():
    # By hand, the two edges the issue names: "_" is in \w (so not in \W), "-" is in \W.
    assert compile_pattern(r"\w").fullmatch("_") and not compile_pattern(r"\W").fullmatch("_")
    assert compile_pattern(r"\W").fullmatch("-") and not compile_pattern(r"\w").fullmatch("-")
    assert compile_pattern(r"[^\W]").fullmatch("_") and not compile_pattern(r"[^\w]").fullmatch("_")


def test_a_range_includes_both_ends_and_nothing_past_them():
    by_hand = {"a": False, "b": True, "c": True, "d": True, "e": False}
    assert {c: compile_pattern("[b-d]").fullmatch(c) for c in "abcde"} == by_hand
    assert {c: compile_pattern("[^b-d]").fullmatch(c) for c in "abcde"} == {c: not v for c, v in by_hand.items()}


STRUCTURE_PATTERNS = [
    "a{2}", "a{2,3}", "a{0,1}", "a{2,}", "(ab){1,2}", "(?:a|b){3}", "a*?b", "a+?", "(?:ab)?",
    "a|bc|", "(a|)b", "(?:a|b)*b(?:a|b)", "^a", "a$", "^$", "^a|b$", r"\Aa", r"a\Z", "a.b", "(a*)*",
    "[ab]{1,2}_", r"\w\W", "(?:-|_)+",
]
NAMES = ["".join(chars) for n in range(5) for chars in itertools.product("ab_-", repeat=n)]


@pytest.mark.parametrize("pattern", STRUCTURE_PATTERNS)
def test_fullmatch_and_search_agree_with_re_on_every_short_name(pattern):
    compiled = compile_pattern(pattern)
    wrong = [(name, kind) for name in NAMES for kind, ours, theirs in (
        ("fullmatch", compiled.fullmatch(name), re.fullmatch(pattern, name)),
        ("search", compiled.search(name), re.search(pattern, name))) if ours != (theirs is not None)]
    assert wrong == []


def test_a_bounded_repeat_at_exact_fit_and_one_past():
    # By hand: a{2,3} takes "aa" and "aaa", not "a" (one short) nor "aaaa" (one past).
    pattern = compile_pattern("a{2,3}")
    assert [pattern.fullmatch("a" * n) for n in range(5)] == [False, False, True, True, False]
    assert [compile_pattern("a{2}").fullmatch("a" * n) for n in (1, 2, 3)] == [False, True, False]


def test_the_dot_skips_a_newline_and_anchors_hold_only_at_the_ends():
    assert compile_pattern("a.b").fullmatch("a_b") and not compile_pattern("a.b").fullmatch("a\nb")
    assert compile_pattern("^b").search("ba") and not compile_pattern("^b").search("ab")
    assert compile_pattern("b$").search("ab") and not compile_pattern("b$").search("ba")
    assert compile_pattern("").fullmatch("") and compile_pattern("").search("xyz")


@pytest.mark.parametrize("pattern, message", [
    (r"(a)\1", "which needs backtracking; use plain names or a regular expression without "
               "backreferences, lookarounds or \\b"),
    ("(?i)a", "inline flags such as (?i) are not supported"),
    ("(?i:a)", "inline flags are not supported"),
    ("a{", None),
    ("(", "is not a valid regular expression"),
    # A possessive repeat never gives back what it took: re.fullmatch("a*+a", "aa") fails, while the
    # same automaton as "a*a" would match. Like an atomic group it is refused, not matched wrongly.
    ("a*+a", "uses possessive_repeat"),
    (".*+\\.q", "uses possessive_repeat"),
    ("(?>a*)a", "uses atomic_group"),
    ("(?:" * 3000 + "a" + ")" * 3000, "is too deeply nested or too large"),
    ("(?:a{100}){201}", f"is too large (over {MAX_STATES} states)"),
])
def test_unsupported_and_invalid_patterns_say_why(pattern, message):
    if message is None:  # valid for re: then valid here too, and the same answers
        compiled = compile_pattern(pattern)
        for name in ("a", "a{", ":]", "[]"):
            assert compiled.fullmatch(name) == (re.fullmatch(pattern, name) is not None)
        return
    with pytest.raises(UnsupportedPattern) as info:
        compile_pattern(pattern)
    assert message in str(info.value)
    assert str(info.value).startswith(f"pattern {pattern!r}")   # the message names the pattern
    assert isinstance(info.value, ValueError)


def test_a_pattern_just_under_the_state_limit_compiles():
    # a{n} counts 2n + 4 states: n for the fullmatch automaton, n again for search, and 2 for each
    # of search's ".*" loops (the accepting state is not counted). n = 9998 gives 20 000, the limit;
    # n = 9999 gives 20 002, one copy past it.
    assert compile_pattern("a{9998}").fullmatch("a" * 9998) is True
    with pytest.raises(UnsupportedPattern, match="too large"):
        compile_pattern("a{9999}")


def test_a_refusal_shows_the_first_30_characters_of_what_it_refuses():
    # re's parser reads "(?>a*)a" as (ATOMIC_GROUP, [(MAX_REPEAT, (0, MAXREPEAT, [(LITERAL, 97)]))]);
    # the message shows its operand lower-cased and cut at 30 characters.
    from re import _parser

    operand = str(_parser.parse("(?>a*)a")[0][1]).lower()
    assert operand[:30] == "[(max_repeat, (0, maxrepeat, [" and len(operand) > 31
    with pytest.raises(UnsupportedPattern) as info:
        compile_pattern("(?>a*)a")
    assert str(info.value) == ("pattern '(?>a*)a' uses atomic_group ([(max_repeat, (0, maxrepeat, [), which needs "
                               "backtracking; use plain names or a regular expression without backreferences, "
                               "lookarounds or \\b")
