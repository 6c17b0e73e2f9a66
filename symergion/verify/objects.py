"""Values of a module's own making: objects of its classes, and the values it passes itself.

Many parameters of library code hold none of the kinds a literal can write: a parser's
``Reader``, a compiled pattern, a schema. A small model binds such a parameter to ``1`` or
``'abc'``, the call fails inside the function with Python's ``TypeError`` or
``AttributeError``, and the test that is kept records only that. The module's own code shows
two better values, with no model asked:

- a parameter of one of its classes (``reader: Reader``, or only that class's methods called
  on it: ``reader.peek(1)``) is an object the test builds, by calling the class as the class's
  own test does (``instance_class``);
- a parameter the module passes one of its own module-level values to
  (``decode_escapes(_single_quote_escapes, value)``) can be given that value
  (``module_values``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable

INSTANCE = "instance "  # the kind of a parameter holding an object of a class: "instance Reader"
# The kind of a parameter annotated with a class the module imports: "imported argparse.Namespace".
IMPORTED = "imported "
# Modules whose names describe values rather than build them (``Iterable``, ``Callable``, ``Any``).
_DESCRIBING = frozenset({"typing", "typing_extensions", "collections.abc", "types", "abc", "__future__"})

# Names every object, string, number or container has: calling one says nothing of the class.
_COMMON = frozenset(name for kind in (object, str, bytes, int, float, list, dict, set, tuple)
                    for name in dir(kind))


def buildable_classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    """Return the module's top-level classes a test can build by calling them.

    A class with an ``__init__`` of its own takes the parameters it names; one with no base
    class takes none. Others (a ``NamedTuple``, an ``Enum``, an exception, a subclass of
    something else) build in ways this module does not read, so they are left out.
    """
    found: dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        own_init = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "__init__"
                       for n in node.body)
        plain = not node.bases and not node.keywords
        decorated = any(ast.unparse(d).split("(")[0].endswith("dataclass") for d in node.decorator_list)
        if (own_init or plain) and not decorated:
            found[node.name] = node
    return found


def _named(annotation: ast.expr | None) -> ast.expr | None:
    """Return the one type an annotation names: ``"X"``, ``Optional[X]`` and ``X | None`` name
    ``X``; a union of two types names none."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).split(".")[-1] == "Optional":
        return _named(annotation.slice)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = [annotation.left, annotation.right]
        named = [side for side in sides if not (isinstance(side, ast.Constant) and side.value is None)]
        return _named(named[0]) if len(named) == 1 else None
    return annotation


def annotated_class(annotation: ast.expr | None, classes: dict[str, ast.ClassDef]) -> str:
    """Return the module's class an annotation names (``Reader``, ``Optional["Reader"]``), or ""."""
    named = _named(annotation)
    return named.id if isinstance(named, ast.Name) and named.id in classes else ""


def _imports(tree: ast.Module) -> set[str]:
    """Return the names the module's top-level imports bind, but those of modules that only
    describe values (``typing``): a name imported under ``if TYPE_CHECKING:`` is not there."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.asname or a.name.split(".")[0] for a in node.names if a.name not in _DESCRIBING)
        elif isinstance(node, ast.ImportFrom) and (node.module not in _DESCRIBING or node.level):
            found.update(a.asname or a.name for a in node.names)
    return found


def imported_class(tree: ast.Module, annotation: ast.expr | None) -> str:
    """Return how the module names the class an annotation names, when the module imports it.

    ``data: CoverageData`` after ``from coverage.sqldata import CoverageData`` gives
    ``CoverageData``, ``args: argparse.Namespace`` after ``import argparse`` gives
    ``argparse.Namespace``: a test reaches either through the module. A class is named in
    CapWords (PEP 8); other names there are functions or constants.
    """
    named = _named(annotation)
    parts = ast.unparse(named).split(".") if isinstance(named, (ast.Name, ast.Attribute)) else []
    if not parts or parts[0] not in _imports(tree) or not parts[-1].lstrip("_")[:1].isupper():
        return ""
    return ".".join(parts)


def _members(cls: ast.ClassDef) -> set[str]:
    """Return the names a class defines for its objects: its methods and the attributes its
    methods set on ``self``."""
    found: set[str] = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add(node.name)
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store)
                        and isinstance(inner.value, ast.Name) and inner.value.id == "self"):
                    found.add(inner.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
    return found - _COMMON


def member_votes(function: ast.AST, is_param: Callable[[ast.AST], bool],
                 classes: dict[str, ast.ClassDef]) -> dict[str, int]:
    """Return, for each of the module's classes, how many distinct names used on the parameter
    (``reader.peek``, ``reader.position``) that class alone defines."""
    owners: dict[str, list[str]] = {}
    for name, cls in classes.items():
        for member in _members(cls):
            owners.setdefault(member, []).append(name)
    used = {node.attr for node in ast.walk(function)
            if isinstance(node, ast.Attribute) and is_param(node.value)}
    votes: dict[str, int] = {}
    for attribute in used:
        if len(owners.get(attribute, [])) == 1:
            name = owners[attribute][0]
            votes[name] = votes.get(name, 0) + 1
    return votes


def module_level_names(tree: ast.Module) -> set[str]:
    """Return the names the module binds at its top level to a value it computes: ``X = ...``."""
    found: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        found.update(t.id for t in targets if isinstance(t, ast.Name))
    return found


def module_values(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> list[str]:
    """Return the module-level values the module passes itself as a function's parameter.

    ``decode_escapes(_single_quote_escapes, value)`` anywhere in the module gives
    ``decode_escapes``'s first parameter ``_single_quote_escapes``. By position or keyword, in
    source order, each once. Top-level functions only: a method's calls go through an object.
    """
    if not any(node is function for node in tree.body):
        return []
    positional = [a.arg for a in [*function.args.posonlyargs, *function.args.args]]
    index = positional.index(name) if name in positional else -1
    names = module_level_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == function.name):
            continue
        if any(isinstance(a, ast.Starred) for a in node.args[:index + 1]):
            continue
        passed = node.args[index] if 0 <= index < len(node.args) else next(
            (k.value for k in node.keywords if k.arg == name), None)
        if isinstance(passed, ast.Name) and passed.id in names and passed.id not in found:
            found.append(passed.id)
    return found
