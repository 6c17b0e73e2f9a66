"""A test file read through its syntax tree: how it refers to the module under test, and edits.

The repairs (``pin``, ``truncate``, ``rekind`` and ``repair``) share these readings: the names
the file reaches the module by, the local names a test derives from the module's calls, the
statement a traceback stopped in, and text replacements by the positions of syntax-tree nodes.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

from symergion.verify.names import module_of


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
class ModuleRefs:
    """How a test file refers to the module under test."""

    aliases: list[str] = field(default_factory=list)  # expressions that name the module itself
    names: set[str] = field(default_factory=set)  # names imported from it
    star: bool = False


def module_refs(tree: ast.Module, module: str, destination: str) -> ModuleRefs:
    refs = ModuleRefs()
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


def bound_names(tree: ast.Module) -> set[str]:
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


class Edits:
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


def calls_module(node: ast.AST, refs: ModuleRefs, derived: set[str]) -> bool:
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


def derived_names(function: ast.AST, refs: ModuleRefs) -> set[str]:
    """Return the local names a function assigns from calls of the module under test (transitively)."""
    derived: set[str] = set()
    assigns = [n for n in ast.walk(function) if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value]
    changed = True
    while changed:
        changed = False
        for node in assigns:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assert node.value is not None
            if not calls_module(node.value, refs, derived):
                continue
            for target in targets:
                for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                    if name not in derived:
                        derived.add(name)
                        changed = True
    return derived


def assigned_value(function: ast.AST, name: str, before: int) -> ast.expr | None:
    """Return the value last assigned to a simple name before a line."""
    found: ast.expr | None = None
    for node in ast.walk(function):
        if (isinstance(node, ast.Assign) and node.lineno < before and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
                and (found is None or node.lineno > found.lineno)):
            found = node.value
    return found


def asserts(function: ast.AST, besides: ast.stmt | None = None) -> bool:
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


def module_call(statement: ast.stmt, refs: ModuleRefs, derived: set[str]) -> ast.expr | None:
    """Return the expression of a statement that calls the module: an assertion's actual side,
    an assigned value, or the expression itself."""
    if isinstance(statement, ast.Expr):
        value = statement.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and value.func.attr.startswith("assert")):
            sides = [a for a in value.args[:2] if calls_module(a, refs, derived)]
            return sides[0] if len(sides) == 1 else None
        return value if calls_module(value, refs, derived) else None
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        return statement.value if calls_module(statement.value, refs, derived) else None
    return None


Methods = dict[tuple[str, str], ast.FunctionDef | ast.AsyncFunctionDef]


def methods_by_name(tree: ast.Module) -> Methods:
    """Return the methods of a file's top-level classes, by (class name, method name)."""
    return {(c.name, f.name): f for c in tree.body if isinstance(c, ast.ClassDef)
            for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}


def failing_statement(test: str, detail: str, methods: Methods, frame: re.Pattern[str]
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


def same_file(frame: str, source: str) -> bool:
    """Return whether a traceback's file (relative to the checkout, or absolute) is the source."""
    return frame == source or frame.endswith("/" + source)


def exception_name(detail: str, module_names: frozenset[str], alias: str | None) -> str | None:
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
