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

from symergion.config import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.names import module_of
from symergion.verify.result import VerifyResult
from symergion.verify.runner import EQUALITY_ASSERTIONS
from symergion.verify.sandbox import Limits, Sandbox

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
    rerun: VerifyResult | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        """Return whether the file was edited."""
        return bool(self.pinned or self.qualified or self.dropped_args or self.completed or self.truncated
                    or self.raising)

    def summary(self) -> str:
        """Return what changed in a few words: ``pinned 2 assertions, expected 1 exception``."""
        counts = [("pinned", len(self.pinned), "assertion"), ("qualified", len(self.qualified), "name"),
                  ("completed", len(self.completed), "assertion"),
                  ("dropped", len(self.dropped_args), "misplaced argument"),
                  ("cut", len(self.truncated), "test"), ("expected", len(self.raising), "exception")]
        said = [f"{verb} {n} {noun}{'' if n == 1 else 's'}" for verb, n, noun in counts if n]
        return ", ".join(said) or "no change"

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


def pin_assertions(
    test_source: str, result: VerifyResult, module: str, destination: str,
    *, module_names: frozenset[str] = frozenset(), skip: frozenset[tuple[str, int]] = frozenset(),
) -> tuple[str, tuple[Pin, ...], tuple[int, ...]]:
    """Set the expected side of failing equality assertions to the observed actual value.

    Args:
        test_source: the test file as verified.
        result: its verification, with the values the runner observed.
        module: the dotted module under test.
        destination: the test file's path (resolves relative imports).
        module_names: the module's top-level names (what ``from module import *`` brings).
        skip: (test id, line) pairs not to pin again (pinned before and failing still).

    Returns:
        The new text, the pins, and the lines where a misplaced third argument was removed.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, (), ()
    refs = _module_refs(tree, module, destination)
    if refs.star:
        refs.names |= module_names
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    edits = _Edits(test_source)
    pins: list[Pin] = []
    dropped: list[int] = []
    done: set[int] = set()
    for test, outcome in result.tests.items():
        if outcome.outcome != "failed":
            continue
        for seen in outcome.observed:
            if (test, seen.line) in skip:
                continue
            call, owner = _assertion_at(functions, seen.line)
            if call is None or id(call) in done or len(call.args) < 2:
                continue
            derived = _derived_names(owner, refs) if owner is not None else set()
            sides = [_calls_module(arg, refs, derived) for arg in call.args[:2]]
            if sides.count(True) != 1:
                continue
            actual = sides.index(True)
            observed = seen.first if actual == 0 else seen.second
            if observed is None:
                kind = _type_expression(seen.first_type if actual == 0 else seen.second_type, module, refs)
                method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
                if kind is None or method not in _EQUALITY or not isinstance(call.func, ast.Attribute):
                    continue
                # No literal to pin: the type of what the code returned is checked instead.
                start, end = edits.span(call)
                first_start, first_end = edits.span(call.args[actual])
                owner_start, owner_end = edits.span(call.func.value)
                done.add(id(call))
                edits.replace(start, end, f"{test_source[owner_start:owner_end]}.assertIsInstance("
                                          f"{test_source[first_start:first_end]}, {kind})")
                expected_start, expected_end = edits.span(call.args[1 - actual])
                pins.append(Pin(test, seen.line, test_source[expected_start:expected_end],
                                f"an instance of {kind}"))
                continue
            expected = call.args[1 - actual]
            start, end = edits.span(expected)
            before = test_source[start:end]
            if before == observed:
                continue
            done.add(id(call))
            edits.replace(start, end, observed)
            pins.append(Pin(test, seen.line, before, observed))
            method = call.func.attr if isinstance(call.func, ast.Attribute) else ""
            if len(call.args) >= 3 and method not in _ALMOST and _not_a_message(call.args[2]):
                _, second_end = edits.span(call.args[1])
                _, third_end = edits.span(call.args[2])
                edits.replace(second_end, third_end, "")
                dropped.append(call.lineno)
    return edits.apply(), tuple(pins), tuple(dropped)


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
        parts = test.split(".")
        function = methods.get((parts[-2], parts[-1])) if len(parts) >= 2 else None
        lines = [int(n) for n in frame.findall(outcome.detail)]
        if function is None or not lines:
            continue
        index = next((i for i, statement in enumerate(function.body)
                      if statement.lineno <= lines[-1] <= (statement.end_lineno or statement.lineno)), None)
        if index is None:
            continue
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
            if kept in bodies or setup_only:
                continue  # a repeat, or bindings alone that run no module code: the prune's
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
    *, skip: frozenset[tuple[str, int]] = frozenset(),
) -> RepairResult:
    """Apply both repairs once to a verified test file's text (no run).

    Args:
        test_source: the test file as verified.
        result: its verification result (observed values come from the built-in runner).
        source_text: the module under test's code (its top-level names).
        destination: the test file's repository path.
        skip: (test id, line) pairs not to pin again.
    """
    module = module_of(result.source)
    names = frozenset(top_level_names(source_text))
    pinned_text, pins, dropped = pin_assertions(test_source, result, module, destination,
                                                module_names=names, skip=skip)
    completed_text, completed = complete_assertions(pinned_text, module, destination, module_names=names)
    text, qualified, inserted = qualify_names(completed_text, source_text, module, destination)
    if not (pins or dropped or completed or qualified):
        # Only when nothing else applies: the lines of the traceback are those of this text.
        text, truncated, raising = truncate_tests(text, result, result.source, destination,
                                                  module_names=names)
        return RepairResult(text, destination, truncated=truncated, raising=raising)
    if inserted is not None:  # keep the pins' lines those of the new text
        pins = tuple(replace(p, line=p.line + 1) if p.line >= inserted else p for p in pins)
        dropped = tuple(n + 1 if n >= inserted else n for n in dropped)
        completed = tuple(n + 1 if n >= inserted else n for n in completed)
    return RepairResult(text, destination, pins, qualified, dropped, completed)


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
    current = result
    for _ in range(rounds):
        step = repair(total.text, current, source_text, destination, skip=frozenset(pinned_at))
        if not step.changed:
            break
        pinned_at.update((p.test, p.line) for p in step.pinned)
        current = run(step.text)
        total = replace(total, text=step.text, pinned=total.pinned + step.pinned,
                        qualified=tuple(sorted({*total.qualified, *step.qualified})),
                        dropped_args=total.dropped_args + step.dropped_args,
                        completed=total.completed + step.completed,
                        truncated=total.truncated + step.truncated,
                        raising=total.raising + step.raising, rerun=current)
    return total
