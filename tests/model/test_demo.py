"""`symergion demo` (the README's first command), as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.git import git


def test_demo_plays_the_whole_workflow(tmp_path):
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "symergion", "demo", "--dir", str(demo_dir)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    shown = proc.stderr
    for command in ("$ git branch TestCase_capture_output", "$ git notes add -m",
                    "$ symergion sync", "$ git notes remove", "$ git merge"):
        assert command in shown
    # The task ended: only main is left, the attempt is archived, the merge brought the file.
    assert git(demo_dir, "branch", "--format=%(refname:short)").split() == ["main"]
    assert git(demo_dir, "for-each-ref", "refs/symergion/archive").strip()
    log = git(demo_dir, "log", "--all", "--format=%s")
    assert "Revert: Use setUp method" in log and "Use setUp method" in log
