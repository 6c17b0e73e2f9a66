"""Point 4: changes are seen with loose and packed refs, in bare repos and linked worktrees,
after the notes ref is rewritten or pruned, and from inside a git hook; watch polls."""

from __future__ import annotations

import pytest

from symergion.app.lock import repo_lock
from symergion.app.watch import refs_state
from symergion.gitrepo import GitRepo
from tests.helpers.git import git
from tests.helpers.reliability import TASK, all_refs, start_task, symergion_commits, user_state

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


STORAGE = {
    "loose": [],
    "pack-refs": [["pack-refs", "--all"]],
    "gc": [["gc", "--quiet", "--prune=now"]],
}


@pytest.mark.parametrize("storage", list(STORAGE))
def test_changes_are_seen_however_refs_are_stored(repo_dir, cfg, cli, fake_runtime, storage):
    common = ("--repo", repo_dir, "--config", cfg)

    def store() -> None:
        for args in STORAGE[storage]:
            git(repo_dir, *args)
        if storage != "loose":
            assert not (repo_dir / ".git" / "refs" / "heads" / ALPHA).exists()
            assert not (repo_dir / ".git" / "refs" / "notes" / "commits").exists()

    repo = GitRepo(repo_dir)
    start_task(repo_dir)
    store()
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "created", BETA: "created"}
    state = refs_state(repo)
    store()
    assert refs_state(repo) == state, "packing moves no ref: watch must not fire"
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "up-to-date", BETA: "up-to-date"}

    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    store()
    assert refs_state(repo) != state
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "updated", BETA: "updated"}

    git(repo_dir, "branch", "-D", BETA)  # deleting a packed branch leaves no file to watch
    store()
    git(repo_dir, "notes", "add", "-m", "Test errors too", ALPHA)
    store()
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "updated", BETA: "skipped"}

    git(repo_dir, "branch", "-D", TASK)
    store()
    result = cli("sync", *common, "--json")
    assert statuses(result) == {ALPHA: "retired", BETA: "retired"}
    archived = git(repo_dir, "for-each-ref", "refs/symergion/archive").splitlines()
    assert len(archived) == 2


def test_bare_repository(repo_dir, tmp_path, cfg, cli, fake_runtime):
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(bare))
    main = git(bare, "rev-parse", "main").strip()
    # A task made with plumbing only: a ref and a notes commit, no work tree anywhere.
    git(bare, "update-ref", f"refs/heads/{TASK}", main)
    blob = git(bare, "hash-object", "-w", "--stdin", input=(
        f"task_branch: {TASK}, source: utils/capture_output.py, destination: t.py\n")).strip()
    tree = git(bare, "mktree", input=f"100644 blob {blob}\t{main}\n").strip()
    notes = git(bare, "commit-tree", tree, "-m", "Notes added by hand").strip()
    git(bare, "update-ref", "refs/notes/commits", notes)
    common = ("--repo", bare, "--config", cfg)
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "created", BETA: "created"}
    assert git(bare, "show", f"{ALPHA}:t.py").startswith("import unittest")
    result = cli("feedback", "Use setUp method", "--branch", ALPHA, *common, "--json")
    assert result.code == 0, result.err
    assert statuses(result) == {ALPHA: "updated", BETA: "updated"}
    assert cli("revoke", "--branch", BETA, *common).code == 0
    assert symergion_commits(bare, TASK, BETA)[0]["subject"].startswith("Revert:")
    assert not (bare / "index").exists(), "no index is ever written"
    assert not (bare / "t.py").exists()


def test_linked_worktree(repo_dir, tmp_path, cfg, cli, fake_runtime):
    tree = tmp_path / "wt"
    git(repo_dir, "worktree", "add", "-q", "-b", "feature", str(tree))
    (tree / "wip.txt").write_text("work in progress\n")
    start_task(tree, at="feature")
    common = ("--repo", tree, "--config", cfg)
    before_main, before_wt = user_state(repo_dir), user_state(tree)
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "created", BETA: "created"}
    # Both worktrees share one lock, in the common git dir.
    with repo_lock(repo_dir / ".git"):
        for path in (tree, repo_dir):
            result = cli("sync", "--repo", path, "--config", cfg)
            assert result.code == 3 and "is already working on this repository" in result.err
    # A model branch checked out in the linked worktree is not moved.
    git(tree, "checkout", "-q", ALPHA)
    git(repo_dir, "notes", "add", "-m", "Use setUp method", BETA)
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert statuses(result) == {ALPHA: "kept", BETA: "updated"}
    git(tree, "checkout", "-q", "feature")
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "updated", BETA: "up-to-date"}
    assert user_state(repo_dir) == before_main and user_state(tree) == before_wt


def two_feedbacks(repo_dir, cli, cfg) -> None:
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    # The first note goes on the tip whose id sorts last: sorted by target, the two would flip.
    tips = sorted((git(repo_dir, "rev-parse", b).strip(), b) for b in (ALPHA, BETA))
    git(repo_dir, "notes", "add", "-m", "first", tips[1][1])
    git(repo_dir, "notes", "add", "-m", "second", tips[0][1])
    assert cli("sync", *common).code == 0


def test_notes_ref_rewritten(repo_dir, cfg, cli, fake_runtime):
    """A squashed notes history (the same notes, one commit) changes nothing."""
    two_feedbacks(repo_dir, cli, cfg)
    refs = all_refs(repo_dir)
    squashed = git(repo_dir, "commit-tree", "refs/notes/commits^{tree}", "-m", "squash").strip()
    git(repo_dir, "update-ref", "refs/notes/commits", squashed)
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert statuses(result) == {ALPHA: "up-to-date", BETA: "up-to-date"}, result.out
    refs["refs/notes/commits"] = squashed
    assert all_refs(repo_dir) == refs


def test_notes_ref_rewritten_without_a_note(repo_dir, cfg, cli, fake_runtime):
    """A rewritten notes history that drops a feedback note reverts that feedback."""
    two_feedbacks(repo_dir, cli, cfg)
    first_commit = git(repo_dir, "log", "--format=%H", "-n2", "refs/notes/commits").split()[1]
    git(repo_dir, "update-ref", "refs/notes/commits", first_commit)
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert statuses(result) == {ALPHA: "updated", BETA: "updated"}
    assert symergion_commits(repo_dir, TASK, ALPHA)[0]["subject"] == "Revert: second"
    assert symergion_commits(repo_dir, TASK, BETA)[0]["subject"] == "Revert: second"


def test_notes_pruned_after_gc(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    start_task(repo_dir, "TestCase_other", destination="t_other.py")
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    # The other task ends by deleting its branch; its base commit becomes garbage.
    git(repo_dir, "branch", "-D", "TestCase_other")
    assert cli("sync", *common).code == 0
    git(repo_dir, "update-ref", "-d", "refs/symergion/archive/TestCase_other/alpha/" +
        git(repo_dir, "for-each-ref", "--format=%(refname:lstrip=5)",
            "refs/symergion/archive/TestCase_other/alpha").strip())
    git(repo_dir, "update-ref", "-d", "refs/symergion/archive/TestCase_other/beta/" +
        git(repo_dir, "for-each-ref", "--format=%(refname:lstrip=5)",
            "refs/symergion/archive/TestCase_other/beta").strip())
    git(repo_dir, "reflog", "expire", "--expire=now", "--all")
    git(repo_dir, "gc", "--quiet", "--prune=now")
    before = len(git(repo_dir, "notes", "list").splitlines())
    git(repo_dir, "notes", "prune")
    assert len(git(repo_dir, "notes", "list").splitlines()) == before - 1
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert statuses(result) == {ALPHA: "up-to-date", BETA: "up-to-date"}
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    git(repo_dir, "pack-refs", "--all")
    assert statuses(cli("sync", *common, "--json")) == {ALPHA: "updated", BETA: "updated"}


class Collect:
    """A watch printer that keeps the events."""

    def __init__(self) -> None:
        self.events: list = []

    def loading(self, model: str) -> None:
        self.events.append(("loading", model))

    def __call__(self, event) -> None:
        self.events.append(event)


def test_watch_polls_and_sees_a_change_that_leaves_no_loose_ref(repo_dir, cfg, fake_runtime):
    """watch finds work by polling refs: a note added and then packed changes no file under
    refs/, yet the next poll runs a pass."""
    import threading

    from symergion.app.watch import watch_loop

    start_task(repo_dir)
    printer = Collect()
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(watch_loop(
        repo_dir, cfg, None, interval=0.05, printer=printer, max_passes=2)))
    thread.start()
    try:
        deadline = 0
        while f"refs/heads/{BETA}" not in all_refs(repo_dir) and deadline < 400:
            deadline += 1
            threading.Event().wait(0.05)
        git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
        git(repo_dir, "pack-refs", "--all")
        assert not (repo_dir / ".git" / "refs" / "notes" / "commits").exists()
        thread.join(timeout=30)
    finally:
        assert not thread.is_alive(), "watch did not see the packed change"
    assert outcome == [0]
    assert symergion_commits(repo_dir, TASK, ALPHA)[0]["subject"] == "Use setUp method"
    done = [e for e in printer.events if not isinstance(e, tuple) and e.kind == "done"
            and e.cache]
    assert len(done) == 4  # two models, two passes: one line each
