"""Point 1: the user's work tree, index, HEAD and refs are untouched by every command."""

from __future__ import annotations

import pytest

from tests.helpers.git import git
from tests.helpers.reliability import (
    TASK,
    all_refs,
    is_symergion_ref,
    make_messy,
    start_task,
    user_refs,
    user_state,
)

OTHER = "TestCase_other"


@pytest.mark.parametrize("head", ["detached", "task", "model"])
def test_every_command_leaves_user_work_untouched(repo_dir, cfg, cli, fake_runtime, head):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    if head == "model":
        assert cli("sync", *common).code == 0
    make_messy(repo_dir, head)
    before = user_state(repo_dir)
    refs = user_refs(repo_dir)
    notes_ref = "refs/notes/commits"

    def check(step: str, *, may_move: set[str] = frozenset()) -> None:
        nonlocal refs
        assert user_state(repo_dir) == before, f"{step} touched the work tree, index or HEAD"
        now = user_refs(repo_dir)
        moved = {r for r in set(now) | set(refs) if now.get(r) != refs.get(r)}
        assert moved <= may_move, f"{step} moved user refs {moved - may_move}"
        refs = now

    result = cli("sync", *common)
    assert result.code == 0, result.err
    check("sync")
    result = cli("ergon", "start", OTHER, "-s", "utils/capture_output.py", "-d", "t_other.py",
                 "--from", "main", *common)
    assert result.code == 0, result.err
    check("ergon start", may_move={f"refs/heads/{OTHER}", notes_ref})
    result = cli("feedback", "Use setUp method", "--branch", f"beta_{TASK}", *common)
    assert result.code == 0, result.err
    check("feedback", may_move={notes_ref})
    for view in ("status", "list"):
        args = ("ergon", "list") if view == "list" else ("status",)
        result = cli(*args, *common, "--json")
        assert result.code == 0, result.err
        check(view)
    result = cli("revoke", "--branch", f"alpha_{TASK}", *common)
    assert result.code == 0, result.err
    check("revoke", may_move={notes_ref})
    git(repo_dir, "notes", "add", "-m", "Test the empty case", f"alpha_{OTHER}")
    refs = user_refs(repo_dir)
    result = cli("watch", "--interval", "0.1", "--max-passes", "1", *common)
    assert result.code == 0, result.err
    check("watch")
    # The passes did real work: every model branch of both tasks exists and is up to date.
    result = cli("status", *common, "--json")
    states = {r["branch"]: r["state"] for r in result.json()["branches"]}
    assert states == {f"{m}_{t}": "up-to-date" for m in ("alpha", "beta") for t in (TASK, OTHER)}
    assert all(is_symergion_ref(r) or r in refs for r in all_refs(repo_dir))


def test_checked_out_model_branch_is_never_moved(repo_dir, cfg, cli, fake_runtime):
    from symergion.app.watch import refs_state
    from symergion.gitrepo import GitRepo

    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "checkout", "-q", f"alpha_{TASK}")
    head = git(repo_dir, "rev-parse", "HEAD").strip()
    before = user_state(repo_dir)
    # Feedback on the checked-out branch (the default): the other model regenerates, the
    # checked-out one is kept where the user's index and files expect it.
    result = cli("feedback", "Use setUp method", *common, "--json")
    assert result.code == 0, result.err
    statuses = {r["branch"]: (r["status"], r["reason"]) for r in result.json()["results"]}
    assert statuses[f"beta_{TASK}"][0] == "updated"
    assert statuses[f"alpha_{TASK}"][0] == "kept"
    assert "checked out" in statuses[f"alpha_{TASK}"][1]
    assert git(repo_dir, "rev-parse", "HEAD").strip() == head
    assert user_state(repo_dir) == before
    # Switching away is a change watch sees; the next pass publishes the new attempt.
    state = refs_state(GitRepo(repo_dir))
    git(repo_dir, "checkout", "-q", "main")
    assert refs_state(GitRepo(repo_dir)) != state
    result = cli("sync", *common, "--json")
    assert [r["status"] for r in result.json()["results"]] == ["updated", "up-to-date"]


def test_branch_checked_out_during_generation_is_not_moved(repo_dir, cfg, cli, fake_runtime):
    from tests.helpers.fleet import default_reply

    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)

    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "add", "-m", "Use setUp method", f"alpha_{TASK}")
    git(repo_dir, "checkout", "-q", "--detach", "main")
    head_of_alpha = git(repo_dir, "rev-parse", f"alpha_{TASK}").strip()

    def reply(model: str, prompt: str) -> str:
        if model == "alpha":  # the user checks the branch out to review while alpha generates
            git(repo_dir, "checkout", "-q", f"alpha_{TASK}")
        return default_reply(model, prompt)

    fake_runtime.reply = reply
    result = cli("sync", *common, "--json")
    statuses = {r["branch"]: r["status"] for r in result.json()["results"]}
    assert statuses == {f"alpha_{TASK}": "kept", f"beta_{TASK}": "updated"}
    assert git(repo_dir, "rev-parse", f"alpha_{TASK}").strip() == head_of_alpha
    calls = fake_runtime.calls
    git(repo_dir, "checkout", "-q", "--detach", "main")
    fake_runtime.reply = default_reply
    result = cli("sync", *common, "--json")
    [alpha] = [r for r in result.json()["results"] if r["branch"] == f"alpha_{TASK}"]
    assert (alpha["status"], alpha["cache"]) == ("updated", "hit")
    assert fake_runtime.calls == calls, "the kept response came from the cache"
