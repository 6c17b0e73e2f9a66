"""Point 6: `sync --remote` against a second local bare repository: fetch branches and notes
(merged with cat_sort_uniq), reconcile, push model branches and notes; a rejected push keeps
the local result, names each ref, and never forces."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.git import git
from tests.helpers.reliability import TASK, all_refs, start_task, symergion_commits

ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"


def teammate_commit(mate: Path, branch: str, text: str) -> str:
    git(mate, "fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    git(mate, "checkout", "-q", "-B", branch, f"origin/{branch}")
    (mate / "test_capture_output.py").write_text(text)
    git(mate, "commit", "-qam", "teammate's fix")
    git(mate, "push", "-q", "origin", branch)
    return git(mate, "rev-parse", "HEAD").strip()


def test_fetch_reconcile_push(team, cfg, cli, fake_runtime):
    remote, local, mate = team
    # The teammate starts the task and pushes it with its note.
    start_task(mate)
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")
    # Locally, an unrelated note (on a file's blob) that the remote does not have.
    git(local, "notes", "add", "-m", "local remark", "main:README.md")
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert {r["branch"]: r["status"] for r in result.json()["results"]} == {
        ALPHA: "created", BETA: "created"}
    refs = all_refs(remote)
    for branch in (ALPHA, BETA):
        assert refs[f"refs/heads/{branch}"] == git(local, "rev-parse", branch).strip()
    # Notes were merged (both sides kept) and pushed back.
    assert refs["refs/notes/commits"] == git(local, "rev-parse", "refs/notes/commits").strip()
    assert git(remote, "notes", "show", "main:README.md").strip() == "local remark"
    assert git(remote, "notes", "show", TASK).startswith(f"task_branch: {TASK}")
    assert git(local, "rev-parse", TASK) == git(mate, "rev-parse", TASK), "branches fetched"


def test_conflicting_notes_are_concatenated(team, cfg, cli, fake_runtime):
    remote, local, mate = team
    start_task(mate)
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")
    assert cli("sync", "--remote", "origin", "--repo", local, "--config", cfg).code == 0
    # Both sides annotate the same model commit with different feedback.
    git(mate, "fetch", "-q", "origin", "refs/notes/commits:refs/notes/commits",
        f"refs/heads/{ALPHA}:refs/heads/{ALPHA}")
    git(mate, "notes", "add", "-m", "Test errors too", ALPHA)
    git(mate, "push", "-q", "origin", "refs/notes/commits")
    git(local, "notes", "add", "-m", "Use setUp method", ALPHA)
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    merged = git(local, "notes", "show", f"{ALPHA}~1").splitlines()
    # union: the local note, a blank line, then the remote one, as `git notes append` writes.
    assert merged == ["Use setUp method", "", "Test errors too"]
    assert git(remote, "rev-parse", "refs/notes/commits") == git(local, "rev-parse",
                                                                   "refs/notes/commits")


def test_rejected_push_keeps_local_results_and_never_forces(team, cfg, cli, fake_runtime):
    remote, local, mate = team
    start_task(local)
    assert cli("sync", "--remote", "origin", "--repo", local, "--config", cfg).code == 0
    # Locally the models answer feedback (no remote); meanwhile the teammate pushes onto alpha.
    git(local, "notes", "add", "-m", "Use setUp method", BETA)
    assert cli("sync", "--repo", local, "--config", cfg).code == 0
    theirs = teammate_commit(mate, ALPHA, "import unittest\n# by the teammate\n")
    ours = git(local, "rev-parse", ALPHA).strip()

    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 4, result.err
    problems = result.json()["problems"]
    [rejected] = [p for p in problems if p["where"] == "push to origin"]
    assert f"refs/heads/{ALPHA} was rejected" in rejected["message"]
    assert "the local result is kept" in rejected["message"]
    assert f"merge origin/{ALPHA} into {ALPHA}" in rejected["message"]
    assert git(local, "rev-parse", ALPHA).strip() == ours
    assert git(remote, "rev-parse", ALPHA).strip() == theirs, "never force-pushed"
    # The branch nobody else moved was pushed.
    assert git(remote, "rev-parse", BETA) == git(local, "rev-parse", BETA)
    assert symergion_commits(local, TASK, ALPHA)[0]["subject"] == "Use setUp method"


def test_push_rejected_while_generating(team, cfg, cli, fake_runtime):
    """The remote branch moves after the fetch, while the model generates."""
    from tests.helpers.fleet import default_reply

    remote, local, mate = team
    start_task(local)
    assert cli("sync", "--remote", "origin", "--repo", local, "--config", cfg).code == 0
    git(local, "notes", "add", "-m", "Use setUp method", BETA)
    pushed = []

    def reply(model: str, prompt: str) -> str:
        if model == "alpha" and not pushed:
            pushed.append(teammate_commit(mate, ALPHA, "import unittest\n# teammate\n"))
        return default_reply(model, prompt)

    fake_runtime.reply = reply
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 4, result.err
    assert any(f"refs/heads/{ALPHA} was rejected" in p["message"]
               for p in result.json()["problems"])
    assert git(remote, "rev-parse", ALPHA).strip() == pushed[0]
    # The user merges the teammate's work as the hint says; the next round builds on the merge
    # and the push goes through, still without force.
    fake_runtime.reply = default_reply
    git(local, "fetch", "-q", "origin")
    merge = git(local, "commit-tree", f"{pushed[0]}^{{tree}}", "-p", ALPHA, "-p", pushed[0],
                "-m", "Merge the teammate's fix").strip()
    git(local, "update-ref", f"refs/heads/{ALPHA}", merge)
    git(local, "notes", "add", "-m", "Test errors too", BETA)
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert git(remote, "merge-base", "--is-ancestor", pushed[0], ALPHA) == ""
    assert git(remote, "log", "-1", "--format=%P", ALPHA).split() == [merge]


def test_remote_without_notes_still_fetches_branches(team, cfg, cli, fake_runtime):
    remote, local, mate = team
    # The remote has branches but no notes yet; the task note is local only.
    (mate / "extra.py").write_text("x = 1\n")
    git(mate, "add", "extra.py")
    git(mate, "commit", "-qm", "teammate's work")
    git(mate, "push", "-q", "origin", "main:teammate")
    start_task(local)
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert git(local, "rev-parse", "origin/teammate") == git(mate, "rev-parse", "HEAD")
    # Fetched, but not made a local branch: sync --remote only creates branches a task needs.
    assert "refs/heads/teammate" not in all_refs(local)
    task_tip = git(local, "rev-parse", TASK).strip()
    assert git(remote, "notes", "show", task_tip).startswith(f"task_branch: {TASK}")


def test_unreachable_remote_stops_before_any_work(team, cfg, cli, fake_runtime, tmp_path):
    _remote, local, _mate = team
    start_task(local)
    git(local, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    refs = all_refs(local)
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg)
    assert result.code == 1, result.err
    assert "cannot fetch from origin" in result.err and "gone.git" in result.err
    assert fake_runtime.calls == 0, "nothing was generated for a pass that cannot be shared"
    assert all_refs(local) == refs


def test_ci_without_a_git_identity(team, cfg, cli, fake_runtime, tmp_path, monkeypatch):
    """A CI runner often has no user.name/email: merging the remote's notes must still work."""
    remote, local, mate = team
    start_task(mate)
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")
    git(local, "notes", "add", "-m", "local remark", "main:README.md")  # notes diverge
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    for var in ("EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert git(remote, "notes", "show", "main:README.md").strip() == "local remark"
    assert git(remote, "notes", "show", TASK).startswith(f"task_branch: {TASK}")


def test_fetched_notes_cannot_write_ci_paths_or_move_other_branches(team, cfg, cli, fake_runtime,
                                                                     tmp_path):
    """A pushed note is someone else's input: no workflow file, no branch a task does not need."""
    import json

    remote, local, mate = team
    start_task(mate, destination=".github/workflows/x.yml")
    git(local, "branch", "shared")
    git(mate, "commit", "-q", "--allow-empty", "-m", "teammate's work")
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits", "HEAD:feature", "HEAD:shared")
    shared = git(local, "rev-parse", "shared")

    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 4, result.err
    [problem] = result.json()["problems"]
    assert "'.github/workflows/x.yml' is a CI, hook or git metadata path" in problem["message"]
    assert "allow_destinations" in problem["message"]
    assert git(local, "rev-parse", TASK) == git(mate, "rev-parse", TASK), "a task branch comes in"
    refs = all_refs(local)
    assert "refs/heads/feature" not in refs and git(local, "rev-parse", "shared") == shared
    assert not any(r.startswith(("refs/heads/alpha_", "refs/heads/beta_")) for r in all_refs(remote))

    allowing = tmp_path / "allowing.json"
    allowing.write_text(json.dumps({**json.loads(cfg.read_text()),
                                    "allow_destinations": [".github/workflows/*.yml"]}))
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", allowing, "--json")
    assert result.code == 0, result.err
    assert git(remote, "ls-tree", "--name-only", "-r", ALPHA, ".github").split() == [
        ".github/workflows/x.yml"]
