"""Real git in temporary repositories: run it, start a task with it, capture a repository's state."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    """Run git in ``cwd`` and return its stdout (raising on failure)."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def start_task_with_git(path: Path, branch: str = "TestCase_capture_output",
                        destination: str = "test_capture_output.py") -> None:
    """Start a task exactly as the original README does, with plain git."""
    git(path, "branch", branch)
    git(path, "notes", "add", "-m",
        f"task_branch: {branch}, source: utils/capture_output.py, destination: {destination}",
        branch)


def repo_state(path: Path) -> dict[str, Any]:
    """Capture what must never change: work tree files, index bytes, HEAD, user refs."""
    files = {}
    for file in sorted(path.rglob("*")):
        if ".git" in file.relative_to(path).parts or not file.is_file():
            continue
        files[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    git_dir = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
    index = git_dir / "index"
    return {
        "files": files,
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "HEAD": (git_dir / "HEAD").read_text(),
        "status": git(path, "status", "--porcelain=v1", "--untracked-files=all"),
    }
