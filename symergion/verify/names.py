"""Names derived from a task's paths: module names, placeholders, and whether a file imports a module."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Mapping
from pathlib import PurePosixPath

# Only these names are substituted; any other brace (a dict literal, an f-string) stays as written.
_PLACEHOLDER = re.compile(r"\{(python|module|source|source_module|destination|destination_module"
                          r"|module_name|import_module|test_class)\}")


def module_of(path: str) -> str:
    """Return the dotted module a repository path imports as: ``utils/x.py`` -> ``utils.x``."""
    pure = PurePosixPath(path)
    parts = list(pure.with_suffix("").parts) if pure.suffix == ".py" else list(pure.parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def fill(text: str, values: Mapping[str, str]) -> str:
    """Substitute the known placeholders in ``text``; unknown or literal braces are kept."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def command_values(source: str, destination: str, python: str | None = None) -> dict[str, str]:
    """Return the placeholders of a verify command; ``{module}`` is the module to run (the tests)."""
    return {
        "python": python or sys.executable,
        "module": module_of(destination),
        "destination": destination,
        "destination_module": module_of(destination),
        "source": source,
        "source_module": module_of(source),
    }


def module_name(source: str) -> str:
    """Return the name a test file refers to the module under test by: its last component."""
    return module_of(source).rsplit(".", 1)[-1]


def import_line(source: str) -> str:
    """Return the import of the module under test: ``from lib import x`` or ``import x``."""
    package, _, name = module_of(source).rpartition(".")
    return f"from {package} import {name}" if package else f"import {name}"


def test_class_name(source: str) -> str:
    """Return the TestCase class name for a module: ``lib/bit_ops.py`` -> ``TestBitOps``."""
    words = [w for w in module_name(source).split("_") if w]
    return "Test" + "".join(w[:1].upper() + w[1:] for w in words)


def render_code_starter(code_starter: str, source: str, destination: str) -> str:
    """Fill a code starter's placeholders; ``{module}`` is the module under test (the source).

    Besides the path placeholders: ``{import_module}`` is the line that imports the module
    (``from lib import x``), ``{module_name}`` the name it is then known by (``x``), and
    ``{test_class}`` a TestCase class name for it (``TestX``). A code starter without
    placeholders comes back unchanged, so the original format keeps working.
    """
    return fill(code_starter, {
        "module": module_of(source),
        "source": source,
        "source_module": module_of(source),
        "destination": destination,
        "destination_module": module_of(destination),
        "module_name": module_name(source),
        "import_module": import_line(source),
        "test_class": test_class_name(source),
    })


def imports_module(test_source: str, module: str, destination: str = "") -> bool:
    """Return whether Python code imports ``module`` (absolutely, from its package, or relatively).

    Args:
        test_source: the test file's text.
        module: the dotted module under test, e.g. ``utils.capture_output``.
        destination: the test file's path, which resolves relative imports.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return False
    package = module_of(destination).split(".")[:-1] if destination else []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name == module or alias.name.startswith(module + ".") for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level - 1 <= len(package) else None
                if base is None:
                    continue
                origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                origin = node.module or ""
            if origin == module or origin.startswith(module + "."):
                return True
            if any(f"{origin}.{alias.name}".lstrip(".") == module for alias in node.names):
                return True
    return False
