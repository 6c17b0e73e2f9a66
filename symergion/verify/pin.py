"""Pin failing equality assertions to the values the code returned, and complete one-sided ones.

- **pin** (the regression oracle of EvoSuite and Pynguin): a failing equality assertion whose
  actual side calls code of the module under test gets, as its expected value, the value the
  runner observed, when that value is a Python literal. A third positional argument that is no
  message (a number where ``msg`` belongs) is removed. A pinned assertion records what the code
  *does*, not what it should do, so the commit message names each one for the human to review.
  A value that differs between runs is checked by what every run agrees on instead;
- **complete**: an equality assertion with only one argument that calls the module gets ``None``
  as its expected value, so it fails (instead of raising TypeError) and the next round pins it.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

from symergion.verify.equality import ALMOST, EQUALITY, assertion_at, is_plain
from symergion.verify.prune import Removed
from symergion.verify.result import Observation, VerifyResult
from symergion.verify.stable import Sample, Stable, differ, literal_facts, stable_checks
from symergion.verify.syntax import (
    Edits,
    ModuleRefs,
    asserts,
    assigned_value,
    bound_names,
    calls_module,
    derived_names,
    module_refs,
)


@dataclass(frozen=True)
class Pin:
    """An assertion whose expected value was set to what the code under test returned."""

    test: str
    line: int
    before: str
    after: str


@dataclass(frozen=True)
class Stabilized:
    """An assertion whose value differs between runs, replaced by the checks every run agrees on."""

    test: str
    line: int
    seen: tuple[str, ...]  # the values observed, as written (or their types)
    said: tuple[str, ...]  # what the checks hold: "type str", "length 13", ...


@dataclass(frozen=True)
class _PinStep:
    """What one pass of ``pin_values`` changed."""

    text: str
    pins: tuple[Pin, ...] = ()
    dropped_args: tuple[int, ...] = ()
    stabilized: tuple[Stabilized, ...] = ()
    dropped: tuple[Removed, ...] = ()
    shifts: tuple[tuple[int, int], ...] = ()


def pin_assertions(
    test_source: str, result: VerifyResult, module: str, destination: str,
    *, module_names: frozenset[str] = frozenset(), skip: frozenset[tuple[str, int]] = frozenset(),
) -> tuple[str, tuple[Pin, ...], tuple[int, ...]]:
    """Set the expected side of failing equality assertions to the observed actual value.

    A value that differs between runs is not pinned: see ``pin_values``.

    Args:
        test_source: the test file as verified.
        result: its verification, with the values the runner observed.
        module: the dotted module under test.
        destination: the test file's path (resolves relative imports).
        module_names: the module's top-level names (what ``from module import *`` brings).
        skip: (test id, line) pairs pinned before (failing still: their value is unstable).

    Returns:
        The new text, the pins, and the lines where a misplaced third argument was removed.
    """
    step = pin_values(test_source, result, module, destination, module_names=module_names, skip=skip)
    return step.text, step.pins, step.dropped_args


def _statement_of(function: ast.AST, call: ast.Call) -> ast.stmt | None:
    """Return the statement of a function whose expression is the call (an assertion line)."""
    return next((n for n in ast.walk(function) if isinstance(n, ast.Expr) and n.value is call), None)


def _inputs(function: ast.AST, before: int) -> dict[str, object]:
    """Return the test's simple names bound to literals before a line, with their values."""
    found: dict[str, object] = {}
    for node in sorted((n for n in ast.walk(function) if isinstance(n, ast.Assign) and n.lineno < before),
                       key=lambda n: n.lineno):
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                found.pop(node.targets[0].id, None)
    return found


def _same_computation(call: ast.Call, function: ast.AST) -> bool:
    """Return whether an equality assertion compares a computation with itself (determinism)."""
    first, second = call.args[0], call.args[1]
    if not any(isinstance(n, ast.Call) for side in (first, second) for n in ast.walk(side)):
        return False
    dumps = []
    for side in (first, second):
        if isinstance(side, ast.Name):
            value = assigned_value(function, side.id, call.lineno)
            dumps.append({ast.dump(side), ast.dump(value)} if value is not None else {ast.dump(side)})
        else:
            dumps.append({ast.dump(side)})
    return bool(dumps[0] & dumps[1])


def _drop_span(tree: ast.Module, function: ast.AST, edits: Edits) -> tuple[int, int, str, int]:
    """Return the text span that removes a test method, its replacement, and its first line.

    A class left without a statement keeps ``pass``.
    """
    owner = next((c for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and function in c.body), None)
    decorators = getattr(function, "decorator_list", [])
    first = min([function.lineno, *(d.lineno for d in decorators)])  # type: ignore[attr-defined]
    while first > 1 and not edits.lines[first - 2].strip():  # the blank lines that set it apart
        first -= 1
    start = edits.starts[first - 1]
    end = edits.starts[min(function.end_lineno or function.lineno, len(edits.lines))]  # type: ignore[attr-defined]
    alone = owner is not None and len(owner.body) == 1
    indent = " " * function.col_offset  # type: ignore[attr-defined]
    return start, end, f"{indent}pass\n" if alone else "", first


def _shown(samples: list[Sample]) -> tuple[str, ...]:
    shown: list[str] = []
    for sample in samples:
        text = sample.literal if sample.literal is not None else f"a {sample.facts.get('type', 'value')}"
        text = text if len(text) <= 60 else text[:57] + "..."
        if text not in shown:
            shown.append(text)
    return tuple(shown)


def pin_values(
    test_source: str, result: VerifyResult, module: str, destination: str,
    *, module_names: frozenset[str] = frozenset(), skip: frozenset[tuple[str, int]] = frozenset(),
) -> _PinStep:
    """Pin failing equality assertions to the observed value; check unstable values otherwise.

    A value the runs observed differently, or one pinned before (``skip``) that failed again,
    is no value to pin: the assertion is replaced by what every observed run agrees on
    (``verify.stable``), and a test for which nothing holds is dropped. A determinism check
    that failed (a computation compared with itself) is taken out; the test goes with it when
    it checks nothing else.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return _PinStep(test_source)
    refs = module_refs(tree, module, destination)
    if refs.star:
        refs.names |= module_names
    return _Pinner(test_source, tree, refs, module, skip).run(result)


@dataclass
class _TestEdits:
    """One failing test's edits: all of them are made, or the test is dropped (``drop``: why)."""

    planned: list[tuple[int, int, str]] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    dropped_args: list[int] = field(default_factory=list)
    stabilized: list[Stabilized] = field(default_factory=list)
    shifts: list[tuple[int, int]] = field(default_factory=list)
    needs_os: bool = False
    drop: tuple[ast.AST, str] | None = None  # the test method, and why it goes


@dataclass(frozen=True)
class _Failed:
    """A failing equality assertion of a test, what the runs observed at its line, and where it is."""

    test: str
    line: int
    seens: list[Observation]
    call: ast.Call
    function: ast.AST
    statement: ast.stmt | None


class _Pinner:
    """The edits of ``pin_values`` to one test file, planned test by test, then made."""

    def __init__(self, test_source: str, tree: ast.Module, refs: ModuleRefs, module: str,
                 skip: frozenset[tuple[str, int]]) -> None:
        self.test_source = test_source
        self.tree = tree
        self.refs = refs
        self.module = module
        self.skip = skip
        self.functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        self.edits = Edits(test_source)
        self.done: set[int] = set()  # the assertions edited already, by id

    def run(self, result: VerifyResult) -> _PinStep:
        """Plan each failing test's edits and make them (or drop the test); return the new text."""
        pins: list[Pin] = []
        dropped: list[int] = []
        stabilized: list[Stabilized] = []
        gone: list[Removed] = []
        shifts: list[tuple[int, int]] = []
        needs_os = False
        for test, outcome in result.tests.items():
            # One case of a parametrized test (``test_f[2-3]``) shares its assertion with the
            # others: a value pinned for it would fail them.
            if outcome.outcome != "failed" or test.endswith("]"):
                continue
            planned = self.plan(test, outcome.observed)
            if planned.drop is not None:
                function, reason = planned.drop
                shifts.append(self.drop(function))
                gone.append(Removed(test, reason))
                continue
            for edit in planned.planned:
                self.edits.replace(*edit)
            pins += planned.pins
            dropped += planned.dropped_args
            stabilized += planned.stabilized
            shifts += planned.shifts
            needs_os = needs_os or planned.needs_os
        if needs_os and "os" not in bound_names(self.tree):
            self.edits.replace(0, 0, "import os\n")
            shifts.append((1, 1))
        return _PinStep(self.edits.apply(), tuple(pins), tuple(dropped), tuple(stabilized), tuple(gone),
                        tuple(shifts))

    def plan(self, test: str, observed: tuple[Observation, ...]) -> _TestEdits:
        """Return a failing test's edits, one per failing equality assertion the runs observed."""
        by_line: dict[int, list[Observation]] = {}
        for seen in observed:
            by_line.setdefault(seen.line, []).append(seen)
        planned = _TestEdits()
        for line, seens in by_line.items():
            call, function = assertion_at(self.functions, line)
            if call is None or function is None or id(call) in self.done or len(call.args) < 2:
                continue
            self.assertion(planned, _Failed(test, line, seens, call, function, _statement_of(function, call)))
            if planned.drop is not None:
                break
        return planned

    def assertion(self, planned: _TestEdits, failed: _Failed) -> None:
        """Plan the edit of one failing equality assertion, when one applies."""
        call, statement = failed.call, failed.statement
        if statement is not None and _same_computation(call, failed.function):
            # Two calls with the same input differ: the determinism check does not hold.
            self.done.add(id(call))
            self.take_out(planned, failed, statement)
            return
        derived = derived_names(failed.function, self.refs)
        sides = [calls_module(arg, self.refs, derived) for arg in call.args[:2]]
        if sides.count(True) != 1:
            return
        actual = sides.index(True)
        start, end = self.edits.span(call.args[1 - actual])
        before = self.test_source[start:end]
        samples = _samples(failed.seens, actual)
        again = (failed.test, failed.line) in self.skip  # pinned before, and failing again
        if again:
            samples.append(Sample(before, literal_facts(before)))
        if statement is not None and (again or differ(samples)):
            self.done.add(id(call))
            self.stabilize(planned, failed, statement, actual, samples, derived)
            return
        if is_plain(call) and (again or differ(samples)):
            return  # no check of a plain assert is written for a value that varies: the prune's
        seen = failed.seens[0]
        observed = seen.first if actual == 0 else seen.second
        if observed is None:
            if not is_plain(call):
                self.check_type(planned, failed, actual, before)
        elif before != observed:
            self.done.add(id(call))
            self.pin(planned, failed, (start, end), before, observed)

    def take_out(self, planned: _TestEdits, failed: _Failed, statement: ast.stmt) -> None:
        """Take out a determinism check that failed; drop the test when it checks nothing else."""
        if not asserts(failed.function, statement):
            planned.drop = (failed.function, "two calls with the same input differ, and nothing else holds")
            return
        last = statement.end_lineno or statement.lineno
        planned.planned.append((*self.statement_span(statement), ""))
        planned.shifts.append((last + 1, -(last - statement.lineno + 1)))
        seen_both = _shown(_samples(failed.seens, 0) + _samples(failed.seens, 1))
        planned.stabilized.append(Stabilized(failed.test, failed.line, seen_both,
                                             ("not deterministic: that check taken out",)))

    def stabilize(self, planned: _TestEdits, failed: _Failed, statement: ast.stmt, actual: int,
                  samples: list[Sample], derived: set[str]) -> None:
        """Replace an assertion on a value that differs between runs by the checks they agree on."""
        stable = _stable(self.test_source, failed.call, failed.function, actual, samples, self.module,
                         self.refs, derived)
        if not stable.lines:
            planned.drop = (failed.function, f"its value differs between runs ({', '.join(_shown(samples))}) "
                                             "and no type or property holds in every run")
            return
        indent = " " * statement.col_offset
        planned.planned.append((*self.statement_span(statement),
                                "".join(f"{indent}{x}\n" for x in stable.lines)))
        last = statement.end_lineno or statement.lineno
        planned.shifts.append((last + 1, len(stable.lines) - (last - statement.lineno + 1)))
        planned.stabilized.append(Stabilized(failed.test, failed.line, _shown(samples), stable.said))
        planned.needs_os = planned.needs_os or stable.needs_os

    def check_type(self, planned: _TestEdits, failed: _Failed, actual: int, before: str) -> None:
        """Check the type of a value that is no literal, by its name when the file has none for it."""
        call, seen = failed.call, failed.seens[0]
        type_name = seen.first_type if actual == 0 else seen.second_type
        kind = _type_expression(type_name, self.module, self.refs)
        named = foreign_type_name(type_name)
        method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        if (kind is None and named is None) or method not in EQUALITY or not isinstance(
                call.func, ast.Attribute):
            return
        # No literal to pin: the type of what the code returned is checked instead, by
        # its name when the file has none for it (another package's class).
        call_start, call_end = self.edits.span(call)
        first_start, first_end = self.edits.span(call.args[actual])
        owner_start, owner_end = self.edits.span(call.func.value)
        self.done.add(id(call))
        checked, value = self.test_source[owner_start:owner_end], self.test_source[first_start:first_end]
        planned.planned.append((call_start, call_end,
                                f"{checked}.assertIsInstance({value}, {kind})" if kind is not None
                                else f"{checked}.assertEqual(type({value}).__name__, {named!r})"))
        planned.pins.append(Pin(failed.test, seen.line, before,
                                f"an instance of {kind}" if kind is not None else f"a {named}"))

    def pin(self, planned: _TestEdits, failed: _Failed, span: tuple[int, int], before: str,
            observed: str) -> None:
        """Set an assertion's expected value to the observed one; drop a third argument that is no message."""
        call = failed.call
        planned.planned.append((*span, observed))
        planned.pins.append(Pin(failed.test, failed.seens[0].line, before, observed))
        method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        if len(call.args) >= 3 and method not in ALMOST and _not_a_message(call.args[2]):
            _, second_end = self.edits.span(call.args[1])
            _, third_end = self.edits.span(call.args[2])
            planned.planned.append((second_end, third_end, ""))
            planned.dropped_args.append(call.lineno)

    def statement_span(self, statement: ast.stmt) -> tuple[int, int]:
        """Return the text span of a statement's whole lines."""
        return (self.edits.starts[statement.lineno - 1],
                self.edits.starts[min(statement.end_lineno or statement.lineno, len(self.edits.lines))])

    def drop(self, function: ast.AST) -> tuple[int, int]:
        """Remove a test method; return the shift of the lines after it."""
        start, end, keep, first = _drop_span(self.tree, function, self.edits)
        self.edits.replace(start, end, keep)
        last = function.end_lineno or function.lineno  # type: ignore[attr-defined]
        return last + 1, (1 if keep else 0) - (last - first + 1)


def _samples(seens: list[Observation], side: int) -> list[Sample]:
    """Return one side of the observations of an assertion, one sample per run."""
    return [Sample(s.first, s.first_facts) if side == 0 else Sample(s.second, s.second_facts) for s in seens]


def _stable(test_source: str, call: ast.Call, function: ast.AST, actual: int, samples: list[Sample],
            module: str, refs: ModuleRefs, derived: set[str]) -> Stable:
    """Return the checks every sample of an assertion's actual side agrees on (``stable_checks``)."""
    owner = (ast.get_source_segment(test_source, call.func.value) if isinstance(call.func, ast.Attribute)
             else None)
    side = call.args[actual]
    text = ast.get_source_segment(test_source, side) or ""
    again: str | None = None
    if isinstance(side, ast.Name):
        value = assigned_value(function, side.id, call.lineno)
        if value is not None and calls_module(value, refs, derived - {side.id}):
            again = ast.get_source_segment(test_source, value)
    elif isinstance(side, ast.Call):
        again = text
    types = {s.facts.get("type") for s in samples}
    kind = next(iter(types)) if len(types) == 1 else None
    type_name = kind if isinstance(kind, str) else None
    return stable_checks(owner or "self", text, samples,
                         type_expression=_type_expression(type_name, module, refs),
                         type_name=foreign_type_name(type_name),
                         again=again, inputs=_inputs(function, call.lineno))


def foreign_type_name(name: str | None) -> str | None:
    """Return the class name of a type ``module.qualname`` that is no builtin, else None.

    A test checks it by name (``type(result).__name__``): importing the type's module on this
    side, by a name a sandboxed run reported, is what the sandbox is there to avoid.
    """
    if name is None or "." not in name:
        return None
    owner, _, qualname = name.rpartition(".")
    if owner == "builtins" or not re.fullmatch(r"[A-Za-z_]\w*", qualname):
        return None
    return qualname


def _type_expression(name: str | None, module: str, refs: ModuleRefs) -> str | None:
    """Return how the test file names a type ``module.qualname``: a builtin, or a class of the module.

    None when the file has no name for it (another module's type, a nested or local class).
    """
    if name is None or "." not in name:
        return None
    owner, _, qualname = name.rpartition(".")
    if "." in qualname or "<" in qualname:
        return None
    if owner == "builtins":
        return qualname if isinstance(getattr(builtins, qualname, None), type) else None
    if owner == module and refs.aliases:
        return f"{refs.aliases[0]}.{qualname}"
    if owner == module and qualname in refs.names:
        return qualname
    return None


def _not_a_message(node: ast.expr) -> bool:
    """Return whether an argument in the ``msg`` position is a literal that is no string."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return not isinstance(value, str)


def complete_assertions(test_source: str, module: str, destination: str,
                        *, module_names: frozenset[str] = frozenset()) -> tuple[str, tuple[int, ...]]:
    """Add ``None`` as the expected value of equality assertions that have only an actual one.

    ``self.assertEqual(m.f(1))`` raises TypeError before it compares anything; with an expected
    value it fails instead, the runner observes what ``m.f(1)`` returned, and the next round pins
    it. Only assertions whose one argument calls the module under test are completed.

    Returns the new text and the lines of the completed assertions.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, ()
    refs = module_refs(tree, module, destination)
    if refs.star:
        refs.names |= module_names
    edits = Edits(test_source)
    lines: list[int] = []
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        derived = derived_names(function, refs)
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in EQUALITY and len(node.args) == 1 and not node.keywords):
                continue
            if isinstance(node.args[0], ast.Starred) or not calls_module(node.args[0], refs, derived):
                continue
            _, end = edits.span(node.args[0])
            edits.replace(end, end, ", None")
            lines.append(node.lineno)
    return edits.apply(), tuple(sorted(lines))
