"""The git side of the trust boundaries, on real git and fake engines: hand work is merged and
never dropped, a note edited by hand never ends a task, revoke removes only feedback, SHA-256
repositories work, fetched notes may not name dot-paths, and odd names are refused early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.app.demo import SOURCE
from symergion.gitrepo import GitRepo
from tests.helpers.git import git
from tests.helpers.reliability import TASK, all_refs, commit_files, start_task

ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"
SPEC = f"task_branch: {TASK}, source: utils/capture_output.py, destination: test_capture_output.py"


def rev(path: Path, name: str) -> str:
    return git(path, "rev-parse", name).strip()


def move(path: Path, branch: str, files: dict[str, str], message: str) -> str:
    """Commit ``files`` on top of ``branch`` by hand (plumbing) and move the branch there."""
    commit = commit_files(path, {n: ("100644", t) for n, t in files.items()}, at=branch,
                          message=message)
    git(path, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def archived(path: Path) -> list[str]:
    return [r for r in all_refs(path) if r.startswith("refs/symergion/archive/")]


# -- hand work on a model branch survives a moved task tip -----------------------------------


def test_hand_work_is_merged_when_the_task_tip_moves(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    hand = move(repo_dir, ALPHA, {"helper.py": "HELP = 1\n"}, "a helper, by hand")
    moved = move(repo_dir, TASK, {"utils/capture_output.py": SOURCE + "\n# changed\n"},
                 "change the source")

    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert {r["branch"]: r["status"] for r in result.json()["results"]} == {
        ALPHA: "updated", BETA: "updated"}
    tip = rev(repo_dir, ALPHA)
    assert git(repo_dir, "show", f"{tip}:helper.py") == "HELP = 1\n", "the hand work stayed"
    assert git(repo_dir, "show", f"{tip}:utils/capture_output.py").endswith("# changed\n")
    assert git(repo_dir, "rev-list", "--parents", "-n1", tip).split()[1:] == [hand, moved]
    # And on every later pass too: feedback regenerates on top of the merge.
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    assert cli("sync", *common).code == 0
    assert git(repo_dir, "show", f"{ALPHA}:helper.py") == "HELP = 1\n"


def test_a_conflict_with_the_task_tip_publishes_nothing_and_says_how_to_merge(
        repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    move(repo_dir, ALPHA, {"README.md": "alpha's readme\n"}, "hand edit")
    before = rev(repo_dir, ALPHA)
    move(repo_dir, TASK, {"README.md": "the task's readme\n",
                          "utils/capture_output.py": SOURCE + "\n# changed\n"}, "task edit")

    result = cli("sync", *common, "--json")
    assert result.code != 0
    rows = {r["branch"]: r for r in result.json()["results"]}
    assert rows[BETA]["status"] == "updated"
    assert rows[ALPHA]["status"] == "failed"
    assert "README.md" in rows[ALPHA]["reason"]
    assert f"git merge {TASK}" in rows[ALPHA]["reason"]
    assert rev(repo_dir, ALPHA) == before, "nothing was published for the conflicting branch"

    # The user merges by hand; the next pass builds on the merge.
    git(repo_dir, "checkout", "-q", ALPHA)
    git(repo_dir, "merge", "-q", "-X", "ours", "-m", "merge the task", TASK)
    merged = rev(repo_dir, "HEAD")
    git(repo_dir, "checkout", "-q", "main")
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert git(repo_dir, "rev-list", "--parents", "-n1", ALPHA).split()[1:] == [merged]
    assert git(repo_dir, "show", f"{ALPHA}:README.md") == "alpha's readme\n"


@pytest.mark.parametrize("merge_tree", [True, False], ids=["merge-tree", "read-tree"])
def test_merge_is_three_way_with_and_without_merge_tree(repo_dir, merge_tree):
    lines = "".join(f"line {i}\n" for i in range(10))
    git(repo_dir, "branch", "ours")
    git(repo_dir, "branch", "theirs")
    base = move(repo_dir, "main", {"text.txt": lines}, "base")
    git(repo_dir, "branch", "-f", "ours", base)
    git(repo_dir, "branch", "-f", "theirs", base)
    ours = move(repo_dir, "ours", {"text.txt": lines.replace("line 1\n", "line one\n"),
                                   "ours.txt": "o\n"}, "ours")
    theirs = move(repo_dir, "theirs", {"text.txt": lines.replace("line 8\n", "line eight\n"),
                                       "theirs.txt": "t\n", "dest.py": "theirs\n"}, "theirs")
    with GitRepo(repo_dir) as repo:
        repo._merge_tree = merge_tree
        merged = repo.merge(ours, theirs)
        assert merged.conflicts == ()
        names = git(repo_dir, "ls-tree", "--name-only", merged.tree).split()
        assert {"ours.txt", "theirs.txt", "dest.py", "README.md"} <= set(names)
        text = git(repo_dir, "cat-file", "blob", f"{merged.tree}:text.txt")
        assert "line one\n" in text and "line eight\n" in text
        # Both sides change the same line: a conflict, named; unless the caller replaces it.
        clash = move(repo_dir, "ours", {"dest.py": "ours\n"}, "ours again")
        assert repo.merge(clash, theirs).conflicts == ("dest.py",)
        assert repo.merge(clash, theirs, replaced="dest.py").tree


# -- a note edited by hand never ends the task -----------------------------------------------


def sync_with_feedback_and_hand_work(repo_dir: Path, cli, common) -> str:
    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    assert cli("sync", *common).code == 0
    return move(repo_dir, ALPHA, {"helper.py": "HELP = 1\n"}, "by hand")


@pytest.mark.parametrize("broken", [
    SPEC.replace("destination:", "destnation:"),
    SPEC.replace("task_branch:", "task_brnch:"),
    f"task_branch: {TASK} source utils/capture_output.py",
], ids=["destination", "task_branch", "no-separators"])
def test_a_note_that_stops_parsing_keeps_the_task(repo_dir, cfg, cli, fake_runtime, broken):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    hand = sync_with_feedback_and_hand_work(repo_dir, cli, common)
    heads = {b: rev(repo_dir, b) for b in (ALPHA, BETA)}
    git(repo_dir, "notes", "add", "-f", "-m", broken, TASK)

    result = cli("sync", *common, "--json")
    assert result.code != 0, "a broken note is a problem, not a quiet end"
    problems = result.json()["problems"]
    assert {p["where"] for p in problems} == {f"note on {rev(repo_dir, TASK)[:12]}"}
    assert any("kept" in p["message"] and "git notes edit" in p["message"] for p in problems)
    assert {b: rev(repo_dir, b) for b in (ALPHA, BETA)} == heads
    assert archived(repo_dir) == []

    # Fixed, the task goes on where it was: no restart, the hand work and feedback stay.
    git(repo_dir, "notes", "add", "-f", "-m", SPEC, TASK)
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert git(repo_dir, "merge-base", "--is-ancestor", hand, ALPHA) == ""
    assert "Symergion-Restart" not in git(repo_dir, "log", "--format=%B", f"{TASK}..{ALPHA}")
    assert archived(repo_dir) == []


@pytest.mark.parametrize("how", ["core.notesRef", "GIT_NOTES_REF"])
def test_another_notes_ref_neither_retires_tasks_nor_passes_silently(
        repo_dir, cfg, cli, fake_runtime, monkeypatch, how):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    heads = {b: rev(repo_dir, b) for b in (ALPHA, BETA)}
    if how == "core.notesRef":
        git(repo_dir, "config", "core.notesRef", "refs/notes/review")
    else:
        monkeypatch.setenv("GIT_NOTES_REF", "refs/notes/review")

    result = cli("sync", *common, "--json")
    assert result.code != 0
    [problem] = result.json()["problems"]
    assert "refs/notes/review" in problem["message"] and "refs/notes/commits" in problem["message"]
    assert {b: rev(repo_dir, b) for b in (ALPHA, BETA)} == heads
    assert archived(repo_dir) == []
    # Feedback given through symergion lands where its tasks are.
    result = cli("feedback", "Use setUp method", "--branch", ALPHA, *common, "--json")
    assert rev(repo_dir, ALPHA) != heads[ALPHA]
    assert "Use setUp method" in git(repo_dir, "notes", "--ref", "refs/notes/commits", "show",
                                     heads[ALPHA])


def test_deleting_the_task_branch_still_ends_the_task(repo_dir, cfg, cli, fake_runtime):
    """A note that still names the task does not hold it once its branch is gone."""
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "branch", "-D", TASK)
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert {r["status"] for r in result.json()["results"]} == {"retired"}
    assert len(archived(repo_dir)) == 2


# -- revoke removes only feedback ------------------------------------------------------------


def test_revoke_of_feedback_appended_to_the_task_note_keeps_the_spec(
        repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    common = ("--repo", repo_dir, "--config", cfg)
    assert cli("sync", *common).code == 0
    git(repo_dir, "notes", "append", "-m", f"task_branch: {TASK}, Use setUp method", TASK)
    assert cli("sync", *common).code == 0
    assert git(repo_dir, "log", "-1", "--format=%s", ALPHA).strip() == "Use setUp method"

    result = cli("revoke", "--branch", ALPHA, *common, "--json")
    assert result.code == 0, result.err
    note = git(repo_dir, "notes", "show", TASK)
    assert "destination: test_capture_output.py" in note and "Use setUp method" not in note
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert archived(repo_dir) == []
    assert git(repo_dir, "log", "-1", "--format=%s", ALPHA).strip() == (
        "Revert: Use setUp method")


# -- SHA-256 repositories ----------------------------------------------------------------------


def test_the_readme_workflow_runs_in_a_sha256_repository(tmp_path, cfg, cli, fake_runtime):
    path = tmp_path / "sha256"
    path.mkdir()
    git(path, "init", "-q", "--object-format=sha256", "-b", "main")
    (path / "utils").mkdir()
    (path / "utils" / "capture_output.py").write_text(SOURCE)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    assert len(rev(path, "HEAD")) == 64
    common = ("--repo", path, "--config", cfg)

    result = cli("ergon", "start", TASK, "-s", "utils/capture_output.py", "-d",
                 "test_capture_output.py", *common)
    assert result.code == 0, result.err
    assert {len(rev(path, b)) for b in (ALPHA, BETA)} == {64}
    assert cli("sync", *common).code == 0
    result = cli("feedback", "Use setUp method", "--branch", ALPHA, *common)
    assert result.code == 0, result.err
    assert git(path, "log", "-1", "--format=%s", BETA).strip() == "Use setUp method"
    result = cli("revoke", "--branch", ALPHA, *common)
    assert result.code == 0, result.err
    assert git(path, "log", "-1", "--format=%s", BETA).strip() == "Revert: Use setUp method"
    result = cli("status", *common, "--json")
    assert {r["state"] for r in result.json()["branches"]} == {"up-to-date"}
    git(path, "branch", "-D", TASK)
    result = cli("sync", *common, "--json")
    assert result.code == 0, result.err
    assert {r["status"] for r in result.json()["results"]} == {"retired"}
    assert len(archived(path)) == 2 and not any(
        r.startswith(("refs/heads/alpha_", "refs/heads/beta_")) for r in all_refs(path))
    git(path, "fsck", "--no-progress")


# -- destinations --------------------------------------------------------------------------------


@pytest.mark.parametrize("destination", [
    ".gitea/workflows/x.yml", ".forgejo/workflows/x.yml", "bitbucket-pipelines.yml",
    ".cirrus.yml", "appveyor.yml", ".semaphore/semaphore.yml", ".lfsconfig",
    ".vscode/tasks.json", ".GITHUB/workflows/x.yml", ".Husky/pre-commit", "sub/.gitattributes",
    "JENKINSFILE",
])
def test_ci_and_hook_paths_are_refused_in_any_case(repo_dir, cfg, cli, fake_runtime, destination):
    start_task(repo_dir, destination=destination)
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert result.code != 0
    [problem] = result.json()["problems"]
    assert "CI, hook or git metadata path" in problem["message"]
    assert not any(r.startswith("refs/heads/alpha_") for r in all_refs(repo_dir))


@pytest.mark.parametrize("destination", [".config/hooks/x.py", "tests/.hidden/test_x.py",
                                         ".Tool.yml"])
def test_a_fetched_note_may_not_name_a_dot_path(team, cfg, cli, fake_runtime, destination):
    _remote, local, mate = team
    start_task(mate, destination=destination)
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code != 0
    [problem] = result.json()["problems"]
    assert "came from a remote" in problem["message"]
    assert not any(r.startswith("refs/heads/alpha_") for r in all_refs(local))
    # The same note written locally is the user's own: a dot-directory is theirs to choose.
    git(local, "branch", "TestCase_local")
    git(local, "notes", "append", "-m", f"task_branch: TestCase_local, source: "
        f"utils/capture_output.py, destination: {destination}", "TestCase_local")
    result = cli("sync", "--repo", local, "--config", cfg, "--json")
    assert rev(local, "alpha_TestCase_local")


def test_a_fetched_note_with_a_plain_path_is_generated(team, cfg, cli, fake_runtime):
    _remote, local, mate = team
    start_task(mate, destination="tests/test_capture_output.py")
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")
    result = cli("sync", "--remote", "origin", "--repo", local, "--config", cfg, "--json")
    assert result.code == 0, result.err
    assert git(local, "ls-tree", "--name-only", "-r", ALPHA, "tests").split() == [
        "tests/test_capture_output.py"]


def test_a_destination_that_is_the_source_is_refused(repo_dir, cfg, cli, fake_runtime):
    common = ("--repo", repo_dir, "--config", cfg)
    result = cli("ergon", "start", TASK, "-s", "utils/capture_output.py", "-d",
                 "./utils/capture_output.py", *common)
    assert result.code != 0
    assert "is the source itself" in result.err and "hint:" in result.err
    assert TASK not in git(repo_dir, "branch", "--list", TASK)
    # Written with plain git, the plan reports it and publishes nothing.
    start_task(repo_dir, destination="utils/Capture_Output.py")
    result = cli("sync", *common, "--json")
    assert result.code != 0
    [problem] = result.json()["problems"]
    assert "is the source itself" in problem["message"]
    assert not any(r.startswith("refs/heads/alpha_") for r in all_refs(repo_dir))


def test_a_model_name_git_refuses_fails_config_validation(tmp_path, repo_dir, cli):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"checkpoints": [
        {"name_or_path": "x.gguf", "name": "x..y", "trait": "coding"}]}))
    result = cli("status", "--repo", repo_dir, "--config", path)
    assert result.code != 0
    assert "'x..y'" in result.err and 'without ".."' in result.err
