"""Workflow flows that once went wrong, each on a real repository with fake engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.config.parse import parse_config
from symergion.core.ops import add_feedback, revoke_feedback, start_task
from symergion.errors import Cancelled, NoteError
from symergion.trailers import parse_trailers
from tests.helpers.fleet import FakeFleet, default_reply, make_config, original_templates
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"
ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"


def subject(path: Path, ref: str) -> str:
    return git(path, "log", "-1", "--format=%s", ref).strip()


def trailers(path: Path, ref: str) -> dict[str, str]:
    return parse_trailers(git(path, "log", "-1", "--format=%B", ref))


def applied(path: Path, ref: str) -> list[str]:
    """Return the annotated commits whose feedback the branch's last commit applied."""
    notes = trailers(path, ref)["Symergion-Notes"]
    return [] if notes == "-" else [item.split(":")[0] for item in notes.split()]


def hand_commit(path: Path, branch: str, name: str = "helper.py") -> str:
    git(path, "checkout", "-q", branch)
    (path / name).write_text("# by hand\n")
    git(path, "add", name)
    git(path, "commit", "-qm", "hand fix")
    git(path, "checkout", "-q", "main")
    return git(path, "rev-parse", branch).strip()


def test_feedback_on_a_hand_commit_regenerates_every_model(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    manual = hand_commit(repo_dir, ALPHA)
    branch, target = add_feedback(make_reconciler(repo_dir).repo, make_config(),
                                  "Use setUp method", ALPHA)
    assert (branch, target) == (ALPHA, manual)
    report = make_reconciler(repo_dir).sync()
    assert {r.branch: r.status for r in report.results} == {ALPHA: "updated", BETA: "updated"}
    for ref in (ALPHA, BETA):
        assert subject(repo_dir, ref) == "Use setUp method"
        assert applied(repo_dir, ref) == [manual]
    assert git(repo_dir, "log", "-1", "--format=%P", ALPHA).split()[0] == manual


def test_restarted_task_starts_without_the_old_feedback(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    make_reconciler(repo_dir).sync()
    assert len(applied(repo_dir, BETA)) == 1
    tip = git(repo_dir, "rev-parse", TASK).strip()
    git(repo_dir, "branch", "-D", TASK)
    assert {r.status for r in make_reconciler(repo_dir).sync().results} == {"retired"}
    git(repo_dir, "branch", TASK, tip)  # the same task, started again
    report = make_reconciler(repo_dir).sync()
    assert {r.status for r in report.results} == {"created"}
    for ref in (ALPHA, BETA):
        assert applied(repo_dir, ref) == []
        assert "Use setUp method" not in git(repo_dir, "show", f"{ref}:test_capture_output.py")


def test_a_task_restarted_twice_never_meets_an_archived_commit(repo_dir, make_reconciler,
                                                                monkeypatch):
    # Fixed dates stand for a restart within the same second: the new attempt's first commit
    # had the same tree, parent and message as the archived one, so it was the same commit,
    # and the feedback on it (given to the ended task) applied to the new one.
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    tip = git(repo_dir, "rev-parse", TASK).strip()
    archived: set[str] = set()
    for _attempt in range(2):
        git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
        archived |= {git(repo_dir, "rev-parse", ref).strip() for ref in (ALPHA, BETA)}
        git(repo_dir, "branch", "-D", TASK)
        assert {r.status for r in make_reconciler(repo_dir).sync().results} == {"retired"}
        git(repo_dir, "branch", TASK, tip)  # the same task, started again
        report = make_reconciler(repo_dir).sync()
        assert {r.status for r in report.results} == {"created"}
        assert [applied(repo_dir, ref) for ref in (ALPHA, BETA)] == [[], []]
        again = make_reconciler(repo_dir).sync()
        assert {r.status for r in again.results} == {"up-to-date"}
        assert not {git(repo_dir, "rev-parse", ref).strip() for ref in (ALPHA, BETA)} & archived


def test_revoking_one_tasks_section_of_a_shared_note_leaves_the_other_task(repo_dir,
                                                                          make_reconciler):
    config = make_config(("alpha",))
    git(repo_dir, "branch", "TestCase_a")
    git(repo_dir, "branch", "TestCase_b")
    git(repo_dir, "notes", "add", "-m",
        "task_branch: TestCase_a, source: utils/capture_output.py, destination: test_a.py\n"
        "task_branch: TestCase_b, source: utils/capture_output.py, destination: test_b.py",
        "main")
    make_reconciler(repo_dir, config).sync()
    # Both tasks move on to one shared commit, and a note there speaks to each of them.
    shared = git(repo_dir, "commit-tree", "main^{tree}", "-p", "main", "-m", "shared").strip()
    for task in ("TestCase_a", "TestCase_b"):
        git(repo_dir, "update-ref", f"refs/heads/{task}", shared)
    git(repo_dir, "notes", "add", "-m",
        "task_branch: TestCase_a, Test errors too\ntask_branch: TestCase_b, Use setUp method",
        shared)
    make_reconciler(repo_dir, config).sync()
    git(repo_dir, "notes", "add", "-m", "Add docstrings", "alpha_TestCase_b")
    make_reconciler(repo_dir, config).sync()
    b_before = git(repo_dir, "rev-parse", "alpha_TestCase_b").strip()
    assert applied(repo_dir, "alpha_TestCase_b")[0] == shared

    revoke_feedback(make_reconciler(repo_dir, config).repo, config, "alpha_TestCase_a")
    assert git(repo_dir, "notes", "show", shared).strip() == \
        "task_branch: TestCase_b, Use setUp method"
    report = make_reconciler(repo_dir, config).sync()
    statuses = {r.branch: r.status for r in report.results}
    assert statuses == {"alpha_TestCase_a": "updated", "alpha_TestCase_b": "up-to-date"}
    assert git(repo_dir, "rev-parse", "alpha_TestCase_b").strip() == b_before
    assert subject(repo_dir, "alpha_TestCase_a") == "Revert: Test errors too"


@pytest.mark.parametrize("how", ["note", "ergon start"])
def test_dot_slash_paths_are_the_same_paths(repo_dir, make_reconciler, how):
    if how == "note":
        git(repo_dir, "branch", TASK)
        git(repo_dir, "notes", "add", "-m", f"task_branch: {TASK}, source: ./utils/capture_output.py,"
            " destination: ./tests/./test_x.py", TASK)
    else:
        start_task(make_reconciler(repo_dir).repo, make_config(), TASK,
                   source="./utils/capture_output.py", destination="./tests/./test_x.py")
        assert "destination: tests/test_x.py" in git(repo_dir, "notes", "show", TASK)
    report = make_reconciler(repo_dir).sync()
    assert {r.status for r in report.results} == {"created"}, report.problems
    assert git(repo_dir, "ls-tree", "-r", "--name-only", ALPHA).split() == [
        "README.md", "tests/test_x.py", "utils/capture_output.py"]
    fsck = __import__("subprocess").run(["git", "fsck", "--strict"], cwd=repo_dir,
                                        capture_output=True, text=True, check=False)
    assert fsck.returncode == 0 and "hasDot" not in fsck.stdout + fsck.stderr


def test_amended_task_commit_is_a_problem_with_its_fix_not_an_end(repo_dir, make_reconciler):
    own = git(repo_dir, "commit-tree", "main^{tree}", "-p", "main", "-m", "task base").strip()
    git(repo_dir, "branch", TASK, own)
    git(repo_dir, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/capture_output.py, destination: t.py", own)
    make_reconciler(repo_dir).sync()
    heads = git(repo_dir, "rev-parse", ALPHA, BETA)
    amended = git(repo_dir, "commit-tree", "main^{tree}", "-p", "main", "-m", "task base!").strip()
    git(repo_dir, "update-ref", f"refs/heads/{TASK}", amended)

    report = make_reconciler(repo_dir).sync()
    assert report.results == [] and report.failed
    [problem] = report.problems
    assert f"git notes copy {own} {amended}" in problem.message
    assert git(repo_dir, "rev-parse", ALPHA, BETA) == heads, "the task did not end"
    assert git(repo_dir, "for-each-ref", "refs/symergion/archive") == ""

    git(repo_dir, "notes", "copy", own, amended)
    report = make_reconciler(repo_dir).sync()
    assert not report.problems
    assert {r.status for r in report.results} == {"up-to-date"}


def test_a_config_without_the_tasks_template_never_retires_it(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    heads = git(repo_dir, "rev-parse", ALPHA, BETA)
    other = make_config(templates={"Feature": {"params": {"destination": "destination:\\s*(\\S+)"},
                                               "call_to_action": "Write it"}})
    report = make_reconciler(repo_dir, other).sync()
    assert [r.status for r in report.results] == []
    assert any("matches no template" in p.message for p in report.problems)
    assert git(repo_dir, "rev-parse", ALPHA, BETA) == heads
    assert {r.status for r in make_reconciler(repo_dir).sync().results} == {"up-to-date"}


def test_nothing_that_parses_is_a_problem_not_an_empty_file(repo_dir, make_reconciler, fleet):
    config = make_config(("alpha",), templates={"TestCase": {
        "params": {"destination": "destination:[\\s]*([\\p{L}\\p{N}_\\-\\.\\/]+)"},
        "call_to_action": "Write tests", "code_starter": ""}})
    fleet.reply = lambda model, prompt: "def broken(:\n" + "(" * 5000 + "\n"
    git(repo_dir, "branch", TASK)
    git(repo_dir, "notes", "add", "-m", f"task_branch: {TASK}, destination: t.py", TASK)
    report = make_reconciler(repo_dir, config).sync()
    [result] = report.results
    assert result.status == "failed" and "nothing alpha wrote is a valid py file" in result.reason
    assert report.failed
    assert git(repo_dir, "branch", "--list", f"alpha_{TASK}").strip() == ""


def reasoner_config():
    return parse_config({"checkpoints": [
        {"name_or_path": "alpha.gguf", "trait": "coding"},
        {"name_or_path": "thinker.gguf", "trait": "reasoning",
         "reasoning_start_tokens": [7], "reasoning_stop_tokens": [8]}],
        "templates": original_templates()}, base_dir=Path("."))


def test_a_stop_during_reasoning_is_a_stop_not_a_problem(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir, reasoner_config())

    def reply(model: str, prompt: str) -> str:
        if model == "thinker":
            reconciler.cancel.set()  # Ctrl-C while the reasoner thinks
            return "<7>" + "Think about it. " * 40 + "<8>"
        return default_reply(model, prompt)

    reconciler.engines = FakeFleet(reply)
    with pytest.raises(Cancelled):
        reconciler.sync()
    assert git(repo_dir, "branch", "--list", f"alpha_{TASK}").strip() == ""


def test_deleting_the_cache_never_reruns_the_reasoner(repo_dir, make_reconciler, tmp_path):
    replies = iter(["<7>Cover empty output.<8>", "<7>Something else entirely.<8>"])
    thinking = []

    def reply(model: str, prompt: str) -> str:
        if model == "thinker":
            thinking.append(prompt)
            return next(replies)
        return default_reply(model, prompt)

    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir, reasoner_config())
    reconciler.engines = FakeFleet(reply)
    reconciler.sync()
    first = git(repo_dir, "show", f"alpha_{TASK}:test_capture_output.py")
    git(repo_dir, "notes", "add", "-m", "Use setUp method", f"alpha_{TASK}")
    for attempt in range(2):
        reconciler = make_reconciler(repo_dir, reasoner_config())
        reconciler.store = type(reconciler.store)(tmp_path / f"empty-{attempt}", 100)
        reconciler.engines = FakeFleet(reply)
        report = reconciler.sync()
        assert not report.problems
    assert len(thinking) == 1, "the reasoning came from the repository"
    prompt_rows = git(repo_dir, "log", "-1", "--format=%B", f"alpha_{TASK}~1")
    assert "Cover empty output." in prompt_rows
    git(repo_dir, "notes", "remove", f"alpha_{TASK}~1")
    reconciler = make_reconciler(repo_dir, reasoner_config())
    reconciler.store = type(reconciler.store)(tmp_path / "empty-last", 100)
    reconciler.engines = FakeFleet(reply)
    reconciler.sync()
    assert git(repo_dir, "show", f"alpha_{TASK}:test_capture_output.py") == first


def test_ergon_start_writes_the_configs_grammar_and_refuses_what_it_cannot_carry(
        repo_dir, make_reconciler):
    config = make_config(("alpha",), task_branch_spec="ergon:[\\s]*([\\p{L}\\p{N}_\\-\\.\\/]+)")
    repo = make_reconciler(repo_dir, config).repo
    start_task(repo, config, TASK, source="utils/capture_output.py", destination="t.py")
    assert git(repo_dir, "notes", "show", TASK).startswith(f"ergon: {TASK}, ")
    report = make_reconciler(repo_dir, config).sync()
    assert [r.status for r in report.results] == ["created"]

    with pytest.raises(NoteError, match=r"cannot carry the destination 'tests/test x\+y\.py'"):
        start_task(repo, config, "TestCase_other", source="utils/capture_output.py",
                   destination="tests/test x+y.py")
    assert git(repo_dir, "branch", "--list", "TestCase_other").strip() == ""


def test_status_and_list_are_views_of_the_plan(repo_dir, make_reconciler, fleet):
    from symergion.core.ops import current_views

    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    git(repo_dir, "branch", "-D", BETA)
    calls = fleet.calls
    views = current_views(make_reconciler(repo_dir).repo, make_config())
    assert {r["branch"]: r["state"] for r in views.rows} == {ALPHA: "pending", BETA: "deleted"}
    assert views.tasks[0].feedback == ["Use setUp method"]
    assert fleet.calls == calls, "a view loads no model"



def test_a_lost_race_re_reads_and_re_plans_only_that_branch(repo_dir, make_reconciler, fleet,
                                                            monkeypatch):
    import symergion.core.execute as execute
    import symergion.core.publish as publish

    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    raced: list[str] = []

    def reply(model: str, prompt: str) -> str:
        if model == "alpha" and not raced:  # the user commits while alpha generates
            raced.append(git(repo_dir, "commit-tree", f"{ALPHA}^{{tree}}", "-p", ALPHA, "-m",
                             "user commit").strip())
            git(repo_dir, "update-ref", f"refs/heads/{ALPHA}", raced[0])
        return default_reply(model, prompt)

    fleet.reply = reply
    reads: list[int] = []
    refreshed: list[str] = []
    real_read, real_refresh = execute.read_state, publish.refresh_branch

    def counted_read(*args):
        reads.append(1)
        return real_read(*args)

    def counted_refresh(repo, state, task, base, model, tip):
        refreshed.append(model)
        return real_refresh(repo, state, task, base, model, tip)

    monkeypatch.setattr(execute, "read_state", counted_read)
    monkeypatch.setattr(publish, "refresh_branch", counted_refresh)
    report = make_reconciler(repo_dir).sync()
    assert {r.branch: r.status for r in report.results} == {ALPHA: "updated", BETA: "updated"}
    assert (len(reads), refreshed) == (1, ["alpha"])
    assert git(repo_dir, "log", "-1", "--format=%P", ALPHA).split() == raced


def test_a_damaged_response_in_the_store_is_a_miss_not_a_failure(repo_dir, make_reconciler, fleet,
                                                                 tmp_path):
    import diskcache

    other = tmp_path / "other"  # the same repository and task: the pass asks for the same keys
    git(tmp_path, "clone", "-q", str(repo_dir), str(other))
    start_task_with_git(repo_dir)
    start_task_with_git(other)
    store = tmp_path / "store"
    assert not make_reconciler(repo_dir, store_dir=store).sync().problems
    with diskcache.Cache(str(store)) as raw:  # written by another version, or damaged
        keys = list(raw)
        assert keys
        for key in keys:
            raw[key] = {"text": "x", "unknown": 1}
    calls = sum(len(engine.calls) for engine in fleet.engines.values())
    report = make_reconciler(other, store_dir=store).sync()
    assert not report.problems
    assert sum(len(engine.calls) for engine in fleet.engines.values()) > calls  # generated again
    assert (git(other, "show", f"alpha_{TASK}:test_capture_output.py")
            == git(repo_dir, "show", f"alpha_{TASK}:test_capture_output.py"))


def test_revoking_feedback_brings_back_the_hand_edit_it_was_given_on(repo_dir, make_reconciler):
    # The feedback answer replaced the file the user had edited by hand; revoking the feedback
    # must bring back that file, not only the model's answer under the hand edit.
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    git(repo_dir, "checkout", "-q", ALPHA)
    path = repo_dir / "test_capture_output.py"
    path.write_text(path.read_text() + "\n# fixed by hand\n")
    git(repo_dir, "commit", "-qam", "hand edit")
    git(repo_dir, "checkout", "-q", "main")
    manual = git(repo_dir, "rev-parse", ALPHA).strip()
    add_feedback(make_reconciler(repo_dir).repo, make_config(), "Use setUp method", ALPHA)
    make_reconciler(repo_dir).sync()
    assert "# fixed by hand" not in git(repo_dir, "show", f"{ALPHA}:test_capture_output.py")
    revoke_feedback(make_reconciler(repo_dir).repo, make_config(), ALPHA)
    report = make_reconciler(repo_dir).sync()
    assert {r.branch: r.status for r in report.results}[ALPHA] == "updated"
    assert (git(repo_dir, "show", f"{ALPHA}:test_capture_output.py")
            == git(repo_dir, "show", f"{manual}:test_capture_output.py"))
    message = git(repo_dir, "log", "-1", "--format=%B", ALPHA)
    assert message.startswith("Revert: Use setUp method\nKeeps the hand edit of " + manual[:12])
    assert trailers(repo_dir, ALPHA)["Symergion-Tokens"] == "0"
    assert trailers(repo_dir, ALPHA)["Symergion-Hand"] == manual
    # The other model had no hand edit: it gets its earlier answer back, as before.
    assert git(repo_dir, "rev-parse", f"{BETA}~2:test_capture_output.py") == git(
        repo_dir, "rev-parse", f"{BETA}:test_capture_output.py")
    # A later pass finds the branch up to date: the restored file answers the prompt.
    assert {r.status for r in make_reconciler(repo_dir).sync().results} == {"up-to-date"}
