"""Verification helpers: a module under test, commits of candidate files, the sandbox's needs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.git import git
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
