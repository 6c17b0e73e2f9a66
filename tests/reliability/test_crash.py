"""Point 2: a kill at any moment, then another sync: exactly one result per pending change, no
leftovers; SIGTERM/SIGINT stop a generation within seconds and publish nothing half-made."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.git import git
from tests.helpers.reliability import (
    MODELS,
    TASK,
    all_refs,
    leftovers,
    run_child,
    start_task,
    symergion_commits,
)

KILL_POINTS = [
    "generation",
    "after_write_blob",
    "after_mktree",
    "after_commit_tree",
    "before_update_refs",
    "in_update_refs",  # the reference-transaction hook kills sync while git holds the locks
    "after_update_refs",
]


def install_hook(repo: Path, body: str) -> None:
    """Install a reference-transaction hook (runs while update-ref holds its ref locks)."""
    hook = repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text("#!/bin/sh\ncat >/dev/null\n" + body)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def model_refs(repo: Path) -> dict[str, str]:
    return {r: o for r, o in all_refs(repo).items()
            if r.startswith("refs/symergion/") or any(r.startswith(f"refs/heads/{m}_")
                                                       for m in MODELS)}


def assert_no_half_made_refs(repo: Path) -> None:
    """Each model branch and its shadow ref moved together (or not at all)."""
    refs = all_refs(repo)
    for model in MODELS:
        branch = refs.get(f"refs/heads/{model}_{TASK}")
        shadow = refs.get(f"refs/symergion/tasks/{TASK}/{model}")
        assert branch == shadow, f"{model}: branch {branch} but shadow {shadow}"


def assert_lock_free(repo: Path) -> None:
    """symergion's lock file may exist, but no process holds it."""
    path = repo / ".git" / "symergion" / "lock"
    if path.exists():
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def assert_clean_and_converged(repo: Path, cfg: Path, pending: list[str]) -> None:
    """The git dir holds no leftovers, and each model branch holds exactly one symergion commit
    per change in ``pending`` (newest first), and one more sync changes nothing."""
    assert leftovers(repo / ".git") == []
    assert_lock_free(repo)
    assert_no_half_made_refs(repo)
    for model in MODELS:
        commits = symergion_commits(repo, TASK, f"{model}_{TASK}")
        assert [c["subject"] for c in commits] == pending, model
        assert len({c["Symergion-Prompt"] for c in commits}) == len(commits)
    refs = all_refs(repo)
    again = run_child("sync", "--repo", repo, "--config", cfg, "--json")
    assert again.returncode == 0, again.stderr
    assert all_refs(repo) == refs
    fsck = subprocess.run(["git", "fsck", "--no-dangling", "--no-progress"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.parametrize("nth", [1, 2], ids=["first-model", "second-model"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_sync_gives_one_result_per_change(repo_dir, cfg, point, nth):
    start_task(repo_dir)
    env = {"KILL_AT": point, "KILL_NTH": str(nth)}
    if point == "in_update_refs":
        install_hook(repo_dir, 'if [ "$1" = prepared ] && [ -n "$KILL_PID" ]; then\n'
                     '  n=$(cat "$KILL_COUNT" 2>/dev/null || echo 0); n=$((n+1))\n'
                     '  echo $n > "$KILL_COUNT"\n'
                     '  if [ "$n" = "$KILL_NTH" ]; then kill -9 "$KILL_PID"; sleep 0.3; fi\n'
                     'fi\n')
        env["KILL_COUNT"] = str(repo_dir.parent / "kill-count")
    killed = run_child("sync", "--repo", repo_dir, "--config", cfg, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_no_half_made_refs(repo_dir)
    done = run_child("sync", "--repo", repo_dir, "--config", cfg)
    assert done.returncode == 0, done.stderr
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    assert first.startswith("Create unittest TestCase")
    assert_clean_and_converged(repo_dir, cfg, [first])


@pytest.mark.parametrize("point", ["generation", "after_commit_tree", "in_update_refs",
                                   "after_update_refs"])
def test_sigkill_during_a_feedback_round(repo_dir, cfg, point):
    start_task(repo_dir)
    assert run_child("sync", "--repo", repo_dir, "--config", cfg).returncode == 0
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    git(repo_dir, "notes", "add", "-m", "Use setUp method", f"beta_{TASK}")
    env = {"KILL_AT": point}
    if point == "in_update_refs":
        install_hook(repo_dir, 'if [ "$1" = prepared ] && [ -n "$KILL_PID" ]; then '
                     'kill -9 "$KILL_PID"; sleep 0.3; fi\n')
    killed = run_child("sync", "--repo", repo_dir, "--config", cfg, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert run_child("sync", "--repo", repo_dir, "--config", cfg).returncode == 0
    assert_clean_and_converged(repo_dir, cfg, ["Use setUp method", first])


def wait_for(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_generation_stops_fast_and_publishes_nothing(repo_dir, cfg, signum):
    start_task(repo_dir)
    refs = all_refs(repo_dir)
    mark = repo_dir.parent / "mark"
    # About 600 tokens at 20 ms each: a 12-second generation.
    proc = run_child("sync", "--repo", repo_dir, "--config", cfg, background=True,
                     env={"SLOW_TOKEN": "0.02", "PAD": "300", "MARK_FILE": str(mark)})
    wait_for(mark, "generation")
    sent = time.monotonic()
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=30)
    latency = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert latency < 3, f"took {latency:.2f}s to stop"
    assert "nothing half-made was published" in err or "interrupted" in err
    assert all_refs(repo_dir) == refs
    assert leftovers(repo_dir / ".git") == []
    done = run_child("sync", "--repo", repo_dir, "--config", cfg)
    assert done.returncode == 0, done.stderr
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    assert_clean_and_converged(repo_dir, cfg, [first])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_git_holds_ref_locks_leaves_no_half_made_refs(repo_dir, cfg, signum):
    """A stop request while update-ref is mid-transaction must not kill git there: that would
    leave ``.lock`` files that block every later update of those refs."""
    start_task(repo_dir)
    mark = repo_dir.parent / "hook-mark"
    install_hook(repo_dir, f'if [ "$1" = prepared ]; then echo prepared >> {mark}; sleep 1; fi\n')
    proc = run_child("sync", "--repo", repo_dir, "--config", cfg, background=True)
    wait_for(mark, "prepared")
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert leftovers(repo_dir / ".git") == []
    assert_no_half_made_refs(repo_dir)
    (repo_dir / ".git" / "hooks" / "reference-transaction").unlink()
    done = run_child("sync", "--repo", repo_dir, "--config", cfg)
    assert done.returncode == 0, done.stderr
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    assert_clean_and_converged(repo_dir, cfg, [first])


def test_a_stale_ref_lock_is_named_and_the_other_work_goes_on(repo_dir, cfg):
    """A ``.lock`` file a crashed git left behind is reported with its path, not as a race."""
    start_task(repo_dir)
    stale = repo_dir / ".git" / "refs" / "heads" / f"alpha_{TASK}.lock"
    stale.write_text("")
    result = run_child("sync", "--repo", repo_dir, "--config", cfg)
    assert result.returncode == 4, result.stderr
    assert f"{stale} exists" in result.stderr and f"delete {stale}" in result.stderr
    refs = all_refs(repo_dir)
    assert f"refs/heads/alpha_{TASK}" not in refs and f"refs/heads/beta_{TASK}" in refs
    stale.unlink()
    assert run_child("sync", "--repo", repo_dir, "--config", cfg).returncode == 0
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    assert_clean_and_converged(repo_dir, cfg, [first])


def test_sigterm_stops_an_idle_watch(repo_dir, cfg):
    start_task(repo_dir)
    mark = repo_dir.parent / "mark"
    proc = run_child("watch", "--interval", "0.2", "--repo", repo_dir, "--config", cfg,
                     background=True, env={"MARK_FILE": str(mark)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            not mark.exists() or mark.read_text().count("after_update_refs") < 2):
        time.sleep(0.02)
    time.sleep(0.5)  # idle between polls
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 3
    assert "stopped" in err
    first = symergion_commits(repo_dir, TASK, f"alpha_{TASK}")[0]["subject"]
    assert_clean_and_converged(repo_dir, cfg, [first])


def test_a_signal_during_a_git_command_of_an_idle_watch_still_says_stopped(
        repo_dir, cfg, fake_runtime, monkeypatch):
    # A signal that lands while git runs only sets the cancel flag (killing git inside a ref
    # transaction would leave .lock files); the loop must still stop with its message.
    import symergion.app.service as service
    from symergion.app.watch import watch_loop

    monkeypatch.setattr(service, "git_running", lambda: True)
    events: list[str] = []

    class Printer:
        def loading(self, model: str) -> None:
            pass

        def __call__(self, event: Any) -> None:
            events.append(event.detail)

    code = watch_loop(repo_dir, cfg, None, interval=5.0, printer=Printer(),
                      on_poll=lambda _n: os.kill(os.getpid(), signal.SIGTERM))
    assert code == 130
    assert events[-1] == "stopped"
