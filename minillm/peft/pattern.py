"""Regular expressions matched in time linear in the name: a pattern from a file can never hang.

PEFT lets ``target_modules`` (and minillm's selective ``patterns``) be a regular expression, and
an ``adapter_config.json`` downloaded from anyone carries one. Python's ``re`` backtracks: on
``(a+)+b`` and a name of 30 ``a``s it tries about 2^30 ways before it gives up, so one
hostile pattern would freeze the loader. This module matches the same patterns the way Ken
Thompson's 1968 construction does instead:

1. the pattern is parsed by Python's own parser (``re._parser``), so the syntax is exactly
   ``re``'s;
2. each piece becomes states of a nondeterministic automaton: a character test moves to the next
   state, a *split* may go two ways (alternation ``|``, and ``?``, ``*``, ``+``, ``{m,n}``);
3. matching keeps the *set* of states the automaton could be in, and reads the name once, one
   character at a time. A state is in the set or not, so each step costs at most the number of
   states: time O(len(name) x len(pattern)), whatever the pattern.

Backreferences and lookarounds cannot be matched this way; such patterns are refused with a
message saying so (PEFT's own patterns, like ``.*\\.(q|v)$``, never need them).
"""
from __future__ import annotations

from functools import lru_cache

try:  # Python 3.11+ names it re._parser; before that it was sre_parse
    from re import _constants as C, _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as C
    import sre_parse

MAX_STATES = 20_000  # a pattern like a{1000}{1000} would expand past this: refused

_CATEGORIES = {
    C.CATEGORY_DIGIT: str.isdigit,
    C.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    C.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    C.CATEGORY_SPACE: str.isspace,
    C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
}


class UnsupportedPattern(ValueError):
    """A regular expression that needs backtracking (backreference, lookaround, ...)."""


class _State:
    """One automaton state: ``test`` a character then go to ``next``, or (test None) split to ``outs``."""

    __slots__ = ("test", "next", "outs", "anchor")

    def __init__(self, test=None, next=None, outs=(), anchor=None):
        self.test, self.next, self.outs, self.anchor = test, next, list(outs), anchor


class Pattern:
    """A compiled pattern with ``fullmatch(name)`` and ``search(name)`` in linear time."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._count = 0
        tree = sre_parse.parse(pattern)
        if tree.state.flags & ~(C.SRE_FLAG_UNICODE):
            raise UnsupportedPattern(f"pattern {pattern!r}: inline flags such as (?i) are not supported")
        self._match = _State()  # accepting state
        self._full = self._build(tree, self._match)
        # search: any characters, the pattern, any characters ( .*(?:pattern).* as a fullmatch )
        tail = self._loop_any(self._match)
        self._search = self._loop_any(self._build(tree, tail))

    # ------------------------------------------------------------------ building the automaton
    def _new(self, **kwargs) -> _State:
        self._count += 1
        if self._count > MAX_STATES:
            raise UnsupportedPattern(f"pattern {self.pattern!r} is too large (over {MAX_STATES} states)")
        return _State(**kwargs)

    def _loop_any(self, next_state: _State) -> _State:
        split = self._new()
        split.outs = [self._new(test=lambda c: True, next=split), next_state]
        return split

    def _build(self, items, next_state: _State) -> _State:
        """The start state of ``items`` (a parsed sequence), continuing into ``next_state``."""
        for op, av in reversed(list(items)):
            next_state = self._build_one(op, av, next_state)
        return next_state

    def _build_one(self, op, av, next_state: _State) -> _State:
        if op is C.LITERAL:
            return self._new(test=lambda c, ch=chr(av): c == ch, next=next_state)
        if op is C.NOT_LITERAL:
            return self._new(test=lambda c, ch=chr(av): c != ch, next=next_state)
        if op is C.ANY:
            return self._new(test=lambda c: c != "\n", next=next_state)
        if op is C.IN:
            return self._new(test=_char_class(av, self.pattern), next=next_state)
        if op is C.BRANCH:
            return self._new(outs=[self._build(alternative, next_state) for alternative in av[1]])
        if op is C.SUBPATTERN:
            group, add_flags, del_flags, inner = av
            if add_flags or del_flags:
                raise UnsupportedPattern(f"pattern {self.pattern!r}: inline flags are not supported")
            return self._build(inner, next_state)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):  # not a possessive x*+: it never gives back (re: "a*+a" fails on "aa")
            return self._repeat(*av, next_state)
        if op is C.AT and av in (C.AT_BEGINNING, C.AT_BEGINNING_STRING):
            return self._new(anchor="begin", outs=[next_state])
        if op is C.AT and av in (C.AT_END, C.AT_END_STRING):
            return self._new(anchor="end", outs=[next_state])
        raise UnsupportedPattern(f"pattern {self.pattern!r} uses {str(op).lower()} "
                                 f"({str(av).lower()[:30]}), which needs backtracking; use plain names "
                                 "or a regular expression without backreferences, lookarounds or \\b")

    def _repeat(self, low: int, high, inner, next_state: _State) -> _State:
        """x{low,high}: ``high - low`` optional copies (or a loop when unbounded), then ``low`` required ones."""
        if high is C.MAXREPEAT:
            loop = self._new()
            loop.outs = [self._build(inner, loop), next_state]  # one more x, or leave
            state = loop
        else:
            state = next_state
            for _ in range(high - low):  # (x(x(x)?)?)?: each optional copy may stop early
                state = self._new(outs=[self._build(inner, state), next_state])
        for _ in range(low):
            state = self._build(inner, state)
        return state

    # ------------------------------------------------------------------ running it
    def _closure(self, states, position: int, length: int) -> set:
        """Every state reachable from ``states`` without reading a character (splits, anchors)."""
        seen, stack = set(), list(states)
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            if state.test is not None or state is self._match:
                continue
            if state.anchor == "begin" and position != 0 or state.anchor == "end" and position != length:
                continue
            stack.extend(state.outs)
        return seen

    def _run(self, start: _State, name: str) -> bool:
        """Read ``name`` once, keeping the set of states the automaton can be in."""
        active = self._closure([start], 0, len(name))
        for position, character in enumerate(name, start=1):
            moved = [s.next for s in active if s.test is not None and s.test(character)]
            active = self._closure(moved, position, len(name))
            if not active:
                return False
        return self._match in active

    def fullmatch(self, name: str) -> bool:
        """Whether the whole of ``name`` matches (``re.fullmatch``)."""
        return self._run(self._full, name)

    def search(self, name: str) -> bool:
        """Whether the pattern matches somewhere in ``name`` (``re.search``)."""
        return self._run(self._search, name)


def _char_class(items, pattern: str):
    """A test for one ``[...]`` class: literals, ranges, \\d \\w \\s, possibly negated."""
    negate, tests = False, []
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            tests.append(lambda c, ch=chr(av): c == ch)
        elif op is C.RANGE:
            tests.append(lambda c, lo=av[0], hi=av[1]: lo <= ord(c) <= hi)
        elif op is C.CATEGORY and av in _CATEGORIES:
            tests.append(_CATEGORIES[av])
        else:
            raise UnsupportedPattern(f"pattern {pattern!r}: unsupported character class item {op}")
    return lambda c: any(t(c) for t in tests) != negate


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Pattern:
    """The linear-time ``Pattern`` for ``pattern``; UnsupportedPattern (a ValueError) if it needs backtracking."""
    try:
        return Pattern(pattern)
    except (RecursionError, OverflowError):
        raise UnsupportedPattern(f"pattern {pattern!r} is too deeply nested or too large") from None
    except Exception as err:  # re.error: not a regular expression at all
        if isinstance(err, UnsupportedPattern):
            raise
        raise UnsupportedPattern(f"pattern {pattern!r} is not a valid regular expression ({err})") from None
