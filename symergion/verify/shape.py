"""Degenerate code by its shape: runs of statements that differ only in names, numbers, strings.

A small model decoded greedily often falls into a near-repeat rather than an exact one: a
counting loop (``t = 55``, ``u = 56``, ``v = 57`` ...) or the same two-line test again and again
with other names. Those lines are equal once each name becomes ``N``, each number ``0`` and each
string ``S`` (keywords and operators stay). ``ShapeRuns`` reads the text line by line, joins
physical lines into statements (rows inside brackets are parts of one statement, so a literal
table of any length counts once), and counts how many consecutive statements repeat one shape,
or one block of two or three shapes.

Real code repeats shapes too, and by a lot: 155 calls of one shape in a test of the standard
library (parametrized cases written out), 355 members of one enum. What it hardly ever does is
*count*: a run whose values all stay the same or step on by the same amount each time (the
letter and the number of ``t = 55``, ``u = 56``) stops at 7 statements in a function body in the
standard library and its tests. So there are two limits, measured on real files
(``scripts/shape_runs.py``, figures in ``docs/benchmarks.md``): a low one for counting runs, which
stops a loop within a few lines, and a high one for any run of one shape, above what real code
has. Both are higher at module or class level, where constants and enum members live.

``ShapeRuns.feed`` takes one complete line and costs time in that line's length only, so a
finisher can call it on every line of a long generation.
"""

from __future__ import annotations

import keyword
import re
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The longest runs allowed in one scope, in statements, by period (1: one shape again and
    again; 2, 3: a block of two or three shapes again): of any same-shape statements, and of
    counting ones (whose values repeat or step on, ``t = 55``, ``u = 56``)."""

    shape: dict[int, int]
    counting: dict[int, int]


# Just above the longest runs of real code, measured with scripts/shape_runs.py on the standard
# library, its tests, this project's tests and third-party packages: see docs/benchmarks.md,
# "Degenerate generation by shape".
FUNCTION_LIMITS = Limits(shape={1: 160, 2: 160, 3: 160}, counting={1: 8, 2: 14, 3: 20})
TOP_LIMITS = Limits(shape={}, counting={1: 26, 2: 26, 3: 26})
PERIODS = (1, 2, 3)

_KEYWORDS = frozenset(keyword.kwlist)
_OPEN = "([{"
_CLOSE = ")]}"
# One token of Python source on one line. Strings are matched by their opening quote only; the
# scanner finds their end (a triple-quoted string may end lines later).
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\f]+)
    | (?P<comment>\#.*)
    | (?P<string>(?i:[rbuf]{0,2})(?:'''|\"\"\"|'|"))
    | (?P<number>(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?)[jJlL]?)
    | (?P<name>\w+)
    | (?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|[-+*/%&|^@=<>!]=|\.\.\.|[^\s\w])
    """,
    re.VERBOSE,
)
_STRING_END = {q: re.compile(r"(?:[^\\]|\\.)*?" + re.escape(q)) for q in ("'", '"', "'''", '"""')}


@dataclass(frozen=True)
class ShapeRun:
    """A run of same-shape statements found too long.

    ``start_line`` is the index (0-based, among the lines fed) of the run's first line;
    ``statements`` how many statements the run holds so far, ``period`` how many different
    shapes repeat in it.
    """

    start_line: int
    statements: int
    period: int
    shape: str
    counting: bool  # every statement's values repeat or step on from the ones before
    top: bool = False  # it reaches module or class level


@dataclass
class _Run:
    """The run of one period that the last statement is in: its size, first line, scope."""

    statements: int = 0
    first: int = 0
    top: bool = False

    def extend(self, recent: deque[_Statement], blocks: int, period: int) -> None:
        """Count the last statement in; a new run holds the ``blocks`` blocks before it too."""
        if self.statements:
            self.statements += 1
            self.top = self.top or recent[-1].top
            return
        held = list(recent)[-1 - blocks * period :]
        self.statements = len(held)
        self.first = held[0].first
        self.top = any(statement.top for statement in held)

    def clear(self) -> None:
        self.statements = 0


@dataclass(frozen=True)
class _Statement:
    key: str  # indentation and shape
    first: int  # its first line
    values: tuple[str, ...]  # its names, numbers and strings, in order
    top: bool  # at module or class level (not in a function body)


@dataclass
class _Scope:
    indent: int
    function: bool


class ShapeRuns:
    """Watch the statements of Python text as its lines come; report a run beyond the limits.

    Args:
        function_limits: the longest runs allowed inside a function body.
        top_limits: the same at module or class level.
    """

    def __init__(self, function_limits: Limits = FUNCTION_LIMITS,
                 top_limits: Limits = TOP_LIMITS) -> None:
        self.function_limits = function_limits
        self.top_limits = top_limits
        self._periods = PERIODS
        self._line = -1
        # The statement being read: its shape and values so far, first line, indentation.
        self._parts: list[str] = []
        self._first = 0
        self._indent = 0
        self._depth = 0
        self._string: str | None = None  # the quote of a string still open at a line's end
        self._backslash = False
        self._values: list[str] = []
        # The last statements, enough to compare at every period.
        self._recent: deque[_Statement] = deque(maxlen=2 * max(self._periods) + 1)
        self._shape = {p: _Run() for p in self._periods}
        self._counting = {p: _Run() for p in self._periods}
        self._scopes: list[_Scope] = []
        self.last_in_function = False  # the scope of the last statement read

    def feed(self, line: str) -> ShapeRun | None:
        """Read one complete line (without its newline); return a run found too long, or None."""
        self._line += 1
        pos = 0
        if self._string is not None:
            pos = self._close_string(line, 0)
            if pos < 0:
                return None
        elif self._depth == 0 and not self._backslash:
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                return None  # blank lines and comments neither extend nor break a run
            self._parts = []
            self._first = self._line
            self._indent = len(line.expandtabs(8)) - len(stripped.expandtabs(8))
        self._backslash = False
        found = self._scan(line, pos)
        if self._string is None and self._depth == 0 and not self._backslash and self._parts:
            found = self._statement() or found
        return found

    def _scan(self, line: str, pos: int) -> ShapeRun | None:
        found: ShapeRun | None = None
        end = len(line)
        while pos < end:
            match = _TOKEN.match(line, pos)
            if match is None:
                break
            kind, text = match.lastgroup, match.group()
            pos = match.end()
            if kind in ("space", "comment"):
                continue
            if kind == "string":
                self._parts.append("S")
                start = match.start()
                self._string = text.lstrip("rbufRBUF")
                pos = self._close_string(line, pos)
                self._values.append(line[start:pos] if pos >= 0 else line[start:])
                if pos < 0:
                    if len(self._string) == 1:  # an unclosed one-line string: take the line
                        self._string = None
                    return found
            elif kind == "number":
                self._parts.append("0")
                self._values.append(text)
            elif kind == "name":
                if text in _KEYWORDS:
                    self._parts.append(text)
                else:
                    self._parts.append("N")
                    self._values.append(text)
            elif text == "\\" and line[pos:].strip() == "":
                self._backslash = True
            elif text == ";" and self._depth == 0:
                found = self._statement() or found
                self._first = self._line
            else:
                if text in _OPEN:
                    self._depth += 1
                elif text in _CLOSE:
                    self._depth = max(0, self._depth - 1)
                self._parts.append(text)
        return found

    def _close_string(self, line: str, pos: int) -> int:
        """Return where the open string ends on ``line`` (past its quote), or -1 if it goes on."""
        assert self._string is not None
        match = _STRING_END[self._string].match(line, pos)
        if match is None:
            return -1
        self._string = None
        return match.end()

    def _statement(self) -> ShapeRun | None:
        """Close the statement read so far; count it into the runs."""
        parts, self._parts = self._parts, []
        values, self._values = self._values, []
        if not parts:
            return None
        while self._scopes and self._scopes[-1].indent >= self._indent:
            self._scopes.pop()
        function = any(scope.function for scope in self._scopes)
        self.last_in_function = function
        head = parts[1] if parts[0] == "async" and len(parts) > 1 else parts[0]
        if head in ("def", "class") and parts[-1] == ":":
            self._scopes.append(_Scope(self._indent, head == "def"))
        key = f"{self._indent}|{' '.join(parts)}"
        recent = self._recent
        recent.append(_Statement(key, self._first, tuple(values), not function))
        found: ShapeRun | None = None
        for period in self._periods:
            same = len(recent) > period and recent[-1 - period].key == key
            shaped, counted = self._shape[period], self._counting[period]
            if same:
                shaped.extend(recent, 1, period)
            else:
                shaped.clear()
            if same and len(recent) > 2 * period and _continues(
                    recent[-1 - 2 * period], recent[-1 - period], recent[-1]):
                counted.extend(recent, 2, period)
            else:
                counted.clear()
            if found is not None:
                continue
            # A run that reaches module or class level (methods of a class, say) is held to
            # the limits there.
            for run, counts in ((counted, True), (shaped, False)):
                limits = self.top_limits if run.top else self.function_limits
                limit = (limits.counting if counts else limits.shape).get(period)
                if run.statements and limit is not None and run.statements > limit:
                    found = ShapeRun(run.first, run.statements, period, key, counts, run.top)
                    break
        return found

    def current(self, period: int, counting: bool = False) -> ShapeRun | None:
        """Return the run of ``period`` that the last statement is in, or None (for measuring
        real code: ``scripts/shape_runs.py``)."""
        run = (self._counting if counting else self._shape)[period]
        if not run.statements:
            return None
        return ShapeRun(run.first, run.statements, period, self._recent[-1].key, counting, run.top)


def _continues(first: _Statement, second: _Statement, third: _Statement) -> bool:
    """Whether ``third``'s values follow from the two before: each slot stays the same or takes
    the same step again (a number or one character counted on, as in ``t = 55``, ``u = 56``)."""
    if len(first.values) != len(third.values) or len(second.values) != len(third.values):
        return False
    for a, b, c in zip(first.values, second.values, third.values, strict=True):
        step = _step(b, c)
        if step is None or step != _step(a, b):
            return False
    return True


def _step(a: str, b: str) -> tuple[int, int, int] | None:
    """How ``b`` differs from ``a``: (0, 0, 0) if equal; (1, where, by) if a digit run counts on
    by ``by``; (2, where, by) if one character moved by ``by``; None for any other change."""
    if a == b:
        return (0, 0, 0)
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    while head > 0 and a[head - 1].isdecimal():
        head -= 1
    while tail > 0 and a[len(a) - tail].isdecimal():
        tail -= 1
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    if mid_a.isdecimal() and mid_b.isdecimal() and max(len(mid_a), len(mid_b)) <= 18:
        return (1, head, int(mid_b) - int(mid_a))
    if len(mid_a) == 1 and len(mid_b) == 1:
        return (2, head, ord(mid_b) - ord(mid_a))
    return None
