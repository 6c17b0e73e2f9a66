"""Point 4: changes are seen with loose and packed refs, in bare repos and linked worktrees,
after the notes ref is rewritten or pruned, and from inside a git hook; watch polls."""

from __future__ import annotations

import pytest

from symergion.gitrepo import GitRepo
from symergion.lock import repo_lock
from symergion.watch import refs_state

from .conftest import TASK, all_refs, git, start_task, symergion_commits, user_state

ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"


def statuses(result) -> dict[str, str]:
    return {r["branch"]: r["status"] for r in result.json()["results"]}


def test_run_from_a_git_hook_of_another_repository(repo_dir, tmp_path, cfg, cli, fake_runtime,
                                                   monkeypatch):
    """Hooks export GIT_DIR/GIT_INDEX_FILE; every git call must still target --repo."""
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo_dir), str(other))
    start_task(repo_dir)
    other_refs = all_refs(other)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert statuses(result) == {ALPHA: "created", BETA: "created"}
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert all_refs(other) == other_refs
