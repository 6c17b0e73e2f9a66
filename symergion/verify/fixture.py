"""The fixture of a guided test file: a temporary folder with a copy of the module's source.

A test whose parameters name files gets it: an existing file it may read or change (a made-up
name only takes the error path), removed after the test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from symergion.verify.objects import INSTANCE
from symergion.verify.openers import FIXTURE_VALUES, Target, bindings, openings, value_kinds
from symergion.verify.params import definition

FIXTURE_IMPORTS = "import shutil\nimport tempfile\n"
FIXTURE = ("    def setUp(self):\n"
           "        folder = tempfile.TemporaryDirectory()\n"
           "        self.addCleanup(folder.cleanup)\n"
           "        self.folder = folder.name\n"
           "        self.path = shutil.copy({alias}.__file__, self.folder)\n\n")


def with_fixture(code_starter: str, alias: str) -> str:
    """Return a code starter with the fixture's imports and its ``setUp`` (``FIXTURE``) added.

    The imports go before the starter's first import (after any ``from __future__``), the
    ``setUp`` after its class line, which ends the starter.
    """
    lines = code_starter.splitlines(keepends=True)
    try:
        tree = ast.parse(code_starter + "    pass\n")
    except SyntaxError:
        return code_starter
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    at = imports[0].lineno - 1 if imports else 0
    return "".join([*lines[:at], FIXTURE_IMPORTS, *lines[at:]]) + FIXTURE.format(alias=alias)


def instance_target(tree: ast.Module, cls: str, alias: str, opener: str = "",
                    taken: frozenset[str] = frozenset()) -> Target:
    """Return the target that builds an object of one of the module's classes: its ``__init__``'s
    parameters bound (none renamed into ``taken``), after ``opener``."""
    init = definition(tree, "__init__", cls)
    return Target(cls, "class", opener, binds=bindings(init, alias, method=True, taken=taken, tree=tree))


def _deep_openings(tree: ast.Module, target: Target, depth: int = 2) -> Iterator[str]:
    """Yield how each bound value of a target starts, and of the objects it builds on the way."""
    for kind, opening in zip(value_kinds(tree, target), openings(tree, target), strict=True):
        yield opening
        if kind.startswith(INSTANCE) and depth > 0:
            yield from _deep_openings(tree, instance_target(tree, kind[len(INSTANCE):], ""), depth - 1)


def needs_fixture(tree: ast.Module, chosen: list[Target]) -> bool:
    """Return whether a value of the targets' tests (or of an object they build) is the fixture's."""
    return any(opening in FIXTURE_VALUES.values()
               for target in chosen for opening in _deep_openings(tree, target))
