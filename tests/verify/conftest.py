"""Fixtures for verification tests: a repository with a module under test, and a real sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.verify.sandbox import Sandbox
from tests.conftest import git
from tests.needs import bwrap_problem, needs_bwrap

__all__ = ["BWRAP_PROBLEM", "CALC", "commit_files", "needs_bwrap"]

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


BWRAP_PROBLEM = bwrap_problem()


def commit_files(repo: Path, files: dict[str, str], message: str = "candidate") -> str:
    """Write files into the repository, commit them, and return the commit id."""
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def calc_repo(tmp_path: Path) -> Path:
    """A repository with utils/calc.py on main."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit_files(path, {"utils/__init__.py": "", "utils/calc.py": CALC}, "initial")
    return path


@pytest.fixture
def sandbox() -> Sandbox:
    """The real bubblewrap sandbox (tests using it are marked needs_bwrap)."""
    return Sandbox(mode="bwrap")
