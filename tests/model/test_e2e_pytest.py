"""A pytest task on the real model: candidates written as pytest files, run by real pytest in the
sandbox, ranked, pruned or repaired, and read back by ``harvest`` once the winner is merged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symergion.verify.result import VerifyResult
from tests.helpers.git import git
from tests.helpers.verify import needs_bwrap

pytestmark = needs_bwrap

TASK = "PyTest_temperature"
BRANCH = f"gemma3-270m_{TASK}"
DESTINATION = "test_temperature.py"
SOURCE = '''"""Temperature conversions."""


def celsius_to_fahrenheit(celsius):
    """Return the temperature in degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


def clamp(value, low, high):
    """Return value limited to the range from low to high."""
    if low > high:
        raise ValueError("low must not exceed high")
    return max(low, min(value, high))
'''


def symergion(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "symergion", *args, "--json"], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def pytest_config(tmp_path: Path, gguf_path: Path) -> Path:
    """The built-in templates (PyTest among them) with the real model, two samples per prompt."""
    path = tmp_path / "symergion-pytest.json"
    path.write_text(json.dumps({
        "idle_cores": 0,
        "ntokens": 256,
        "checkpoints": [{"name_or_path": str(gguf_path), "name": "gemma3-270m", "trait": "coding",
                         "context_size": 2048, "samples": 2,
                         "sampling": {"temperature": 0.7, "seed": 7}}],
    }))
    return path


def test_a_pytest_task_is_verified_by_pytest_ranked_and_harvested(repo_dir, pytest_config, tmp_path):
    (repo_dir / "utils" / "temperature.py").write_text(SOURCE)
    git(repo_dir, "add", "utils/temperature.py")
    git(repo_dir, "commit", "-qm", "Add temperature conversions")
    git(repo_dir, "branch", TASK)
    git(repo_dir, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/temperature.py, destination: {DESTINATION}", TASK)
    config = str(pytest_config)

    report = symergion("sync", "--repo", str(repo_dir), "--config", config)
    [result] = report["results"]
    assert result["status"] == "created", report
    log = git(repo_dir, "log", "--reverse", "--format=%H%x1f%B%x1e", f"{TASK}..{BRANCH}")
    commits = [entry.strip().split("\x1f", 1) for entry in log.split("\x1e") if entry.strip()]
    subjects = [message.splitlines()[0] for _oid, message in commits]
    candidate_oid, candidate = commits[0]
    assert subjects[0] == "Create pytest tests for the function celsius_to_fahrenheit, the function clamp"
    # Two samples were run in the sandbox and ranked; the best one is the candidate.
    assert "Samples: 2; published the best by verification" in candidate
    written = git(repo_dir, "show", f"{candidate_oid}:{DESTINATION}")
    assert written.startswith("import pytest\n\nfrom utils import temperature\n")
    first = VerifyResult.from_message(candidate)
    assert first is not None and first.source == "utils/temperature.py"
    # pytest's tests carry dotted ids: module-level functions and Test* classes' methods.
    assert all(t.startswith("test_temperature.test") or t.startswith("test_temperature.Test")
               for t in first.tests), first.tests
    for (_oid, message), subject in zip(commits, subjects, strict=True):
        if subject.startswith("Prune: removed") and "Symergion-Prune: dropped" not in message:
            pruned = VerifyResult.from_message(message)
            assert pruned is not None and pruned.failed == 0 and pruned.errors == 0
    if not first.ok:
        assert subjects[1].startswith(("Prune: removed", "Repair: ")), subjects

    # What the sandbox's runner reported for the published file is what pytest says of it.
    tip = git(repo_dir, "rev-parse", BRANCH).strip()
    final = VerifyResult.from_message(commits[-1][1])
    assert final is not None and result["verify"] == final.trailer()
    checkout = tmp_path / "tip"
    git(repo_dir, "worktree", "add", "-q", "--detach", str(checkout), tip)
    if (checkout / DESTINATION).exists():
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", DESTINATION],
                             cwd=checkout, capture_output=True, text=True, timeout=300, check=False)
        assert (run.returncode == 0) == (final.ok and final.passed > 0), run.stdout
    git(repo_dir, "worktree", "remove", "--force", str(checkout))

    again = symergion("sync", "--repo", str(repo_dir), "--config", config)
    assert [r["status"] for r in again["results"]] == ["up-to-date"], again

    # The human merges the winner, which ends the task; harvest reads the task's history back.
    git(repo_dir, "merge", "-q", "--no-ff", "-m", "Merge the pytest tests", BRANCH)
    git(repo_dir, "branch", "-D", TASK)
    ended = symergion("sync", "--repo", str(repo_dir), "--config", config)
    assert [r["status"] for r in ended["results"]] == ["retired"], ended
    out = tmp_path / "data"
    harvested = symergion("harvest", "--repo", str(repo_dir), "--config", config, "--out", str(out))
    # Every answer's prompt is rebuilt exactly (repair rounds' too); what is left out is only
    # an answer whose file a prune dropped, which holds no file to learn from.
    assert set(harvested["left_out"]) <= {"the file is missing or not UTF-8 text at the commit"}, harvested
    rows = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    if (repo_dir / DESTINATION).exists():  # the merge brought a test file: it is the SFT row
        [row] = rows
        assert row["model"] == "gemma3-270m" and row["merged_commit"] == tip
        assert git(repo_dir, "show", f"main:{DESTINATION}").endswith(row["completion"])
        assert "Create pytest tests for the function celsius_to_fahrenheit" in row["prompt"]
    else:
        assert rows == []
