"""Keep what passes and checks: cut failing, erring and flaky test methods out of a test file,
and passing ones that called no assertion (they pass whatever the code returns).

Methods (and classes left without tests) are cut by their line ranges, with the comments and
blank lines just above them, so every other byte of the file stays as the model wrote it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.kinds import UNITTEST, TestKind, is_test, kind_of
from symergion.verify.names import imports_module, module_of
from symergion.verify.result import TestOutcome, VerifyResult, problem_line
from symergion.verify.sandbox import Limits, Sandbox

# The reason a passing test that called no assertion is removed.
UNCHECKED = "asserts nothing"
_FIXTURE = re.compile(r"(setUpClass|tearDownClass|setUpModule|tearDownModule) \(([\w.]+)\)")


@dataclass(frozen=True)
class Removed:
    """A test taken out of the file, and why."""

    test: str
    reason: str


@dataclass(frozen=True)
class PruneResult:
    """The pruned file, what was removed, and whether a re-run confirmed it."""

    text: str
    destination: str
    removed: tuple[Removed, ...] = ()
    drop_reason: str = ""
    rerun: VerifyResult | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        """Return whether there is anything to commit: tests removed or the file to drop."""
        return bool(self.removed or self.drop_reason)

    @property
    def confirmed(self) -> bool:
        """Return whether the pruned file was re-run and passed."""
        return self.rerun is not None and self.rerun.ok

    def commit_message(self) -> str:
        """Return the message of the commit that carries the pruned file."""
        count = len(self.removed)
        noun = "test" if count == 1 else "tests"
        if self.drop_reason:
            subject = f"Prune: removed {self.destination} ({self.drop_reason})"
        else:
            passing = any(r.reason == "adds no coverage" or r.reason.startswith(("passed without", UNCHECKED))
                          for r in self.removed)
            subject = f"Prune: removed {count} {noun if passing else 'failing ' + noun}"
        lines = [f"- {r.test}: {r.reason}" for r in self.removed]
        body = "\n".join(lines)
        parts = [subject, body] if body else [subject]
        if self.rerun is not None:
            parts.append(self.rerun.message_lines())
        return "\n\n".join(parts) + "\n"


def redundant_tests(result: VerifyResult) -> list[str]:
    """Return passing tests that run no line of the source that the other tests kept do not.

    Only tests that ran module code and called an assertion are weighed (``idle`` and the
    unchecked rule are for the others). Tests that only record a wrong-kind error go first, then
    later tests (by id, so ``test_f_2`` before ``test_f``): of several tests that run the same
    lines, one that checks a value stays, and of those the first written.
    """
    if result.statements is None:
        return []
    kept = {t: set(result.lines[t]) for t, o in result.tests.items()
            if o.outcome == "passed" and not o.flaky and result.lines.get(t) and o.asserts}
    dropped: list[str] = []
    order = sorted(sorted(kept, reverse=True), key=lambda t: not result.tests[t].records_error)
    for test in order:
        others = set().union(*(lines for other, lines in kept.items() if other != test))
        if kept[test] <= others:
            dropped.append(test)
            del kept[test]
    return dropped


def prune(test_source: str, result: VerifyResult, destination: str, *, idle: bool = False,
          redundant: bool = False, kind: TestKind = UNITTEST) -> PruneResult:
    """Remove the tests that failed, erred or were flaky in ``result`` from the test file's text.

    Args:
        test_source: the test file as verified.
        result: its verification result (per-test outcomes come from the built-in runner).
        destination: the test file's repository path; its module prefixes the test ids.
        idle: also remove passing tests that ran no line of the source (only when coverage was
            measured): they pass whatever the code does, so they test nothing.
        redundant: also remove passing tests that add no coverage to the others
            (``redundant_tests``): several candidates per target leave only the ones that count.
        kind: the kind of test file: pytest's module-level test functions are tests too (their
            ids are ``<module>.<function>``, a parametrized case's with its ``[...]`` suffix;
            one failing case takes the function out).
    """
    source_module = module_of(result.source)
    try:
        tree = ast.parse(test_source)
    except SyntaxError as exc:
        return PruneResult(test_source, destination, drop_reason=f"it does not parse: {exc.msg}")
    if result.load_error:
        return PruneResult(test_source, destination,
                           drop_reason=f"it cannot be imported: {problem_line(result.load_error)}")
    prefix = module_of(destination) + "."
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    functions = {node.name: node for node in tree.body if kind.top_level_tests
                 and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_test(node)}
    doomed_functions: dict[str, str] = {}  # module-level test -> test id
    doomed_methods: dict[str, dict[str, str]] = {}  # class -> method -> test id
    doomed_classes: dict[str, str] = {}  # class -> test id of its failing fixture
    removed: list[Removed] = []
    adds_nothing = set(redundant_tests(result)) if redundant else set()
    for test, outcome in result.tests.items():
        reason = _reason(test, outcome, result, idle=idle, adds_nothing=adds_nothing)
        if reason is None:
            continue
        if fixture := _FIXTURE.fullmatch(test):
            name = fixture.group(2)
            if fixture.group(1).endswith("Module"):
                return PruneResult(test_source, destination, drop_reason=f"{test} failed")
            if name.startswith(prefix) and name[len(prefix):] in classes:
                doomed_classes[name[len(prefix):]] = test
                removed.append(Removed(test, reason))
            continue
        if not test.startswith(prefix):
            continue
        name = test[len(prefix):].split("[", 1)[0]  # a parametrized case names its function
        if name in functions:
            if name not in doomed_functions:
                removed.append(Removed(test, reason))
            doomed_functions.setdefault(name, test)
            continue
        if name.count(".") != 1:
            continue
        cls, method = name.split(".")
        owner = _defining_class(classes, cls, method)
        if owner is not None:
            doomed_methods.setdefault(owner, {})[method] = test
            removed.append(Removed(test, reason))

    cuts = _cuts(classes, doomed_methods, doomed_classes)
    cuts += [functions[name] for name in doomed_functions]
    text = _cut(test_source, cuts)
    try:
        pruned = ast.parse(text)
    except SyntaxError:  # e.g. a class kept for its subclasses lost its whole body
        text, pruned = _rebuild(tree, cuts)
    reasons = []
    if not kind.tests(pruned):
        reasons.append("no passing tests left")
    if not imports_module(text, source_module, destination):
        reasons.append(f"it does not import {source_module}")
    return PruneResult(text, destination, tuple(removed), drop_reason="; ".join(reasons))


def _cuts(classes: dict[str, ast.ClassDef], doomed_methods: dict[str, dict[str, str]],
          doomed_classes: dict[str, str]) -> list[ast.stmt]:
    """Return the test methods to cut, or their whole class when it keeps no test (and is no base)."""
    bases = {b.id for node in classes.values() for b in node.bases if isinstance(b, ast.Name)}
    cuts: list[ast.stmt] = []
    for name, node in classes.items():
        methods = doomed_methods.get(name, {})
        tests = [s for s in node.body if is_test(s)]
        left = [s for s in tests if s.name not in methods]  # type: ignore[attr-defined]
        if name in doomed_classes or (methods and not left and name not in bases):
            cuts.append(node)
        else:
            cuts.extend(s for s in node.body if is_test(s) and s.name in methods)  # type: ignore[attr-defined]
    return cuts


def _reason(test: str, outcome: TestOutcome, result: VerifyResult, *, idle: bool,
            adds_nothing: set[str]) -> str | None:
    """Return why a test goes (``prune``'s rules), or None when it stays."""
    ran_nothing = (idle and result.statements is not None and outcome.outcome == "passed"
                   and not outcome.flaky and not result.lines.get(test))
    unchecked = outcome.outcome == "passed" and not outcome.flaky and not outcome.asserts
    if unchecked:
        return f"{UNCHECKED}: it passes whatever the code returns"
    if ran_nothing:
        return f"passed without running a line of {result.source}"
    if outcome.outcome in ("failed", "error") or outcome.flaky:
        return ("flaky: " if outcome.flaky else f"{outcome.outcome}: ") + problem_line(outcome.detail)
    if test in adds_nothing:
        return "adds no coverage"
    return None


def prune_candidate(
    repo: GitRepo,
    commit: str,
    spec: VerifySpec,
    source: str,
    destination: str,
    result: VerifyResult,
    *,
    sandbox: Sandbox | None = None,
    limits: Limits | None = None,
    idle: bool = False,
    redundant: bool = False,
) -> PruneResult:
    """Prune a verified candidate's test file and re-run the pruned file to confirm it passes.

    The re-run uses the candidate's commit with the pruned file in place of its test file; a file
    to drop is not re-run. The caller commits ``text`` (or the deletion) with ``commit_message()``.
    ``idle`` also removes passing tests that ran no line of the source, ``redundant`` those that
    add no coverage (see ``prune``).
    """
    entry = repo.tree_entry(commit, destination)
    original = repo.read_blob_bytes(entry.oid).decode("utf-8", "replace") if entry else ""
    pruned = prune(original, result, destination, idle=idle, redundant=redundant, kind=kind_of(spec))
    if not pruned.removed or pruned.drop_reason:
        return pruned
    rerun = verify_candidate(repo, commit, spec, source, destination, content=pruned.text,
                             sandbox=sandbox, limits=limits)
    return replace(pruned, rerun=rerun)


def _defining_class(classes: dict[str, ast.ClassDef], cls: str, method: str) -> str | None:
    """Return the class in this file that defines ``method`` for ``cls`` (itself or a base)."""
    seen: set[str] = set()
    pending = [cls]
    while pending:
        name = pending.pop(0)
        node = classes.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if any(is_test(s) and s.name == method for s in node.body):  # type: ignore[attr-defined]
            return name
        pending.extend(b.id for b in node.bases if isinstance(b, ast.Name))
    return None


def _cut(text: str, nodes: list[ast.stmt]) -> str:
    """Remove the nodes' lines, with the comments and blank lines directly above each."""
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    for node in nodes:
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)]) - 1
        end = node.end_lineno or node.lineno
        indent = len(lines[start]) - len(lines[start].lstrip())
        while start > 0 and lines[start - 1].strip().startswith("#") and (
            len(lines[start - 1]) - len(lines[start - 1].lstrip()) == indent
        ):
            start -= 1
        while start > 0 and not lines[start - 1].strip():
            start -= 1
        drop.update(range(start, end))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def _rebuild(tree: ast.Module, nodes: list[ast.stmt]) -> tuple[str, ast.Module]:
    """Remove the nodes from the syntax tree and print it again (comments are lost)."""
    doomed = {id(n) for n in nodes}

    class Remover(ast.NodeTransformer):
        def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef | None:
            if id(node) in doomed:
                return None
            node.body = [s for s in node.body if id(s) not in doomed] or [ast.Pass()]
            return node

        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef | None:
            return None if id(node) in doomed else node  # a module-level test (pytest)

        def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef | None:
            return None if id(node) in doomed else node

    new = ast.fix_missing_locations(Remover().visit(tree))
    text = ast.unparse(new) + "\n"
    return text, ast.parse(text)
