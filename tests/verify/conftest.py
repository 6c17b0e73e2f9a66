"""Fixtures for verification tests: a repository with a module under test, and a real sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.verify.sandbox import Sandbox, SandboxUnavailable
from tests.conftest import git

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def _bwrap_problem() -> str | None:
    try:
        Sandbox(mode="bwrap")
    except SandboxUnavailable as exc:
        return str(exc)
    return None


BWRAP_PROBLEM = _bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"bubblewrap unavailable: {BWRAP_PROBLEM}")


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
