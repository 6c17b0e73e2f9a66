"""The layering check of the lint step (``lint-imports``, ``[tool.importlinter]`` in pyproject.toml).

It passes on the tree, and fails on a copy of the tree with one upward import or one import
cycle planted, whether the import is at the top of a module, inside a function or only for type
checking.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import missing, need_module

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the tree at ``root``, as the lint step does."""
    need_module("importlinter", "pip install import-linter (the dev dependency group)")
    command = Path(sys.executable).with_name("lint-imports")
    if not command.is_file():
        missing(f"needs the lint-imports command next to {sys.executable}")
    # No PYTHONPATH: lint-imports reads the package from its working directory, here the copy.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(command), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """Return a copy of the package and its pyproject.toml."""
    shutil.copytree(ROOT / "symergion", tmp_path / "symergion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, text: str) -> None:
    """Append ``text`` to a module of the copy."""
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + text, encoding="utf-8")


def test_the_tree_keeps_its_layers_and_has_no_cycle() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_the_copy_of_the_tree_passes_before_anything_is_planted(tree_copy: Path) -> None:
    done = lint_imports(tree_copy)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("module", "text", "broken"), [
    # engine is below core: an import inside a function counts.
    ("engine/base.py", "def _planted() -> None:\n    from symergion.core import plan  # noqa: F401\n",
     "symergion.engine is not allowed to import symergion.core"),
    # verify and engine are independent of each other.
    ("verify/names.py", "from symergion.engine import fake  # noqa: F401\n",
     "symergion.verify is not allowed to import symergion.engine"),
    # errors is the bottom layer: an import only for type checking counts too.
    ("errors.py", "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
     "    from symergion.config.schema import Config  # noqa: F401\n",
     "symergion.errors is not allowed to import symergion.config"),
])
def test_an_upward_import_breaks_the_layers(tree_copy: Path, module: str, text: str, broken: str) -> None:
    plant(tree_copy / "symergion" / module, text)
    done = lint_imports(tree_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Each layer imports only the layers below it BROKEN" in done.stdout
    assert broken in done.stdout


def test_an_import_cycle_inside_a_layer_breaks_the_check(tree_copy: Path) -> None:
    # verify.guide imports verify.params (through verify.openers); params importing guide back
    # closes a cycle.
    plant(tree_copy / "symergion" / "verify" / "params.py",
          "def _planted() -> None:\n    from symergion.verify import guide  # noqa: F401\n")
    done = lint_imports(tree_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No import cycles between modules of one package BROKEN" in done.stdout
    assert "No cycles are allowed in symergion.verify." in done.stdout
    assert "Each layer imports only the layers below it KEPT" in done.stdout


def test_a_new_top_level_module_must_be_given_a_layer(tree_copy: Path) -> None:
    (tree_copy / "symergion" / "newcomer.py").write_text('"""Not in any layer yet."""\n', encoding="utf-8")
    done = lint_imports(tree_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "The following modules are not listed as layers:" in done.stdout
    assert "- symergion.newcomer" in done.stdout
