"""Fixtures for verification tests: a repository with a module under test, and a real sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git
from tests.helpers.verify import CALC, commit_files


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
