"""Checkouts left behind by a verification killed with SIGKILL are removed by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify import verify_candidate
from symergion.verify.sandbox import Sandbox
from symergion.verify.scratch import remove_stale, scratch_dir
from tests.helpers.verify import commit_files

HOLD = """
import sys, time
from symergion.verify.scratch import scratch_dir
with scratch_dir("symergion-verify-") as path:
    (path / "checkout").mkdir()
    (path / "checkout" / "test_x.py").write_text("x")
    print(path, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of its own, so other runs' checkouts are never looked at."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return root


def hold_checkout() -> tuple[subprocess.Popen[str], Path]:
    """Start a process that made a checkout and waits; return it and the checkout's folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_verification_leaves_a_checkout_the_next_one_removes(
        temp_root: Path, calc_repo: Path) -> None:
    killed, left = hold_checkout()
    alive, kept = hold_checkout()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert left.parent == temp_root and (left / "checkout" / "test_x.py").exists()
        other = temp_root / "symergion-notes-1.1-x"  # not a name this module gives
        other.mkdir()
        commit = commit_files(calc_repo, {"test_calc.py": "import unittest\n"})
        verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "test_calc.py",
                         sandbox=Sandbox(mode="none"))
        assert not left.exists()
        assert kept.exists() and other.exists()  # a live process's checkout, another name
    finally:
        alive.kill()
        alive.wait()


def test_a_reused_pid_does_not_keep_a_stale_checkout(temp_root: Path) -> None:
    # Same pid as a live process (this one), another start time: its owner has ended.
    stale = temp_root / f"symergion-run-{os.getpid()}.1-abc"
    stale.mkdir()
    with scratch_dir("symergion-run-") as mine:
        assert not stale.exists()
        assert remove_stale("symergion-run-") == [] and mine.exists()
