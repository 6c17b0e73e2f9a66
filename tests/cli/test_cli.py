"""The CLI at its boundary (CliRunner), on real repositories, with the fake engine plugged in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symergion.cli.main import main
from tests.helpers.fleet import FakeFleet, original_templates
from tests.helpers.git import git, repo_state

TASK = "TestCase_capture_output"
CONFIG = {
    "checkpoints": [{"name_or_path": "alpha.gguf", "trait": "coding"},
                    {"name_or_path": "beta.gguf", "trait": "coding"}],
    "templates": original_templates(),
}


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    """Serve every model from fake engines; no model file is needed."""
    fleet = FakeFleet()
    monkeypatch.setattr("symergion.app.runtime.load_engine", lambda config, c: fleet(c))
    monkeypatch.setattr("symergion.app.runtime.fingerprint", lambda config, c: f"fp-{c.model_name}")
    return fleet


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "symergion.json"
    path.write_text(json.dumps(CONFIG))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI through main() (so error mapping is exercised); return code, out, err."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_start_feedback_revoke_with_the_cli(repo_dir, cfg, fake_runtime, capsys):
    before = repo_state(repo_dir)
    common = ["--repo", str(repo_dir), "--config", str(cfg)]
    code, out, err = run(capsys, "ergon", "start", TASK, "--source", "utils/capture_output.py",
                         "--destination", "test_capture_output.py", *common, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {r["branch"] for r in data["results"]} == {f"alpha_{TASK}", f"beta_{TASK}"}
    assert git(repo_dir, "notes", "show", TASK).startswith(f"task_branch: {TASK}")

    code, out, err = run(capsys, "feedback", "Use setUp method", "--branch", f"alpha_{TASK}",
                         *common)
    assert code == 0, err
    assert "updated" in err
    assert git(repo_dir, "log", "-1", "--format=%s", f"beta_{TASK}").strip() == "Use setUp method"

    code, out, err = run(capsys, "status", *common, "--json")
    rows = json.loads(out)["branches"]
    assert {r["state"] for r in rows} == {"up-to-date"} and rows[0]["feedback"] == 1

    calls = fake_runtime.calls
    code, out, err = run(capsys, "revoke", "--branch", f"beta_{TASK}", *common, "--json")
    assert code == 0, err
    assert {r["cache"] for r in json.loads(out)["results"]} == {"hit"}
    assert fake_runtime.calls == calls
    subject = git(repo_dir, "log", "-1", "--format=%s", f"alpha_{TASK}").strip()
    assert subject == "Revert: Use setUp method"

    code, out, err = run(capsys, "sync", *common)
    assert code == 0 and "everything is up to date" in err

    code, out, err = run(capsys, "ergon", "list", *common, "--json")
    [task] = json.loads(out)["tasks"]
    assert task["task"] == TASK and task["feedback"] == []

    # Starting a task moved only the task branch and the notes ref; the user's files are intact.
    assert repo_state(repo_dir) == before


def test_feedback_defaults_to_checked_out_model_branch(repo_dir, cfg, fake_runtime, capsys):
    common = ["--repo", str(repo_dir), "--config", str(cfg)]
    run(capsys, "ergon", "start", TASK, "-s", "utils/capture_output.py", "-d", "t.py", *common)
    git(repo_dir, "checkout", "-q", f"beta_{TASK}")
    code, _, err = run(capsys, "feedback", "Check empty output", "--no-sync", *common)
    assert code == 0, err
    tip = git(repo_dir, "rev-parse", f"beta_{TASK}").strip()
    assert git(repo_dir, "notes", "show", tip).strip() == "Check empty output"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["ergon", "start", "Feature_x", "-s", "utils/capture_output.py", "-d", "t.py"], 1,
         "does not start with a template name"),
        (["ergon", "start", "TestCase_x", "-s", "../etc/passwd", "-d", "t.py"], 1,
         "is not a path inside the repository"),
        (["ergon", "start", "TestCase_x", "-s", "utils/capture_output.py", "-d", ".git/hooks/x"],
         1, "is not a path inside the repository"),
        (["ergon", "start", "TestCase_x", "-s", "missing.py", "-d", "t.py"], 1, "does not exist"),
        (["ergon", "start", "TestCase_x..y", "-s", "utils/capture_output.py", "-d", "t.py"], 1,
         "git rejects the branch name"),
        (["ergon", "start", "TestCase_x", "-s", "utils/capture_output.py"], 1, "no destination"),
        (["feedback", "x"], 1, "is not a model branch"),
        (["feedback", "x", "--branch", "nope"], 1, "does not exist"),
        (["revoke", "--branch", "main"], 1, "is not a model branch"),
        (["sync", "--remote", "nowhere"], 1, "no remote named 'nowhere'"),
    ],
)
def test_bad_input_is_refused_without_side_effects(repo_dir, cfg, fake_runtime, capsys, args,
                                                   code, fragment):
    refs = git(repo_dir, "for-each-ref")
    before = repo_state(repo_dir)
    got, _out, err = run(capsys, *args, "--repo", str(repo_dir), "--config", str(cfg))
    assert got == code, err
    assert fragment in err
    assert git(repo_dir, "for-each-ref") == refs
    assert repo_state(repo_dir) == before


def test_not_a_repository(tmp_path, capsys):
    code, _, err = run(capsys, "sync", "--repo", str(tmp_path))
    assert code == 1 and "is not inside a git repository" in err


def test_bad_config_exit_code(tmp_path, repo_dir, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run(capsys, "sync", "--repo", str(repo_dir), "--config", str(bad))
    assert code == 1 and "invalid JSON" in err and "hint:" in err


def test_help_lists_every_command(capsys):
    result = CliRunner().invoke(__import__("symergion.cli.app", fromlist=["app"]).app, ["--help"])
    assert result.exit_code == 0
    for command in ("ergon", "feedback", "revoke", "sync", "watch", "status", "demo", "models"):
        assert command in result.output


def test_watch_runs_passes_and_stops(repo_dir, cfg, fake_runtime, capsys):
    git(repo_dir, "branch", TASK)
    git(repo_dir, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/capture_output.py, destination: t.py", TASK)
    code, _, err = run(capsys, "watch", "--interval", "0.1", "--max-passes", "1",
                       "--repo", str(repo_dir), "--config", str(cfg))
    assert code == 0, err
    assert git(repo_dir, "branch", "--list", f"*_{TASK}").split() == [f"alpha_{TASK}",
                                                                      f"beta_{TASK}"]
    # One line per event, with tokens, seconds and cache.
    assert "alpha: " in err and "cache=miss" in err and "decoded=" in err
