"""The original README's workflow with plain git commands, on real repositories, fake engines."""

from __future__ import annotations

import ast
from pathlib import Path

from symergion.core.execute import Event
from symergion.gitrepo import ARCHIVE_REFS
from symergion.trailers import parse_trailers
from tests.helpers.fleet import make_config
from tests.helpers.git import git, repo_state, start_task_with_git

TASK = "TestCase_capture_output"
ALPHA = f"alpha_{TASK}"
BETA = f"beta_{TASK}"


def subjects(path: Path, branch: str) -> list[str]:
    """Return the commit messages (without trailers) on ``branch`` since the task branch."""
    out = git(path, "log", "--format=%B%x1e", f"{TASK}..{branch}")
    return [m.strip().split("\n\nSymergion-Model")[0] for m in out.split("\x1e") if m.strip()]


def file_at(path: Path, ref: str, name: str = "test_capture_output.py") -> str:
    return git(path, "show", f"{ref}:{name}")


def test_start_creates_one_branch_per_coder_with_initial_prompt(repo_dir, make_reconciler, fleet):
    start_task_with_git(repo_dir)
    report = make_reconciler(repo_dir).sync()

    assert {r.branch: r.status for r in report.results} == {ALPHA: "created", BETA: "created"}
    assert not report.problems
    for branch in (ALPHA, BETA):
        [message] = subjects(repo_dir, branch)
        assert message.startswith("Create unittest TestCase for the function capture_output")
        content = file_at(repo_dir, branch)
        assert content.startswith("import unittest\n")
        ast.parse(content)
        author = git(repo_dir, "log", "-1", "--format=%an", branch).strip()
        assert author == branch.split("_")[0]
        # The diff against the task branch touches only the destination.
        changed = git(repo_dir, "diff", "--name-only", f"{TASK}..{branch}").split()
        assert changed == ["test_capture_output.py"]
    assert fleet.calls == 2


def test_second_sync_creates_nothing(repo_dir, make_reconciler, fleet):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    refs_before = git(repo_dir, "for-each-ref")
    report = make_reconciler(repo_dir).sync()
    assert [r.status for r in report.results] == ["up-to-date", "up-to-date"]
    assert git(repo_dir, "for-each-ref") == refs_before
    assert fleet.calls == 2


def test_feedback_revoke_and_end(repo_dir, make_reconciler, fleet):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    first = {b: file_at(repo_dir, b) for b in (ALPHA, BETA)}

    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    report = make_reconciler(repo_dir).sync()
    assert {r.status for r in report.results} == {"updated"}
    for branch in (ALPHA, BETA):
        assert subjects(repo_dir, branch)[0] == "Use setUp method"
        assert "Use setUp method" in file_at(repo_dir, branch)
    calls_after_feedback = fleet.calls
    assert calls_after_feedback == 4

    note_target = git(repo_dir, "rev-parse", ALPHA + "~1").strip()
    assert git(repo_dir, "notes", "show", note_target).strip() == "Use setUp method"
    git(repo_dir, "notes", "remove", note_target)
    report = make_reconciler(repo_dir).sync()
    assert {r.cache for r in report.results} == {"hit"}
    assert fleet.calls == calls_after_feedback, "a revoke must not call the model"
    for branch in (ALPHA, BETA):
        assert subjects(repo_dir, branch)[0] == "Revert: Use setUp method"
        assert file_at(repo_dir, branch) == first[branch], "revert restores bytes exactly"

    # A second, more specific feedback.
    git(repo_dir, "notes", "add", "-m", "Use setUp for the functions under test", BETA)
    make_reconciler(repo_dir).sync()
    assert subjects(repo_dir, ALPHA)[0] == "Use setUp for the functions under test"

    # Merge the winner, delete the task branch: the task ends, branches are archived.
    winner = git(repo_dir, "rev-parse", BETA).strip()
    git(repo_dir, "merge", "-q", "--no-edit", BETA)
    git(repo_dir, "branch", "-D", TASK)
    report = make_reconciler(repo_dir).sync()
    assert sorted(r.status for r in report.results) == ["retired", "retired"]
    assert git(repo_dir, "branch", "--list", "*_" + TASK).strip() == ""
    archived = git(repo_dir, "for-each-ref", "--format=%(objectname) %(refname)", ARCHIVE_REFS)
    assert winner in archived and len(archived.splitlines()) == 2
    assert make_reconciler(repo_dir).sync().results == []


def test_user_work_is_untouched(repo_dir, make_reconciler):
    (repo_dir / "README.md").write_text("unstaged change\n")
    (repo_dir / "new.txt").write_text("untracked\n")
    (repo_dir / "staged.txt").write_text("staged\n")
    git(repo_dir, "add", "staged.txt")
    start_task_with_git(repo_dir)
    git(repo_dir, "checkout", "-q", TASK)
    before = repo_state(repo_dir)
    main_before = git(repo_dir, "rev-parse", "main", TASK)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "notes", "add", "-m", "More tests", ALPHA)
    make_reconciler(repo_dir).sync()
    assert repo_state(repo_dir) == before
    assert git(repo_dir, "rev-parse", "main", TASK) == main_before


def test_deleted_model_branch_is_not_regenerated(repo_dir, make_reconciler, fleet):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "branch", "-D", BETA)
    git(repo_dir, "notes", "add", "-m", "Add a docstring", ALPHA)
    report = make_reconciler(repo_dir).sync()
    statuses = {r.branch: r.status for r in report.results}
    assert statuses == {ALPHA: "updated", BETA: "skipped"}
    assert git(repo_dir, "branch", "--list", BETA).strip() == ""


def test_user_commit_on_model_branch_is_kept_and_built_upon(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    # The human finishes the job by hand on the model branch ("last changes").
    git(repo_dir, "checkout", "-q", ALPHA)
    (repo_dir / "test_capture_output.py").write_text("import unittest\n# by hand\n")
    git(repo_dir, "commit", "-qam", "manual fix")
    manual = git(repo_dir, "rev-parse", "HEAD").strip()
    git(repo_dir, "checkout", "-q", "main")
    assert all(r.status == "up-to-date" for r in make_reconciler(repo_dir).sync().results)
    git(repo_dir, "notes", "add", "-m", "Test errors too", f"beta_{TASK}")
    make_reconciler(repo_dir).sync()
    parents = git(repo_dir, "log", "-1", "--format=%P", ALPHA).split()
    assert parents[0] == manual, "the new attempt builds on the user's commit"


def test_commit_trailers_make_reconcile_exact(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    trailers = parse_trailers(git(repo_dir, "log", "-1", "--format=%B", ALPHA))
    assert trailers["Symergion-Model"] == "alpha"
    assert trailers["Symergion-Task"] == TASK
    assert len(trailers["Symergion-Prompt"]) == 64
    assert trailers["Symergion-Notes"] == "-"
    assert trailers["Symergion-Cache"] == "miss"
    assert int(trailers["Symergion-Tokens"]) > 0
    assert "Symergion-Stop" in trailers and "Symergion-Trimmed" in trailers


def test_feedback_order_follows_notes_history(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    # Two notes added before a sync, on different branches: order = order added.
    git(repo_dir, "notes", "add", "-m", "second", BETA)
    git(repo_dir, "notes", "add", "-m", "first?", ALPHA)
    plan = make_reconciler(repo_dir).plan()
    assert [f.text for f in plan.tasks[0].task.feedback] == ["second", "first?"]


def test_one_note_starts_two_tasks(repo_dir, make_reconciler):
    git(repo_dir, "branch", "TestCase_a")
    git(repo_dir, "branch", "TestCase_b")
    git(repo_dir, "notes", "add", "-m",
        "task_branch: TestCase_a, source: utils/capture_output.py, destination: test_a.py\n"
        "task_branch: TestCase_b, source: utils/capture_output.py, destination: test_b.py",
        "main")
    report = make_reconciler(repo_dir, make_config(("alpha",))).sync()
    assert sorted(r.branch for r in report.results) == ["alpha_TestCase_a", "alpha_TestCase_b"]
    assert file_at(repo_dir, "alpha_TestCase_b", "test_b.py").startswith("import unittest")


def test_progress_events(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    events: list[Event] = []
    make_reconciler(repo_dir, events=events).sync()
    done = [e for e in events if e.kind == "done"]
    assert {e.model for e in done} == {"alpha", "beta"}
    assert all(e.cache == "miss" and e.tokens > 0 for e in done)


def test_removing_the_initial_note_ends_the_task(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    alpha = git(repo_dir, "rev-parse", ALPHA).strip()
    git(repo_dir, "notes", "remove", TASK)
    report = make_reconciler(repo_dir).sync()
    assert sorted((r.branch, r.status) for r in report.results) == [(ALPHA, "retired"),
                                                                   (BETA, "retired")]
    assert git(repo_dir, "branch", "--list", f"*_{TASK}").strip() == ""
    archived = git(repo_dir, "for-each-ref", "--format=%(objectname)", f"{ARCHIVE_REFS}/{TASK}/alpha")
    assert archived.strip() == alpha, "the retired attempt stays reachable"
    # Annotating again restarts the task from scratch.
    git(repo_dir, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/capture_output.py, destination: t.py", TASK)
    report = make_reconciler(repo_dir).sync()
    assert {r.status for r in report.results} == {"created"}


def test_checked_out_model_branch_is_kept_when_task_ends(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "checkout", "-q", ALPHA)
    git(repo_dir, "branch", "-D", TASK)
    report = make_reconciler(repo_dir).sync()
    assert {r.branch: r.status for r in report.results} == {ALPHA: "kept", BETA: "retired"}
    assert git(repo_dir, "symbolic-ref", "HEAD").strip() == f"refs/heads/{ALPHA}"
    git(repo_dir, "checkout", "-q", "main")
    report = make_reconciler(repo_dir).sync()
    assert [(r.branch, r.status) for r in report.results] == [(ALPHA, "retired")]


def test_ergon_start_on_a_shared_commit_appends_a_section(repo_dir, make_reconciler):
    from symergion.core.ops import start_task

    reconciler = make_reconciler(repo_dir, make_config(("alpha",)))
    config = reconciler.config
    start_task(reconciler.repo, config, "TestCase_a", source="utils/capture_output.py",
               destination="test_a.py")
    start_task(reconciler.repo, config, "TestCase_b", source="utils/capture_output.py",
               destination="test_b.py")
    note = git(repo_dir, "notes", "show", "main")
    assert "task_branch: TestCase_a" in note and "task_branch: TestCase_b" in note
    report = reconciler.sync()
    assert sorted(r.branch for r in report.results) == ["alpha_TestCase_a", "alpha_TestCase_b"]


def test_task_branch_moving_on_regenerates_on_top_of_it(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    # The human improves the source on the task branch.
    git(repo_dir, "checkout", "-q", TASK)
    source = repo_dir / "utils" / "capture_output.py"
    source.write_text(source.read_text() + "\n\ndef capture_errors(func):\n    return ''\n")
    git(repo_dir, "commit", "-qam", "Add capture_errors")
    git(repo_dir, "checkout", "-q", "main")
    tip = git(repo_dir, "rev-parse", TASK).strip()

    report = make_reconciler(repo_dir).sync()
    assert {r.status for r in report.results} == {"updated"}
    message = subjects(repo_dir, ALPHA)[0]
    assert message == "Regenerate: the task's inputs changed"
    parents = git(repo_dir, "log", "-1", "--format=%P", ALPHA).split()
    assert tip in parents, "the model branch merges the task branch's new tip"
    assert git(repo_dir, "diff", "--name-only", f"{TASK}..{ALPHA}").split() == [
        "test_capture_output.py"]
    assert make_reconciler(repo_dir).sync().changed() == []
