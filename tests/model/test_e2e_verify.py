"""A default-config sync on the real model: the candidate is verified in the sandbox, pruned
where tests fail, repaired once, and the results live in the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from symergion.verify.result import VerifyResult
from tests.helpers.git import git, repo_state, start_task_with_git
from tests.helpers.verify import needs_bwrap

pytestmark = needs_bwrap

TASK = "TestCase_capture_output"
BRANCH = f"gemma3-270m_{TASK}"


def sync(repo: Path, config: Path) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "symergion", "sync", "--repo", str(repo), "--config", str(config),
         "--json"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_a_default_sync_publishes_a_verified_candidate_and_a_second_sync_changes_nothing(
        repo_dir, default_config):
    start_task_with_git(repo_dir)
    before = repo_state(repo_dir)
    report, _err = sync(repo_dir, default_config)
    [result] = report["results"]
    assert result["status"] == "created", report
    log = git(repo_dir, "log", "--reverse", "--format=%H%x1f%B%x1e", f"{TASK}..{BRANCH}")
    commits = [entry.strip().split("\x1f", 1) for entry in log.split("\x1e") if entry.strip()]
    # Every commit of the pass carries a verification, and the first is the model's candidate.
    results = [VerifyResult.from_message(message) for _oid, message in commits]
    assert results and all(r is not None for r in results)
    candidate = commits[0][1]
    assert "Symergion-Verify: " in candidate and "Symergion-Cache: miss" in candidate
    first = results[0]
    assert first is not None and first.source == "utils/capture_output.py"
    subjects = [message.splitlines()[0] for _oid, message in commits]
    if not first.ok:
        # Failing tests never stay on top as they are: repairs without the model (the built-in
        # template writes guided files) or a prune follow the failing candidate.
        assert subjects[1].startswith(("Repair: ", "Prune: removed")), subjects
        if subjects[1].startswith("Repair: "):
            assert "Symergion-Fix: " in commits[1][1]
    for (_oid, message), subject in zip(commits, subjects, strict=True):
        if subject.startswith("Prune: removed") and "Symergion-Prune: dropped" not in message:
            pruned = VerifyResult.from_message(message)
            assert pruned is not None and pruned.failed == 0 and pruned.errors == 0
    tip = git(repo_dir, "rev-parse", BRANCH).strip()
    assert result["commit"] == tip and result["verify"] == results[-1].trailer()

    again, _err = sync(repo_dir, default_config)
    assert [r["status"] for r in again["results"]] == ["up-to-date"], again
    assert git(repo_dir, "rev-parse", BRANCH).strip() == tip
    assert repo_state(repo_dir) == before
