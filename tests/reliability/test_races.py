"""Point 3: the user moves a model branch while it is being generated (the compare-and-swap
fails and symergion builds on the new tip, never overwriting), and one symergion per
repository (the lock names its holder and dies with it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.fleet import default_reply
from tests.helpers.git import git
from tests.helpers.reliability import TASK, all_refs, run_child, start_task, symergion_commits

from .test_crash import assert_clean_and_converged, assert_lock_free, wait_for

ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"


def user_commit(repo: Path, branch: str, path: str, text: str, message: str) -> str:
    """Commit ``path`` onto ``branch`` the way another clone's push would: no checkout here."""
    tip = git(repo, "rev-parse", branch).strip()
    blob = git(repo, "hash-object", "-w", "--stdin", input=text).strip()
    entries = [line for line in git(repo, "ls-tree", tip).splitlines()
               if line.split("\t")[1] != path]
    entries.append(f"100644 blob {blob}\t{path}")
    tree = git(repo, "mktree", input="\n".join(entries) + "\n").strip()
    commit = git(repo, "commit-tree", tree, "-p", tip, "-m", message).strip()
    git(repo, "update-ref", f"refs/heads/{branch}", commit, tip)
    return commit


def during(fleet, model: str, action) -> None:
    """Run ``action`` once, while ``model`` generates its next response."""
    done = []

    def reply(name: str, prompt: str) -> str:
        if name == model and not done:
            done.append(action())
        return default_reply(name, prompt)

    fleet.reply = reply


def test_user_commit_during_generation_is_built_upon(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "add", "-m", "Use setUp method", BETA)
    # While alpha regenerates, the user commits a helper file and a hand fix onto alpha.
    commits = []
    during(fake_runtime, "alpha", lambda: commits.append(
        user_commit(repo_dir, ALPHA, "conftest.py", "# shared fixtures\n", "Add fixtures")))
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert {r["branch"]: r["status"] for r in result.json()["results"]} == {
        ALPHA: "updated", BETA: "updated"}
    [user] = commits
    tip = git(repo_dir, "rev-parse", ALPHA).strip()
    assert git(repo_dir, "log", "-1", "--format=%P", ALPHA).split() == [user]
    assert git(repo_dir, "merge-base", "--is-ancestor", user, tip) == ""
    # Built on, not overwritten: the user's file is still in the new attempt.
    assert git(repo_dir, "show", f"{ALPHA}:conftest.py") == "# shared fixtures\n"
    assert "Use setUp method" in git(repo_dir, "show", f"{ALPHA}:test_capture_output.py")
    assert symergion_commits(repo_dir, TASK, ALPHA)[0]["subject"] == "Use setUp method"
    assert cli("sync", *common).code == 0


def test_user_resets_model_branch_during_generation(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "add", "-m", "Use setUp method", BETA)
    task_tip = git(repo_dir, "rev-parse", TASK).strip()
    during(fake_runtime, "alpha",
           lambda: git(repo_dir, "update-ref", f"refs/heads/{ALPHA}", task_tip))
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert git(repo_dir, "log", "-1", "--format=%P", ALPHA).split() == [task_tip]
    assert git(repo_dir, "rev-parse", f"refs/symergion/tasks/{TASK}/alpha").strip() == \
        git(repo_dir, "rev-parse", ALPHA).strip()


def test_user_deletes_model_branch_during_generation(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "add", "-m", "Use setUp method", BETA)
    during(fake_runtime, "alpha", lambda: git(repo_dir, "branch", "-D", ALPHA))
    result = cli("sync", *common, "--json")
    assert {r["branch"]: r["status"] for r in result.json()["results"]} == {
        ALPHA: "skipped", BETA: "updated"}
    assert f"refs/heads/{ALPHA}" not in all_refs(repo_dir)


def test_user_creates_the_model_branch_first(repo_dir, cfg, cli, fake_runtime):
    """The branch did not exist when generation began; the user's branch wins the name."""
    start_task(repo_dir)
    commits = []
    during(fake_runtime, "alpha", lambda: (
        git(repo_dir, "branch", ALPHA, TASK),
        commits.append(user_commit(repo_dir, ALPHA, "notes.txt", "mine\n", "Mine"))))
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert git(repo_dir, "log", "-1", "--format=%P", ALPHA).split() == commits
    assert git(repo_dir, "show", f"{ALPHA}:notes.txt") == "mine\n"


def test_second_sync_or_watch_is_refused_while_the_lock_is_held(repo_dir, cfg, cli,
                                                                fake_runtime):
    start_task(repo_dir)
    mark = repo_dir.parent / "mark"
    holder = run_child("sync", "--repo", repo_dir, "--config", cfg, background=True,
                       env={"SLOW_TOKEN": "0.05", "PAD": "400", "MARK_FILE": str(mark)})
    try:
        wait_for(mark, "generation")
        refs = all_refs(repo_dir)
        for args in (["sync"], ["watch", "--interval", "0.1"], ["feedback", "x", "-b", "nope"]):
            result = cli(*args, "--repo", repo_dir, "--config", cfg)
            if args[0] == "feedback":
                assert result.code == 1  # not a locked operation: fails on its own input
                continue
            assert result.code == 3, result.err
            assert f"pid {holder.pid}" in result.err and f"kill {holder.pid}" in result.err
        assert all_refs(repo_dir) == refs
        # The lock dies with its process, however it dies.
        began = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert time.monotonic() - began < 5
    assert_lock_free(repo_dir)
    assert (repo_dir / ".git" / "symergion" / "lock").read_text().strip() == str(holder.pid)
    result = cli("sync", "--repo", repo_dir, "--config", cfg)
    assert result.code == 0, result.err
    first = symergion_commits(repo_dir, TASK, ALPHA)[0]["subject"]
    assert_clean_and_converged(repo_dir, cfg, [first])


def test_ergon_start_while_locked_records_the_task_for_the_holder(repo_dir, cfg, cli,
                                                                   fake_runtime):
    """start writes the branch and note (plain git would too), then its sync is refused."""
    from symergion.app.lock import repo_lock

    with repo_lock(repo_dir / ".git"):
        result = cli("ergon", "start", TASK, "-s", "utils/capture_output.py", "-d", "t.py",
                     "--repo", repo_dir, "--config", cfg)
    assert result.code == 3, result.err
    assert f"pid {__import__('os').getpid()}" in result.err
    assert git(repo_dir, "notes", "show", TASK).startswith(f"task_branch: {TASK}")
    assert f"refs/heads/{ALPHA}" not in all_refs(repo_dir)
    # The holder (e.g. a running watch) or the next sync picks the task up.
    assert cli("sync", "--repo", repo_dir, "--config", cfg).code == 0
    assert f"refs/heads/{ALPHA}" in all_refs(repo_dir)


def test_task_ended_twice_within_one_second_is_archived_twice(repo_dir, cfg, cli, fake_runtime,
                                                               monkeypatch):
    import time
    import types

    import symergion.core.publish as reconcile

    frozen = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time)
                                      if not n.startswith("_")})
    frozen.strftime = lambda fmt, t=None: "20250101T000000Z"
    monkeypatch.setattr(reconcile, "time", frozen)
    start_task(repo_dir)
    tip = git(repo_dir, "rev-parse", TASK).strip()
    common = ("--repo", repo_dir, "--config", cfg)
    for _round in range(2):
        assert cli("sync", *common).code == 0
        git(repo_dir, "branch", "-D", TASK)
        result = cli("sync", *common, "--json")
        assert [r["status"] for r in result.json()["results"]] == ["retired", "retired"]
        assert not any(r.startswith(f"refs/heads/{m}_") for r in all_refs(repo_dir)
                       for m in ("alpha", "beta"))
        git(repo_dir, "branch", TASK, tip)  # the task starts again
    archived = git(repo_dir, "for-each-ref", "--format=%(refname)", "refs/symergion/archive")
    assert archived.split() == [
        f"refs/symergion/archive/{TASK}/{m}/20250101T000000Z{s}"
        for m in ("alpha", "beta") for s in ("", "-2")]
