"""Deterministic repairs of a verified test file: qualify names, pin expected values.

Repairs that need no model:

- **qualify names**: a bare name the test file uses but never defines or imports, that is a
  top-level name of the module under test, becomes ``<module alias>.<name>`` (or is imported
  from the module when the file has no alias for it);
- **pin** (the regression oracle of EvoSuite and Pynguin): a failing equality assertion whose
  actual side calls code of the module under test gets, as its expected value, the value the
  runner observed, when that value is a Python literal. A third positional argument that is no
  message (a number where ``msg`` belongs) is removed. A pinned assertion records what the code
  *does*, not what it should do, so the commit message names each one for the human to review;
- **complete**: an equality assertion with only one argument that calls the module gets ``None``
  as its expected value, so it fails (instead of raising TypeError) and the next round pins it;
- **truncate**: when nothing else applies, a failing test is cut before its failing statement if
  statements precede it (they pass), instead of the prune removing the whole test; a test whose
  first call raised inside the module expects that exception (``assertRaises``), named in the
  commit message for review like a pin.

``repair`` edits text; ``repair_candidate`` re-runs the repaired file in the sandbox, pins the
assertions that fail next, and repeats for a few rounds.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.names import module_of
from symergion.verify.params import class_values, constant_values, definition, is_number, value_kind
from symergion.verify.prune import Removed
from symergion.verify.result import Observation, VerifyResult
from symergion.verify.runner import EQUALITY_ASSERTIONS
from symergion.verify.sandbox import Limits, Sandbox
from symergion.verify.stable import Sample, Stable, differ, literal_facts, stable_checks

# Equality assertions as a test file may spell them, deprecated aliases included.
_EQUALITY = frozenset({*EQUALITY_ASSERTIONS, "assertEquals", "failUnlessEqual", "assertAlmostEquals",
                       "failUnlessAlmostEqual", "assertItemsEqual"})
# Their third positional parameter is a number of places, not a message.
_ALMOST = frozenset({"assertAlmostEqual", "assertAlmostEquals", "failUnlessAlmostEqual"})
DEFAULT_ROUNDS = 6


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
class Rekinded:
    """A test whose wrong-kind argument was given a value of the kind the code uses."""

    test: str
    name: str
    before: str
    after: str


@dataclass(frozen=True)
class RepairResult:
    """The repaired file, what changed, and the re-run that checked it."""

    text: str
    destination: str
    pinned: tuple[Pin, ...] = ()
    qualified: tuple[str, ...] = ()
    dropped_args: tuple[int, ...] = ()  # lines where a misplaced expected value was removed
    completed: tuple[int, ...] = ()  # lines where a one-argument assertion got an expected value
    truncated: tuple[str, ...] = ()  # tests cut before their first failing statement
    raising: tuple[str, ...] = ()  # tests whose first call now expects the exception it raised
    stabilized: tuple[Stabilized, ...] = ()  # unstable values checked by what every run agrees on
    dropped: tuple[Removed, ...] = ()  # tests with a value no check holds for
    rekinded: tuple[Rekinded, ...] = ()  # wrong-kind arguments given a value of the right kind
    rerun: VerifyResult | None = field(default=None, compare=False)
    # (line, lines added) of each edit that moved the lines after it, in this step's text.
    shifts: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        """Return whether the file was edited."""
        return bool(self.pinned or self.qualified or self.dropped_args or self.completed or self.truncated
                    or self.raising or self.stabilized or self.dropped or self.rekinded)

    def summary(self) -> str:
        """Return what changed in a few words: ``pinned 2 assertions, expected 1 exception``."""
        counts = [("pinned", len(self.pinned), "assertion"), ("qualified", len(self.qualified), "name"),
                  ("completed", len(self.completed), "assertion"),
                  ("dropped", len(self.dropped_args), "misplaced argument"),
                  ("cut", len(self.truncated), "test"), ("expected", len(self.raising), "exception"),
                  ("checked", sum(not s.said or not s.said[0].startswith("not deterministic")
                                  for s in self.stabilized), "unstable value"),
                  ("dropped", len(self.dropped), "unstable test"),
                  ("gave", len(self.rekinded), "value of the right kind")]
        said = [f"{verb} {n} {noun}{'' if n == 1 else 's'}" for verb, n, noun in counts if n]
        return ", ".join(said).replace("values of the right kind", "values of the right kinds") or "no change"

    def commit_message(self) -> str:
        """Return the message of the commit that carries the repaired file."""
        parts = [f"Repair: {self.summary()}"]
        if self.pinned:
            lines = ["Pinned to the values the code returned (review: they record what the code does, "
                     "not what it should do):"]
            lines += [f"- {p.test} (line {p.line}): expected {p.before} -> {p.after}" for p in self.pinned]
            parts.append("\n".join(lines))
        if self.qualified:
            parts.append("Qualified with the module under test: " + ", ".join(self.qualified))
        if self.dropped_args:
            parts.append("Removed a third argument that was no message at line(s) "
                         + ", ".join(str(n) for n in self.dropped_args))
        if self.completed:
            parts.append("Gave an equality assertion that had only one argument an expected value "
                         "to pin, at line(s) " + ", ".join(str(n) for n in self.completed))
        if self.truncated:
            parts.append("Cut before the first statement that failed (the statements before it pass): "
                         + ", ".join(self.truncated))
        if self.raising:
            parts.append("Expect the exception the module raised (review: recorded, not specified): "
                         + ", ".join(self.raising))
        if self.stabilized:
            lines = ["Values that differ between runs, checked by what every run agrees on instead:"]
            lines += [f"- {s.test} (line {s.line}): seen {', '.join(s.seen)}; "
                      f"checked: {', '.join(s.said) if s.said else 'the other checks'}"
                      for s in self.stabilized]
            parts.append("\n".join(lines))
        if self.dropped:
            lines = ["Dropped, no check holds in every run:"]
            lines += [f"- {d.test}: {d.reason}" for d in self.dropped]
            parts.append("\n".join(lines))
        if self.rekinded:
            lines = ["Python raised for a value of the wrong kind; given one of the kind the code uses:"]
            lines += [f"- {r.test}: {r.name} = {r.before} -> {r.after}" for r in self.rekinded]
            parts.append("\n".join(lines))
        if self.rerun is not None:
            parts.append(self.rerun.message_lines())
        return "\n\n".join(parts) + "\n"


def top_level_names(source_text: str) -> set[str]:
    """Return the names a module defines at its top level (functions, classes, assignments)."""
    try:
        tree = ast.parse(source_text)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


@dataclass
class _ModuleRefs:
    """How a test file refers to the module under test."""

    aliases: list[str] = field(default_factory=list)  # expressions that name the module itself
    names: set[str] = field(default_factory=set)  # names imported from it
    star: bool = False


def _module_refs(tree: ast.Module, module: str, destination: str) -> _ModuleRefs:
    refs = _ModuleRefs()
    package = module_of(destination).split(".")[:-1] if destination else []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == module:
                    refs.aliases.append(alias.asname or module)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                if origin == module:
                    if alias.name == "*":
                        refs.star = True
                    else:
                        refs.names.add(alias.asname or alias.name)
                elif f"{origin}.{alias.name}".lstrip(".") == module:
                    refs.aliases.append(alias.asname or alias.name)
    return refs


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base is not None else None
    return None


def _bound_names(tree: ast.Module) -> set[str]:
    """Return every name the file binds anywhere (scopes are not told apart: a safe over-count)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound


class _Edits:
    """Text replacements by syntax-tree positions (which count UTF-8 bytes), applied last to first."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.text = text
        self.edits: list[tuple[int, int, str]] = []

    def offset(self, line: int, col: int) -> int:
        prefix = self.lines[line - 1].encode("utf-8")[:col]
        return self.starts[line - 1] + len(prefix.decode("utf-8", "replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def replace(self, start: int, end: int, new: str) -> None:
        self.edits.append((start, end, new))

    def apply(self) -> str:
        text = self.text
        for start, end, new in sorted(self.edits, reverse=True):
            text = text[:start] + new + text[end:]
        return text


def qualify_names(test_source: str, source_text: str, module: str, destination: str
                  ) -> tuple[str, tuple[str, ...], int | None]:
    """Qualify bare names of the module under test that the test file never defines or imports.

    Returns the new text, the names qualified, and the number of the line inserted to import
    them (None when the file's own alias of the module was used, which moves no line).
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, (), None
    refs = _module_refs(tree, module, destination)
    if refs.star:
        return test_source, (), None
    defined = _bound_names(tree) | set(dir(builtins))
    wanted = top_level_names(source_text) - defined
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and n.id in wanted]
    if not uses:
        return test_source, (), None
    names = tuple(sorted({n.id for n in uses}))
    edits = _Edits(test_source)
    if refs.aliases:
        alias = refs.aliases[0]
        for use in uses:
            start, end = edits.span(use)
            edits.replace(start, end, f"{alias}.{use.id}")
        return edits.apply(), names, None
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    after = (imports[-1].end_lineno or imports[-1].lineno) if imports else 0
    line = f"from {module} import {', '.join(names)}\n"
    at = edits.starts[min(after, len(edits.lines))]
    if at == len(test_source) and test_source and not test_source.endswith("\n"):
        line = "\n" + line
    edits.replace(at, at, line)
    return edits.apply(), names, after + 1


def _calls_module(node: ast.AST, refs: _ModuleRefs, derived: set[str]) -> bool:
    """Return whether an expression calls something and refers to the module under test."""
    has_call = any(isinstance(n, ast.Call) for n in ast.walk(node))
    refers = False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and (sub.id in refs.names or sub.id in derived):
            refers = True
        elif isinstance(sub, (ast.Attribute, ast.Name)):
            dotted = _dotted(sub)
            if dotted is not None and any(dotted == a or dotted.startswith(a + ".") for a in refs.aliases):
                refers = True
        if refers:
            break
    derived_only = refers and not has_call and any(
        isinstance(n, ast.Name) and n.id in derived for n in ast.walk(node))
    return refers and (has_call or derived_only)


def _derived_names(function: ast.AST, refs: _ModuleRefs) -> set[str]:
    """Return the local names a function assigns from calls of the module under test (transitively)."""
    derived: set[str] = set()
    assigns = [n for n in ast.walk(function) if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value]
    changed = True
    while changed:
        changed = False
        for node in assigns:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assert node.value is not None
            if not _calls_module(node.value, refs, derived):
                continue
            for target in targets:
                for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                    if name not in derived:
                        derived.add(name)
                        changed = True
    return derived


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


def _assigned_value(function: ast.AST, name: str, before: int) -> ast.expr | None:
    """Return the value last assigned to a simple name before a line."""
    found: ast.expr | None = None
    for node in ast.walk(function):
        if (isinstance(node, ast.Assign) and node.lineno < before and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
                and (found is None or node.lineno > found.lineno)):
            found = node.value
    return found


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
            value = _assigned_value(function, side.id, call.lineno)
            dumps.append({ast.dump(side), ast.dump(value)} if value is not None else {ast.dump(side)})
        else:
            dumps.append({ast.dump(side)})
    return bool(dumps[0] & dumps[1])


def _asserts(function: ast.AST, besides: ast.stmt | None = None) -> bool:
    """Return whether a test calls an assertion (or has an ``assert``) besides one statement."""
    for node in ast.walk(function):
        if besides is not None and node is besides:
            continue
        if isinstance(node, ast.Assert):
            return True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith(("assert", "fail"))
                and (besides is None or not any(n is node for n in ast.walk(besides)))):
            return True
    return False


def _drop_span(tree: ast.Module, function: ast.AST, edits: _Edits) -> tuple[int, int, str, int]:
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
    refs = _module_refs(tree, module, destination)
    if refs.star:
        refs.names |= module_names
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    edits = _Edits(test_source)
    pins: list[Pin] = []
    dropped: list[int] = []
    stabilized: list[Stabilized] = []
    gone: list[Removed] = []
    shifts: list[tuple[int, int]] = []
    needs_os = False
    done: set[int] = set()
    for test, outcome in result.tests.items():
        if outcome.outcome != "failed":
            continue
        by_line: dict[int, list[Observation]] = {}
        for seen in outcome.observed:
            by_line.setdefault(seen.line, []).append(seen)
        planned: list[tuple[int, int, str]] = []  # this test's edits: all of them, or its drop
        test_pins: list[Pin] = []
        test_dropped: list[int] = []
        test_stable: list[Stabilized] = []
        test_shifts: list[tuple[int, int]] = []
        test_os = False
        drop: tuple[ast.AST, str] | None = None
        for line, seens in by_line.items():
            seen = seens[0]
            call, owner = _assertion_at(functions, line)
            if call is None or owner is None or id(call) in done or len(call.args) < 2:
                continue
            statement = _statement_of(owner, call)
            if statement is not None and _same_computation(call, owner):
                # Two calls with the same input differ: the determinism check does not hold.
                done.add(id(call))
                if not _asserts(owner, statement):
                    drop = (owner, "two calls with the same input differ, and nothing else holds")
                    break
                span_start = edits.starts[statement.lineno - 1]
                span_end = edits.starts[min(statement.end_lineno or statement.lineno, len(edits.lines))]
                planned.append((span_start, span_end, ""))
                test_shifts.append(((statement.end_lineno or statement.lineno) + 1,
                                    -((statement.end_lineno or statement.lineno) - statement.lineno + 1)))
                seen_both = _shown(_samples(seens, 0) + _samples(seens, 1))
                test_stable.append(Stabilized(test, line, seen_both,
                                              ("not deterministic: that check taken out",)))
                continue
            derived = _derived_names(owner, refs)
            sides = [_calls_module(arg, refs, derived) for arg in call.args[:2]]
            if sides.count(True) != 1:
                continue
            actual = sides.index(True)
            expected = call.args[1 - actual]
            start, end = edits.span(expected)
            before = test_source[start:end]
            samples = _samples(seens, actual)
            if (test, line) in skip:  # pinned before, and failing again
                samples.append(Sample(before, literal_facts(before)))
            if statement is not None and ((test, line) in skip or differ(samples)):
                done.add(id(call))
                stable = _stable(test_source, call, owner, actual, samples, module, refs, derived)
                if not stable.lines:
                    drop = (owner, f"its value differs between runs ({', '.join(_shown(samples))}) "
                                   "and no type or property holds in every run")
                    break
                indent = " " * statement.col_offset
                span_start = edits.starts[statement.lineno - 1]
                span_end = edits.starts[min(statement.end_lineno or statement.lineno, len(edits.lines))]
                planned.append((span_start, span_end, "".join(f"{indent}{x}\n" for x in stable.lines)))
                last = statement.end_lineno or statement.lineno
                test_shifts.append((last + 1, len(stable.lines) - (last - statement.lineno + 1)))
                test_stable.append(Stabilized(test, line, _shown(samples), stable.said))
                test_os = test_os or stable.needs_os
                continue
            observed = seen.first if actual == 0 else seen.second
            if observed is None:
                type_name = seen.first_type if actual == 0 else seen.second_type
                kind = _type_expression(type_name, module, refs)
                named = foreign_type_name(type_name)
                method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
                if (kind is None and named is None) or method not in _EQUALITY or not isinstance(
                        call.func, ast.Attribute):
                    continue
                # No literal to pin: the type of what the code returned is checked instead, by
                # its name when the file has none for it (another package's class).
                call_start, call_end = edits.span(call)
                first_start, first_end = edits.span(call.args[actual])
                owner_start, owner_end = edits.span(call.func.value)
                done.add(id(call))
                checked, value = test_source[owner_start:owner_end], test_source[first_start:first_end]
                planned.append((call_start, call_end,
                                f"{checked}.assertIsInstance({value}, {kind})" if kind is not None
                                else f"{checked}.assertEqual(type({value}).__name__, {named!r})"))
                test_pins.append(Pin(test, seen.line, before,
                                     f"an instance of {kind}" if kind is not None else f"a {named}"))
                continue
            if before == observed:
                continue
            done.add(id(call))
            planned.append((start, end, observed))
            test_pins.append(Pin(test, seen.line, before, observed))
            method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
            if len(call.args) >= 3 and method not in _ALMOST and _not_a_message(call.args[2]):
                _, second_end = edits.span(call.args[1])
                _, third_end = edits.span(call.args[2])
                planned.append((second_end, third_end, ""))
                test_dropped.append(call.lineno)
        if drop is not None:
            function, reason = drop
            drop_start, drop_end, keep, first = _drop_span(tree, function, edits)
            edits.replace(drop_start, drop_end, keep)
            last = function.end_lineno or function.lineno  # type: ignore[attr-defined]
            shifts.append((last + 1, (1 if keep else 0) - (last - first + 1)))
            gone.append(Removed(test, reason))
            continue
        for edit in planned:
            edits.replace(*edit)
        pins += test_pins
        dropped += test_dropped
        stabilized += test_stable
        shifts += test_shifts
        needs_os = needs_os or test_os
    if needs_os and "os" not in _bound_names(tree):
        edits.replace(0, 0, "import os\n")
        shifts.append((1, 1))
    return _PinStep(edits.apply(), tuple(pins), tuple(dropped), tuple(stabilized), tuple(gone), tuple(shifts))


def _samples(seens: list[Observation], side: int) -> list[Sample]:
    """Return one side of the observations of an assertion, one sample per run."""
    return [Sample(s.first, s.first_facts) if side == 0 else Sample(s.second, s.second_facts) for s in seens]


def _stable(test_source: str, call: ast.Call, function: ast.AST, actual: int, samples: list[Sample],
            module: str, refs: _ModuleRefs, derived: set[str]) -> Stable:
    """Return the checks every sample of an assertion's actual side agrees on (``stable_checks``)."""
    owner = (ast.get_source_segment(test_source, call.func.value) if isinstance(call.func, ast.Attribute)
             else None)
    side = call.args[actual]
    text = ast.get_source_segment(test_source, side) or ""
    again: str | None = None
    if isinstance(side, ast.Name):
        value = _assigned_value(function, side.id, call.lineno)
        if value is not None and _calls_module(value, refs, derived - {side.id}):
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


def _type_expression(name: str | None, module: str, refs: _ModuleRefs) -> str | None:
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
    refs = _module_refs(tree, module, destination)
    if refs.star:
        refs.names |= module_names
    edits = _Edits(test_source)
    lines: list[int] = []
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        derived = _derived_names(function, refs)
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _EQUALITY and len(node.args) == 1 and not node.keywords):
                continue
            if isinstance(node.args[0], ast.Starred) or not _calls_module(node.args[0], refs, derived):
                continue
            _, end = edits.span(node.args[0])
            edits.replace(end, end, ", None")
            lines.append(node.lineno)
    return edits.apply(), tuple(sorted(lines))


def truncate_tests(test_source: str, result: VerifyResult, source: str, destination: str,
                   *, module_names: frozenset[str] = frozenset()
                   ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Cut each failing or erring test at the statement that failed.

    A test stops at its first problem, so what runs before it passes: when statements precede
    the failing one, the test is cut before it (the prune would otherwise remove the whole
    method). When the first statement itself (or the first after statements that only bind
    values, without calling the module) raised while the module under test ran (its
    traceback passes through the source), it becomes ``with self.assertRaises(E):`` around the call,
    the regression oracle for exceptions, if ``E`` is a builtin or a name of the module.

    Returns the new text, the ids of the tests cut, and those that now expect an exception.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, (), ()
    name = re.escape(PurePosixPath(destination).name)
    frame = re.compile(rf'File "[^"]*{name}", line (\d+)')
    any_frame = re.compile(r'File "([^"]*)", line \d+')
    refs = _module_refs(tree, module_of(source), destination)
    alias = refs.aliases[0] if refs.aliases else None
    edits = _Edits(test_source)
    cut: list[str] = []
    raising: list[str] = []
    methods = {(c.name, f.name): f for c in tree.body if isinstance(c, ast.ClassDef)
               for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    # A cut test that would repeat another test's statements adds nothing: the prune removes it.
    bodies = {_statements(test_source, f.body) for f in methods.values()}
    for test, outcome in result.tests.items():
        if outcome.outcome not in ("failed", "error") or outcome.flaky:
            continue
        found = _failing_statement(test, outcome.detail, methods, frame)
        if found is None:
            continue
        function, index = found
        end = edits.starts[min(function.end_lineno or function.lineno, len(edits.lines))]
        derived = _derived_names(function, refs)
        files = any_frame.findall(outcome.detail)
        exception = _exception_name(outcome.detail, module_names, alias)
        statement = function.body[index]
        call = _module_call(statement, refs, derived)
        # Raised while the module ran: its traceback passes through the source (the module may
        # have passed the bad value on to the standard library, which raised).
        raised_inside = (outcome.outcome == "error" and any(_same_file(f, source) for f in files)
                         and exception is not None and call is not None)
        # Statements before it that only bind values (no call of the module) set up the call:
        # cutting there would leave a test that runs no module code.
        setup_only = all(_module_call(s, refs, derived) is None for s in function.body[:index])
        if index > 0 and not (raised_inside and setup_only):
            kept = _statements(test_source, function.body[:index])
            if kept in bodies or setup_only or not any(_asserts(s) for s in function.body[:index]):
                # A repeat, bindings alone that run no module code, or calls that check nothing
                # (the assertion cut was the test's only check): the prune's.
                continue
            bodies.add(kept)
            edits.replace(edits.starts[function.body[index].lineno - 1], end, "")
            cut.append(test)
            continue
        if not raised_inside or call is None:
            continue
        start, stop = edits.span(call)
        indent = " " * statement.col_offset
        body = test_source[start:stop]
        edits.replace(edits.starts[statement.lineno - 1], end,
                      f"{indent}with self.assertRaises({exception}):\n{indent}    {body}\n")
        raising.append(test)
    return edits.apply(), tuple(cut), tuple(raising)


# Exceptions Python raises for a value of the wrong kind: a test that only expects one records
# that Python rejects the value, not what the module's author wrote.
WRONG_KIND = ("TypeError", "AttributeError")
# A value of each kind the code uses (``params.value_kind``), when the code compares the parameter
# with no constant of that kind. The fixture's names exist only in a file that has its setUp.
_KIND_VALUES = {"str": "'abc'", "bytes": "b'abc'", "list": "[1, 2, 3]", "strlist": "['a', 'b']",
                "dict": "{'a': 1}", "tuple": "(1, 2)", "number": "1",
                "callable": "lambda *args, **kwargs: None", "class": "object",
                "path": "self.path", "folder": "self.folder"}
_KIND_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "bytes": (bytes,), "list": (list,),
                                            "strlist": (list,), "dict": (dict,), "tuple": (tuple,),
                                            "number": (int, float), "path": (str,), "folder": (str,)}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def _raised_by_source(detail: str, source: str) -> bool:
    """Return whether a traceback's innermost frame is a ``raise`` statement of the source."""
    lines = detail.splitlines()
    frames = [i for i, line in enumerate(lines) if re.match(r'\s*File "[^"]*", line \d+', line)]
    if not frames:
        return False
    last = frames[-1]
    path = re.match(r'\s*File "([^"]*)"', lines[last])
    code = lines[last + 1].strip() if last + 1 < len(lines) else ""
    return path is not None and _same_file(path.group(1), source) and code.startswith("raise")


def numeric_parameter(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """Return whether the code does arithmetic with a parameter or orders it against a number."""
    def is_param(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    for node in ast.walk(function):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            if ((is_param(node.left) and is_number(node.right))
                    or (is_param(node.right) and is_number(node.left))):
                return True
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE))
                                                   for op in node.ops):
            sides = [node.left, *node.comparators]
            if any(is_param(side) for side in sides) and any(is_number(side) for side in sides):
                return True
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("range", "abs", "round") and any(is_param(a) for a in node.args)):
            return True
    return False


def _called_definition(call: ast.Call, function: ast.AST, alias: str | None, source_tree: ast.Module
                       ) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool] | None:
    """Return the module's function a test's call runs and whether its first parameter is skipped."""

    func = call.func
    if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
        return None
    if func.value.id == alias:
        found = definition(source_tree, func.attr)
        if found is not None:
            return found, False
        init = definition(source_tree, "__init__", func.attr)
        return (init, True) if init is not None else None
    built = _assigned_value(function, func.value.id, call.lineno)
    if (isinstance(built, ast.Call) and isinstance(built.func, ast.Attribute)
            and isinstance(built.func.value, ast.Name) and built.func.value.id == alias):
        method = definition(source_tree, func.attr, built.func.attr)
        return (method, True) if method is not None else None
    return None


def _kind_value(source_tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                fixture: bool, alias: str | None = None) -> tuple[str, str] | None:
    """Return the kind of value a parameter holds and a value of that kind, or None.

    A class is the first one the code checks the parameter against (``class_values``: a branch
    of its own), else ``object``.
    """

    kind = value_kind(source_tree, function, name) or (
        "number" if numeric_parameter(function, name) else "")
    if kind not in _KIND_VALUES or (kind in ("path", "folder") and not fixture):
        return None
    if kind == "class":
        return kind, next(iter(class_values(source_tree, function, name, alias or "")), _KIND_VALUES[kind])
    # A number the code orders against is a boundary (the variants' to try): a plain one instead.
    types = _KIND_TYPES.get(kind, ()) if kind != "number" else ()
    for constant in constant_values(source_tree, function, name):
        if isinstance(ast.literal_eval(constant), types) and not isinstance(ast.literal_eval(constant), bool):
            return kind, constant
    return kind, _KIND_VALUES[kind]


def _of_kind(value: ast.expr, kind: str) -> bool:
    """Return whether a written value already is of a kind (a name or call: assume so)."""
    if kind in ("callable", "class"):
        return not isinstance(value, ast.Constant)
    try:
        current = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return True
    if kind in ("path", "folder"):
        return False  # a literal is no file the test made
    return isinstance(current, _KIND_TYPES[kind]) and not isinstance(current, bool)


def rekind_arguments(test_source: str, result: VerifyResult, source_text: str, destination: str,
                     *, retried: frozenset[str] = frozenset()) -> tuple[str, tuple[Rekinded, ...]]:
    """Give the arguments of a call that Python rejected a value of the kind the code uses.

    A test whose call raised ``TypeError`` or ``AttributeError`` that no ``raise`` of the module
    wrote (``len(1)``, ``'10' + 1``) would otherwise expect that error: a test that records that
    Python rejects a value. Before that last resort, each argument of the call whose value is
    not of the kind the code uses (``params.value_kind``, else arithmetic with numbers) is given
    one that is: a constant the code compares it with, else a plain value of the kind. Once per
    test (``retried``): if it raises again, the error is expected.

    Returns the new text and the values changed.
    """
    try:
        tree = ast.parse(test_source)
        source_tree = ast.parse(source_text)
    except SyntaxError:
        return test_source, ()
    name = re.escape(PurePosixPath(destination).name)
    frame = re.compile(rf'File "[^"]*{name}", line (\d+)')
    refs = _module_refs(tree, module_of(result.source), destination)
    alias = refs.aliases[0] if refs.aliases else None
    fixture = "self.path =" in test_source
    edits = _Edits(test_source)
    changed: list[Rekinded] = []
    methods = {(c.name, f.name): f for c in tree.body if isinstance(c, ast.ClassDef)
               for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for test, outcome in result.tests.items():
        if outcome.outcome != "error" or outcome.flaky or test in retried:
            continue
        if _exception_name(outcome.detail, frozenset(), None) not in WRONG_KIND:
            continue
        if _raised_by_source(outcome.detail, result.source):
            continue
        failing = _failing_statement(test, outcome.detail, methods, frame)
        if failing is None:
            continue
        function, index = failing
        statement = function.body[index]
        call = _module_call(statement, refs, _derived_names(function, refs))
        if not isinstance(call, ast.Call):
            continue
        for value_start, value_end, value, change in _rekind_call(
                call, function, statement.lineno, alias, source_tree, fixture, edits, test, test_source):
            edits.replace(value_start, value_end, value)
            changed.append(change)
    # A passing test that only expects Python's error for a wrong-kind value: the call again,
    # with values of the kind the code uses, and its result to pin.
    for test, outcome in result.tests.items():
        if outcome.outcome != "passed" or outcome.flaky or not outcome.records_error or test in retried:
            continue
        parts = test.split(".")
        method = methods.get((parts[-2], parts[-1])) if len(parts) >= 2 else None
        if method is None:
            continue
        function = method
        for block in function.body:
            if not _expects_wrong_kind(block):
                continue
            assert isinstance(block, ast.With)
            inner = block.body[0]
            call = _module_call(inner, refs, _derived_names(function, refs))
            if not isinstance(call, ast.Call):
                continue
            found = _rekind_call(call, function, block.lineno, alias, source_tree, fixture, edits, test,
                                 test_source)
            if not found:
                continue
            block_start, block_end = edits.starts[block.lineno - 1], edits.starts[
                min(block.end_lineno or block.lineno, len(edits.lines))]
            call_start, call_end = edits.span(call)
            text = test_source[call_start:call_end]
            for value_start, value_end, value, change in sorted(found, key=lambda f: f[0], reverse=True):
                if call_start <= value_start and value_end <= call_end:
                    offset = value_start - call_start
                    text = text[:offset] + value + text[offset + value_end - value_start:]
                else:
                    edits.replace(value_start, value_end, value)
                changed.append(change)
            indent = " " * block.col_offset
            edits.replace(block_start, block_end, f"{indent}result = {text}\n"
                                                  f"{indent}self.assertEqual(result, None)\n")
            break
    return edits.apply(), tuple(changed)


def _expects_wrong_kind(statement: ast.stmt) -> bool:
    """Return whether a statement is ``with self.assertRaises(TypeError or AttributeError):`` and
    one statement."""
    if not isinstance(statement, ast.With) or len(statement.items) != 1 or len(statement.body) != 1:
        return False
    context = statement.items[0].context_expr
    return (isinstance(context, ast.Call) and isinstance(context.func, ast.Attribute)
            and context.func.attr == "assertRaises" and len(context.args) == 1
            and isinstance(context.args[0], ast.Name) and context.args[0].id in WRONG_KIND)


def _rekind_call(call: ast.Call, function: ast.FunctionDef | ast.AsyncFunctionDef, line: int,
                 alias: str | None, source_tree: ast.Module, fixture: bool, edits: _Edits, test: str,
                 test_source: str) -> list[tuple[int, int, str, Rekinded]]:
    """Return the replacements that give a call's wrong-kind arguments a value of their kind."""
    called = _called_definition(call, function, alias, source_tree)
    if called is None:
        return []
    definition, skip_first = called
    parameters = [a.arg for a in [*definition.args.posonlyargs, *definition.args.args]][int(skip_first):]
    passed = [*((parameters[i], a) for i, a in enumerate(call.args) if i < len(parameters)),
              *((k.arg, k.value) for k in call.keywords if k.arg)]
    found: list[tuple[int, int, str, Rekinded]] = []
    for parameter, argument in passed:
        value: ast.expr | None = argument
        label = parameter
        if isinstance(argument, ast.Name):
            value = _assigned_value(function, argument.id, line)
            label = argument.id
        kind = _kind_value(source_tree, definition, parameter, fixture, alias) if value is not None else None
        if value is None or kind is None or _of_kind(value, kind[0]):
            continue
        start, end = edits.span(value)
        found.append((start, end, kind[1], Rekinded(test, label, test_source[start:end], kind[1])))
    return found


_Methods = dict[tuple[str, str], ast.FunctionDef | ast.AsyncFunctionDef]


def _failing_statement(test: str, detail: str, methods: _Methods, frame: re.Pattern[str]
                       ) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, int] | None:
    """Return a test's method and the index of the statement its traceback stopped in, or None."""
    parts = test.split(".")
    function = methods.get((parts[-2], parts[-1])) if len(parts) >= 2 else None
    lines = [int(n) for n in frame.findall(detail)]
    if function is None or not lines:
        return None
    index = next((i for i, statement in enumerate(function.body)
                  if statement.lineno <= lines[-1] <= (statement.end_lineno or statement.lineno)), None)
    return (function, index) if index is not None else None


def _statements(text: str, body: list[ast.stmt]) -> str:
    """Return the source of statements, one per line, for comparing test bodies."""
    return "\n".join(ast.get_source_segment(text, statement) or "" for statement in body)


def _same_file(frame: str, source: str) -> bool:
    """Return whether a traceback's file (relative to the checkout, or absolute) is the source."""
    return frame == source or frame.endswith("/" + source)


def _exception_name(detail: str, module_names: frozenset[str], alias: str | None) -> str | None:
    """Return how the test file can name the exception a traceback ends with, or None."""
    last = [line for line in detail.strip().splitlines() if line and not line.startswith(" ")]
    if not last:
        return None
    match = re.match(r"([A-Za-z_][\w.]*)(?::|$)", last[-1])
    if match is None:
        return None
    qualified = match.group(1)
    short = qualified.rsplit(".", 1)[-1]
    value = getattr(builtins, short, None)
    if isinstance(value, type) and issubclass(value, Exception) and "." not in qualified:
        return short
    if alias is not None and short in module_names:
        return f"{alias}.{short}"
    return None


def _module_call(statement: ast.stmt, refs: _ModuleRefs, derived: set[str]) -> ast.expr | None:
    """Return the expression of a statement that calls the module: an assertion's actual side,
    an assigned value, or the expression itself."""
    if isinstance(statement, ast.Expr):
        value = statement.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and value.func.attr.startswith("assert")):
            sides = [a for a in value.args[:2] if _calls_module(a, refs, derived)]
            return sides[0] if len(sides) == 1 else None
        return value if _calls_module(value, refs, derived) else None
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        return statement.value if _calls_module(statement.value, refs, derived) else None
    return None


def _not_a_message(node: ast.expr) -> bool:
    """Return whether an argument in the ``msg`` position is a literal that is no string."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return not isinstance(value, str)


def _assertion_at(functions: list[ast.FunctionDef | ast.AsyncFunctionDef], line: int
                  ) -> tuple[ast.Call | None, ast.AST | None]:
    """Return the innermost equality-assertion call spanning a line, and its function."""
    best: tuple[int, ast.Call, ast.AST] | None = None
    for function in functions:
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _EQUALITY):
                continue
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end and (best is None or end - node.lineno < best[0]):
                best = (end - node.lineno, node, function)
    return (best[1], best[2]) if best else (None, None)


def repair(
    test_source: str, result: VerifyResult, source_text: str, destination: str,
    *, skip: frozenset[tuple[str, int]] = frozenset(), retried: frozenset[str] = frozenset(),
) -> RepairResult:
    """Apply the repairs once to a verified test file's text (no run).

    Args:
        test_source: the test file as verified.
        result: its verification result (observed values come from the built-in runner).
        source_text: the module under test's code (its top-level names).
        destination: the test file's repository path.
        skip: (test id, line) pairs pinned before: failing again, their value is unstable.
        retried: tests already given a value of the right kind once (the next wrong-kind error
            they raise is expected, as the last resort).
    """
    module = module_of(result.source)
    names = frozenset(top_level_names(source_text))
    step = pin_values(test_source, result, module, destination, module_names=names, skip=skip)
    pins, dropped = step.pins, step.dropped_args
    completed_text, completed = complete_assertions(step.text, module, destination, module_names=names)
    text, qualified, inserted = qualify_names(completed_text, source_text, module, destination)
    if not (pins or dropped or completed or qualified or step.stabilized or step.dropped):
        # Only when nothing else applies: the lines of the traceback are those of this text.
        text, rekinded = rekind_arguments(text, result, source_text, destination, retried=retried)
        if rekinded:
            return RepairResult(text, destination, rekinded=rekinded)
        text, truncated, raising = truncate_tests(text, result, result.source, destination,
                                                  module_names=names)
        return RepairResult(text, destination, truncated=truncated, raising=raising)
    shifts = step.shifts
    if inserted is not None:  # keep the pins' lines those of the new text
        pins = tuple(replace(p, line=p.line + 1) if p.line >= inserted else p for p in pins)
        dropped = tuple(n + 1 if n >= inserted else n for n in dropped)
        completed = tuple(n + 1 if n >= inserted else n for n in completed)
        shifts += ((inserted, 1),)
    return RepairResult(text, destination, pins, qualified, dropped, completed,
                        stabilized=step.stabilized, dropped=step.dropped, shifts=shifts)


def repair_candidate(
    repo: GitRepo,
    commit: str,
    spec: VerifySpec,
    source: str,
    destination: str,
    result: VerifyResult,
    *,
    rounds: int = DEFAULT_ROUNDS,
    sandbox: Sandbox | None = None,
    limits: Limits | None = None,
) -> RepairResult:
    """Repair a verified candidate, re-running it after each round until nothing more applies.

    A test stops at its first failing assertion, so pinning one shows the next: each round pins
    what the previous run observed. The caller commits ``text`` with ``commit_message()``.

    Args:
        repo: the repository holding the commit.
        commit: the candidate commit (its source file is read from it).
        spec: the template's verify section.
        source: the module under test, a repository path.
        destination: the test file, a repository path.
        result: the candidate's first verification.
        rounds: at most this many repair-and-run rounds.
        sandbox: where the re-runs happen; default: bubblewrap.
        limits: memory, process and file-size limits.
    """
    entry = repo.tree_entry(commit, destination)
    text = repo.read_blob_bytes(entry.oid).decode("utf-8", "replace") if entry else ""
    source_entry = repo.tree_entry(commit, source)
    source_text = repo.read_blob_bytes(source_entry.oid).decode("utf-8", "replace") if source_entry else ""

    def run(content: str) -> VerifyResult:
        return verify_candidate(repo, commit, spec, source, destination, content=content,
                                sandbox=sandbox, limits=limits)

    return repair_rounds(text, result, source_text, destination, run, rounds=rounds)


def repair_rounds(
    text: str,
    result: VerifyResult,
    source_text: str,
    destination: str,
    run: Callable[[str], VerifyResult],
    *,
    rounds: int = DEFAULT_ROUNDS,
) -> RepairResult:
    """Repair a test file and re-run it with ``run`` after each round, until nothing applies.

    Args:
        text: the test file as verified.
        result: its verification.
        source_text: the module under test's code.
        destination: the test file's repository path.
        run: verifies a new text of the test file.
        rounds: at most this many repair-and-run rounds.
    """
    total = RepairResult(text, destination)
    pinned_at: set[tuple[str, int]] = set()
    retried: set[str] = set()
    current = result
    for _ in range(rounds):
        step = repair(total.text, current, source_text, destination, skip=frozenset(pinned_at),
                      retried=frozenset(retried))
        if not step.changed:
            break
        # A pin's line in the text the next run reports: edits above it moved it.
        pinned_at = {(test, line + sum(delta for at, delta in step.shifts if line >= at))
                     for test, line in pinned_at}
        pinned_at.update((p.test, p.line) for p in step.pinned)
        retried.update(r.test for r in step.rekinded)
        current = run(step.text)
        total = replace(total, text=step.text, pinned=total.pinned + step.pinned,
                        qualified=tuple(sorted({*total.qualified, *step.qualified})),
                        dropped_args=total.dropped_args + step.dropped_args,
                        completed=total.completed + step.completed,
                        truncated=total.truncated + step.truncated,
                        raising=total.raising + step.raising,
                        stabilized=total.stabilized + step.stabilized,
                        dropped=total.dropped + step.dropped,
                        rekinded=total.rekinded + step.rekinded, rerun=current)
    return total
