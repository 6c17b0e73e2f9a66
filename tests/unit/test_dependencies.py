"""The declared dependencies match what the package imports, both ways."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "symergion"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return _normalise(match.group(0))


def _imported_top_level_modules(root: Path) -> dict[str, set[str]]:
    """Return each absolutely imported top-level module mapped to the files importing it."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    # Modules imported by name at run time (importlib.import_module("...")) count too.
    for path in root.rglob("*.py"):
        for name in re.findall(r"import_module\(\s*[\"']([A-Za-z0-9_.]+)", path.read_text()):
            found.setdefault(name.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> tuple[set[str], set[str]]:
    """Return the normalised names of the runtime dependencies and of the optional ones."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    optional = {_requirement_name(r) for reqs in project.get("optional-dependencies", {}).values()
                for r in reqs}
    return runtime, optional


def _third_party_imports() -> dict[str, set[str]]:
    """Return the distributions behind every non-stdlib, non-symergion import of the package."""
    distributions = packages_distributions()
    result: dict[str, set[str]] = {}
    for module, files in _imported_top_level_modules(PACKAGE).items():
        if module in sys.stdlib_module_names or module in ("symergion", "__future__"):
            continue
        owners = distributions.get(module)
        assert owners, f"{module} (imported by {sorted(files)}) belongs to no installed distribution"
        for owner in owners:
            result.setdefault(_normalise(owner), set()).update(files)
    return result


def test_every_imported_distribution_is_declared() -> None:
    runtime, optional = _declared()
    undeclared = {dist: sorted(files) for dist, files in _third_party_imports().items()
                  if dist not in runtime | optional}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_imported() -> None:
    runtime, optional = _declared()
    imported = set(_third_party_imports())
    unused = sorted((runtime | optional) - imported)
    assert not unused, f"declared in pyproject.toml but imported by nothing in symergion/: {unused}"
