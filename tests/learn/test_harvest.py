"""harvest and stats on a real repository where two coders went through a whole task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from symergion.cli.main import main
from symergion.core.ops import add_feedback, revoke_feedback
from symergion.gitrepo import ARCHIVE_REFS, GitRepo
from symergion.learn.harvest import harvest
from symergion.learn.history import HistoryError, read_history
from symergion.learn.stats import leaderboard
from tests.helpers.fleet import FakeFleet, make_config, original_templates
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"
SECOND = "TestCase_second"
ALPHA, BETA = f"alpha_{TASK}", f"beta_{TASK}"
DEST = "test_capture_output.py"
STARTER = "import unittest\n"
HAND_EDIT = "\n    def test_by_hand(self):\n        self.assertEqual(1, 1)\n"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6yL8o8/2sr3gUq7Jq5C3y+HaF\n"
    "-----END RSA PRIVATE KEY-----\n"
)


def at(monkeypatch: pytest.MonkeyPatch, stamp: str) -> None:
    """Date every commit made from now on (symergion's, notes, the user's) at ``stamp``."""
    for var in ("GIT_COMMITTER_DATE", "GIT_AUTHOR_DATE"):
        monkeypatch.setenv(var, stamp)


def sync(make_reconciler: Any, path: Path) -> None:
    report = make_reconciler(path).sync()
    assert not report.failed, report.as_dict()


def tip(path: Path, ref: str) -> str:
    return git(path, "rev-parse", ref).strip()


def show(path: Path, ref: str, name: str = DEST) -> str:
    return git(path, "show", f"{ref}:{name}")


def work_through_task(path: Path, make_reconciler: Any) -> dict[str, str]:
    """Two coders, two feedback rounds, a revoke, a hand edit, a merge of beta, then the end."""
    start_task_with_git(path)
    sync(make_reconciler, path)
    c = {"a1": tip(path, ALPHA), "b1": tip(path, BETA)}
    git(path, "notes", "add", "-m", "Use setUp method", ALPHA)  # alpha chosen in round 1
    sync(make_reconciler, path)
    c |= {"a2": tip(path, ALPHA), "b2": tip(path, BETA)}
    git(path, "notes", "add", "-m", "Check stderr too", BETA)  # beta chosen in round 2
    sync(make_reconciler, path)
    c |= {"a3": tip(path, ALPHA), "b3": tip(path, BETA)}
    git(path, "notes", "remove", c["b2"])  # revoked: round 3's answers were not wanted
    sync(make_reconciler, path)
    c |= {"a4": tip(path, ALPHA), "b4": tip(path, BETA)}
    git(path, "checkout", "-q", BETA)
    with (path / DEST).open("a") as handle:
        handle.write(HAND_EDIT)
    git(path, "commit", "-q", "-am", "Add a test by hand")
    c["hand"] = tip(path, "HEAD")
    git(path, "checkout", "-q", "main")
    git(path, "merge", "-q", "--no-ff", "-m", "Merge beta's tests", BETA)
    git(path, "branch", "-D", TASK)
    sync(make_reconciler, path)
    assert git(path, "for-each-ref", "--format=%(refname)", f"{ARCHIVE_REFS}/{TASK}").split()
    assert not git(path, "branch", "--list", ALPHA, BETA).strip()
    c["note"] = git(path, "notes", "list").split()[0]  # the one note left: "Use setUp method"
    return c


def read_rows(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


@pytest.fixture
def worked(repo_dir: Path, make_reconciler: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    at(monkeypatch, "2024-01-01T10:00:00Z")
    return work_through_task(repo_dir, make_reconciler)


def test_history_rebuilds_the_exact_prompts_the_engine_received(repo_dir, worked, fleet):
    history = read_history(GitRepo(repo_dir), make_config())
    task = history.tasks[TASK]
    assert task.archived
    answers = task.candidates
    assert [(c.model, c.round) for c in answers] == [
        ("alpha", 1), ("beta", 1), ("alpha", 2), ("alpha", 2), ("beta", 2), ("beta", 2),
        ("alpha", 3), ("beta", 3)]
    for answer in answers:
        rebuilt = history.rebuild(answer)
        assert not isinstance(rebuilt, str), rebuilt
        # Cache hits (the revoke) sent nothing to the engine; their prompt is an earlier call.
        assert rebuilt.prompt.text in fleet.engines[answer.model].calls
        assert rebuilt.prompt.digest == answer.prompt_sha256
    assert len(fleet.engines["alpha"].calls) == 3


def test_harvest_labels_match_what_happened(repo_dir, worked, fleet, tmp_path):
    out = tmp_path / "data"
    report = harvest(GitRepo(repo_dir), make_config(), out)
    calls = fleet.engines["alpha"].calls  # round 1, round 2, round 3 prompts

    preference = read_rows(out, "preference.jsonl")
    assert [(r["round"], r["chosen_model"], r["rejected_model"], r["signals"])
            for r in preference] == [(1, "alpha", "beta", ["feedback"]),
                                     (2, "beta", "alpha", ["feedback", "merged"])]
    first, second = preference
    assert first["prompt"] == calls[0]
    assert STARTER + first["chosen"] == show(repo_dir, worked["a1"])
    assert STARTER + first["rejected"] == show(repo_dir, worked["b1"])
    assert (first["chosen_commit"], first["rejected_commit"]) == (worked["a1"], worked["b1"])
    assert second["prompt"] == calls[1]
    assert STARTER + second["chosen"] == show(repo_dir, worked["b2"])
    assert STARTER + second["rejected"] == show(repo_dir, worked["a2"])
    # b2/b4 and a2/a4 hold the same files (the revoke restored them): one row, not four.
    assert report.duplicates["preference.jsonl"] == 3

    [sft] = read_rows(out, "sft.jsonl")
    assert sft["prompt"] == calls[1]
    assert STARTER + sft["completion"] == show(repo_dir, "main")
    assert sft["completion"].endswith(HAND_EDIT)
    assert (sft["model"], sft["commit"], sft["merged_commit"]) == ("beta", worked["b4"],
                                                                  worked["hand"])
    assert sft["hand_edited_lines"] == HAND_EDIT.count("\n")

    kto = read_rows(out, "kto.jsonl")
    assert [(r["model"], r["commit"], r["label"], r["signals"]) for r in kto] == [
        ("alpha", worked["a3"], False, ["revoked-feedback"]),
        ("beta", worked["b3"], False, ["revoked-feedback"])]
    assert {r["prompt"] for r in kto} == {calls[2]}
    assert "# Check stderr too" in calls[2]
    assert STARTER + kto[0]["completion"] == show(repo_dir, worked["a3"])

    assert report.rows == {"preference.jsonl": 2, "sft.jsonl": 1, "kto.jsonl": 2}
    assert report.left_out == {}
    card = (out / "README.md").read_text()
    assert "| `preference.jsonl` | 2 | 3 |" in card
    assert "How each label was derived" in card
    assert not list(out.glob(".*.tmp")), "temporary files are renamed or removed"


def test_harvest_is_idempotent_and_rows_are_unique(repo_dir, worked, tmp_path):
    out = tmp_path / "data"
    harvest(GitRepo(repo_dir), make_config(), out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    harvest(GitRepo(repo_dir), make_config(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    for name, keys in (("preference.jsonl", ("prompt", "chosen", "rejected")),
                       ("sft.jsonl", ("prompt", "completion")),
                       ("kto.jsonl", ("prompt", "completion", "label"))):
        rows = [tuple(r[k] for k in keys) for r in read_rows(out, name)]
        assert len(rows) == len(set(rows))


def test_a_prompt_that_cannot_be_rebuilt_is_left_out_and_counted(repo_dir, worked, tmp_path):
    # Rewrite the source on the commit the task started from is impossible; instead drop the
    # template the task ran with: nothing can be rebuilt, and nothing is guessed.
    config = make_config(templates={"Other": {
        "params": {"destination": r"destination:[\s]*([\p{L}\p{N}_\-\.\/]+)"},
        "call_to_action": "Write", "code_starter": ""}})
    out = tmp_path / "data"
    report = harvest(GitRepo(repo_dir), config, out)
    assert report.rows == {"preference.jsonl": 0, "sft.jsonl": 0, "kto.jsonl": 0}
    assert report.left_out == {
        "prompt not rebuilt exactly: no template of the config matches the task name": 8}
    assert "no template of the config matches the task name | 8 |" in (out / "README.md").read_text()


def test_stats_credit_the_chosen_and_merged_model(repo_dir, worked):
    rows = {r.model: r for r in leaderboard(GitRepo(repo_dir), make_config())}
    assert set(rows) == {"alpha", "beta"}
    alpha, beta = rows["alpha"], rows["beta"]
    assert (alpha.tasks, alpha.rounds, alpha.chosen, alpha.merged) == (1, 3, 1, 0)
    assert (beta.tasks, beta.rounds, beta.chosen, beta.merged) == (1, 3, 1, 1)
    assert beta.hand_edited_lines == HAND_EDIT.count("\n")
    assert alpha.template == beta.template == "TestCase"
    # Three answers each were generated; the revoke's answers came from the cache.
    assert (alpha.answers, alpha.generated) == (4, 3)
    assert alpha.tokens_per_file is not None and alpha.tokens_per_file > 0
    assert alpha.pass_rate is None, "no verification trailers: no pass rate"


def test_since_and_task_filter(repo_dir, worked, make_reconciler, monkeypatch, tmp_path):
    at(monkeypatch, "2024-01-01T11:00:00Z")
    git(repo_dir, "commit", "-q", "--allow-empty", "-m", "Release")
    git(repo_dir, "tag", "harvested")
    at(monkeypatch, "2024-01-02T10:00:00Z")
    git(repo_dir, "branch", SECOND)
    git(repo_dir, "notes", "add", "-m", f"task_branch: {SECOND}, source: utils/capture_output.py, "
        "destination: test_second.py", SECOND)
    sync(make_reconciler, repo_dir)
    git(repo_dir, "notes", "add", "-m", "Test the return value", f"beta_{SECOND}")
    sync(make_reconciler, repo_dir)
    repo = GitRepo(repo_dir)

    harvest(repo, make_config(), tmp_path / "since", since="harvested")
    rows = read_rows(tmp_path / "since", "preference.jsonl")
    assert [(r["task"], r["round"], r["chosen_model"]) for r in rows] == [(SECOND, 1, "beta")]
    assert read_rows(tmp_path / "since", "kto.jsonl") == []
    assert "commits after `harvested`" in (tmp_path / "since" / "README.md").read_text()

    harvest(repo, make_config(), tmp_path / "task", task=TASK)
    rows = read_rows(tmp_path / "task", "preference.jsonl")
    assert {r["task"] for r in rows} == {TASK} and len(rows) == 2

    since = {r.model: r for r in leaderboard(repo, make_config(), since="harvested")}
    assert (since["beta"].chosen, since["beta"].merged, since["beta"].tasks) == (1, 0, 1)
    assert (since["alpha"].chosen, since["alpha"].rounds) == (0, 2)

    with pytest.raises(HistoryError, match="no task named 'TestCase_nope'"):
        harvest(repo, make_config(), tmp_path / "none", task="TestCase_nope")


def test_secrets_in_the_source_are_redacted(repo_dir, make_reconciler, tmp_path):
    source = repo_dir / "utils" / "capture_output.py"
    source.write_text(source.read_text() + f'\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'
                      f'DEPLOY_KEY = """\n{PRIVATE_KEY}"""\n')
    git(repo_dir, "commit", "-q", "-am", "Add keys by mistake")
    start_task_with_git(repo_dir)
    sync(make_reconciler, repo_dir)
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    sync(make_reconciler, repo_dir)
    out = tmp_path / "data"
    report = harvest(GitRepo(repo_dir), make_config(), out)
    [row] = read_rows(out, "preference.jsonl")
    assert AWS_KEY not in row["prompt"] and "MIIEpAIBAAKCAQEA3Tz2mr7SZ" not in row["prompt"]
    assert "[redacted AWS Access Key]" in row["prompt"]
    assert "[redacted Private Key]" in row["prompt"]
    assert row["redacted"] >= 2
    assert "def capture_output" in row["prompt"], "the rest of the source stays"
    written = "".join(p.read_text() for p in out.iterdir())
    assert AWS_KEY not in written and "MIIEpAIBAAKCAQEA3Tz2mr7SZ" not in written
    assert {"AWS Access Key", "Private Key"} <= set(report.secrets)


def test_reasoner_text_is_part_of_the_rebuilt_prompt(repo_dir, make_reconciler, tmp_path):
    config = make_config(coders=("alpha",))
    config = make_config(checkpoints=[
        {"name_or_path": "/models/alpha.gguf", "trait": "coding"},
        {"name_or_path": "/models/thinker.gguf", "trait": "reasoning",
         "reasoning_start_tokens": [7], "reasoning_stop_tokens": [8]}])
    fleet = FakeFleet(lambda model, prompt: "<7>Cover empty output.<8>" if model == "thinker"
                      else f"\n\nclass T(unittest.TestCase):\n    pass  # {len(prompt)}\n")
    start_task_with_git(repo_dir)
    for note in (None, "Use setUp method"):
        if note:
            git(repo_dir, "notes", "add", "-m", note, f"alpha_{TASK}")
        reconciler = make_reconciler(repo_dir, config)
        reconciler.engines = fleet
        assert not reconciler.sync().failed
    history = read_history(GitRepo(repo_dir), config)
    prompts = [history.rebuild(c) for c in history.tasks[TASK].candidates]
    texts = [p.prompt.text for p in prompts if not isinstance(p, str)]
    assert texts == fleet.engines["alpha"].calls
    assert all("# Cover empty output." in text for text in texts)


def test_cli_harvest_and_stats(repo_dir, worked, tmp_path, capsys):
    cfg = tmp_path / "symergion.json"
    cfg.write_text(json.dumps({"checkpoints": [
        {"name_or_path": "/models/alpha.gguf", "trait": "coding"},
        {"name_or_path": "/models/beta.gguf", "trait": "coding"}],
        "templates": original_templates()}))  # the templates the task was worked with
    out = tmp_path / "data"
    code = main(["harvest", "--out", str(out), "--json", "-C", str(repo_dir), "-c", str(cfg)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["rows"] == {"preference.jsonl": 2, "sft.jsonl": 1, "kto.jsonl": 2}
    assert data["left_out"] == {}

    code = main(["harvest", "--out", str(out), "-C", str(repo_dir), "-c", str(cfg)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"2  {out / 'preference.jsonl'}  (3 duplicates dropped)" in captured.out
    assert "2/2  beta_TestCase_capture_output" in captured.err, "progress goes to stderr"
    assert f"card: {out / 'README.md'}" in captured.err

    code = main(["stats", "-C", str(repo_dir), "-c", str(cfg)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    header, first, second = captured.out.splitlines()
    assert header.split()[:6] == ["model", "template", "tasks", "rounds", "chosen", "merged"]
    assert first.split()[:6] == ["beta", "TestCase", "1", "3", "1", "1"]
    assert second.split()[:6] == ["alpha", "TestCase", "1", "3", "1", "0"]

    code = main(["stats", "--json", "-C", str(repo_dir), "-c", str(cfg)])
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [(r["model"], r["merged"], r["hand_edit_per_merge"]) for r in rows] == [
        ("beta", 1, float(HAND_EDIT.count("\n"))), ("alpha", 0, None)]

    code = main(["harvest", "--out", str(out), "--since", "no-such-ref", "-C", str(repo_dir),
                 "-c", str(cfg)])
    assert code == 1
    assert "does not name a commit" in capsys.readouterr().err


def test_datasets_loads_every_file(repo_dir, worked, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="datasets is in the dev group")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "data"
    harvest(GitRepo(repo_dir), make_config(), out)
    for name, columns, rows in (("preference.jsonl", {"prompt", "chosen", "rejected"}, 2),
                                ("sft.jsonl", {"prompt", "completion"}, 1),
                                ("kto.jsonl", {"prompt", "completion", "label"}, 2)):
        loaded = datasets.load_dataset("json", data_files=str(out / name),
                                       cache_dir=str(tmp_path / "hf"))["train"]
        assert columns <= set(loaded.column_names)
        assert loaded.num_rows == rows
    kto = datasets.load_dataset("json", data_files=str(out / "kto.jsonl"),
                                cache_dir=str(tmp_path / "hf"))["train"]
    assert kto.features["label"].dtype == "bool"


def record_verification(path: Path, branch: str, outcome: str) -> str:
    """Rewrite a branch's tip with a Symergion-Verify trailer, as a verifier records it."""
    head = tip(path, branch)
    message = git(path, "log", "-1", "--format=%B", head).rstrip("\n")
    commit = git(path, "commit-tree", f"{head}^{{tree}}", "-p", f"{head}^",
                 input=f"{message}\nSymergion-Verify: {outcome}\n").strip()
    git(path, "update-ref", f"refs/heads/{branch}", commit, head)
    return commit


def test_verification_trailers_label_kto_rows_and_the_pass_rate(repo_dir, make_reconciler,
                                                               tmp_path):
    start_task_with_git(repo_dir)
    sync(make_reconciler, repo_dir)
    imports = "imports utils.capture_output"
    passed = record_verification(repo_dir, ALPHA, f"3 passed, 0 failed, 0 errors; {imports}; 0.4s")
    failed = record_verification(repo_dir, BETA, f"2 passed, 1 failed, 0 errors; {imports}; 0.5s")
    out = tmp_path / "data"
    harvest(GitRepo(repo_dir), make_config(), out)
    assert [(r["commit"], r["label"], r["signals"]) for r in read_rows(out, "kto.jsonl")] == [
        (passed, True, ["verify-pass"]), (failed, False, ["verify-fail"])]
    rows = {r.model: r for r in leaderboard(GitRepo(repo_dir), make_config())}
    assert (rows["alpha"].pass_rate, rows["beta"].pass_rate) == (1.0, 0.0)


def test_prompts_rebuild_after_the_task_branch_moved(repo_dir, make_reconciler, fleet):
    start_task_with_git(repo_dir)
    sync(make_reconciler, repo_dir)
    git(repo_dir, "checkout", "-q", TASK)
    source = repo_dir / "utils" / "capture_output.py"
    source.write_text(source.read_text() + "\n\ndef capture_error(func):\n    return ''\n")
    git(repo_dir, "commit", "-q", "-am", "Add capture_error")
    git(repo_dir, "checkout", "-q", "main")
    sync(make_reconciler, repo_dir)  # every model regenerates from the new task tip
    git(repo_dir, "notes", "add", "-m", "Use setUp method", ALPHA)
    sync(make_reconciler, repo_dir)
    history = read_history(GitRepo(repo_dir), make_config())
    answers = history.tasks[TASK].candidates
    assert [c.round for c in answers] == [1, 1, 2, 2, 3, 3]
    for answer in answers:
        rebuilt = history.rebuild(answer)
        assert not isinstance(rebuilt, str), rebuilt
        assert rebuilt.prompt.text in fleet.engines[answer.model].calls
    assert "the function capture_error" in history.rebuild(answers[-1]).prompt.text  # type: ignore[union-attr]


def test_a_revoke_that_brings_back_a_hand_edit_is_not_counted_as_the_models_answer(
        repo_dir, make_reconciler, tmp_path):
    # Feedback given on a hand commit, then revoked: the branch's tip publishes the human's file
    # again (Symergion-Hand). A checked pass records its verification like any answer's.
    start_task_with_git(repo_dir)
    sync(make_reconciler, repo_dir)
    git(repo_dir, "checkout", "-q", ALPHA)
    with (repo_dir / DEST).open("a") as handle:
        handle.write(HAND_EDIT)
    git(repo_dir, "commit", "-q", "-am", "Add a test by hand")
    git(repo_dir, "checkout", "-q", "main")
    add_feedback(make_reconciler(repo_dir).repo, make_config(), "Use setUp method", ALPHA)
    sync(make_reconciler, repo_dir)
    revoke_feedback(make_reconciler(repo_dir).repo, make_config(), ALPHA)
    sync(make_reconciler, repo_dir)
    assert "Symergion-Hand: " in git(repo_dir, "log", "-1", "--format=%B", ALPHA)
    republished = record_verification(repo_dir, ALPHA, "4 passed, 0 failed, 0 errors; imports x; 0.4s")
    history = read_history(GitRepo(repo_dir), make_config())
    [hand] = [c for c in history.tasks[TASK].candidates if c.commit == republished]
    assert hand.by_hand and hand.model == "alpha"

    out = tmp_path / "data"
    harvest(GitRepo(repo_dir), make_config(), out)
    named = {r.get(k) for name in ("preference.jsonl", "kto.jsonl") for r in read_rows(out, name)
             for k in ("commit", "chosen_commit", "rejected_commit")}
    assert republished not in named
    assert read_rows(out, "kto.jsonl")  # the revoked feedback's answers are still labelled
    # Nor does the human's passing file count for alpha's pass rate.
    rows = {r.model: r for r in leaderboard(GitRepo(repo_dir), make_config())}
    assert rows["alpha"].pass_rate is None
