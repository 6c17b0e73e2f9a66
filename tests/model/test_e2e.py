"""The original README's usage example, end to end, on the real embedded model.

Plain git commands drive it (`git branch`, `git notes add`, `git notes remove`, merge, branch -D),
and `symergion sync` runs as a separate process, the way cron or CI would run it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.git import git, repo_state, start_task_with_git

TASK = "TestCase_capture_output"
BRANCH = f"gemma3-270m_{TASK}"

# Runs the CLI in a fresh interpreter and reports whether llama_cpp was imported.
PROBE = (
    "import sys\n"
    "from symergion.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    # Models run in worker processes: a model was loaded exactly when the worker proxy was
    # imported, and llama_cpp itself never enters the parent.
    "print('MODEL_LOADED=' + str('symergion.engine.proxy' in sys.modules), file=sys.stderr)\n"
    "print('LLAMA_IN_PARENT=' + str('llama_cpp' in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def cli(repo: Path, config: Path, *args: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args, "--repo", str(repo), "--config", str(config),
         "--json"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def messages(repo: Path) -> list[str]:
    out = git(repo, "log", "--format=%B%x1e", f"{TASK}..{BRANCH}")
    return [m.strip().split("\n\nSymergion-Model")[0] for m in out.split("\x1e") if m.strip()]


def destination(repo: Path) -> str:
    return git(repo, "show", f"{BRANCH}:test_capture_output.py")


def test_original_usage_example_with_plain_git(repo_dir, model_config):
    (repo_dir / "scratch.txt").write_text("the user's uncommitted work\n")
    before = repo_state(repo_dir)

    # Create the ergon branch and annotate it with the initial note.
    start_task_with_git(repo_dir)
    report, err = cli(repo_dir, model_config, "sync")
    [result] = report["results"]
    assert result["status"] == "created" and result["cache"] == "miss"
    assert result["tokens"] > 0
    assert messages(repo_dir) == ["Create unittest TestCase for the function capture_output"]
    first = destination(repo_dir)
    assert first.startswith("import unittest\n")
    ast.parse(first)
    trailers = git(repo_dir, "log", "-1", "--format=%B", BRANCH)
    assert "Symergion-Stop: " in trailers and "Symergion-Trimmed: " in trailers
    assert "MODEL_LOADED=True" in err and "LLAMA_IN_PARENT=False" in err

    # A second sync creates nothing.
    refs = git(repo_dir, "for-each-ref")
    report, _ = cli(repo_dir, model_config, "sync")
    assert [r["status"] for r in report["results"]] == ["up-to-date"]
    assert git(repo_dir, "for-each-ref") == refs

    # Feedback: a note on the best branch.
    git(repo_dir, "notes", "add", "-m", "Use setUp method", BRANCH)
    report, _ = cli(repo_dir, model_config, "sync")
    assert report["results"][0]["status"] == "updated"
    assert messages(repo_dir)[0] == "Use setUp method"
    ast.parse(destination(repo_dir))

    # Revoke: remove the note; the first answer returns byte for byte, with no model call.
    noted = git(repo_dir, "notes", "list").split()[1::2]
    target = next(t for t in noted if git(repo_dir, "notes", "show", t).strip()
                  == "Use setUp method")
    git(repo_dir, "notes", "remove", target)
    report, err = cli(repo_dir, model_config, "sync")
    assert report["results"][0]["cache"] == "hit"
    assert "MODEL_LOADED=False" in err, "a cached sync must not load a model"
    assert messages(repo_dir)[0] == "Revert: Use setUp method"
    assert destination(repo_dir) == first

    # The user's work tree, index and HEAD are as they were.
    assert repo_state(repo_dir) == before

    # Merge the winner and delete the task branch: the task ends.
    git(repo_dir, "merge", "-q", "--no-edit", BRANCH)
    git(repo_dir, "branch", "-D", TASK)
    report, _ = cli(repo_dir, model_config, "sync")
    assert [r["status"] for r in report["results"]] == ["retired"]
    assert git(repo_dir, "branch", "--list", BRANCH).strip() == ""
    assert git(repo_dir, "for-each-ref", "refs/symergion/archive").strip()
    ast.parse((repo_dir / "test_capture_output.py").read_text())


def test_original_usage_example_with_the_cli(repo_dir, model_config):
    report, _ = cli(repo_dir, model_config, "ergon", "start", TASK, "--source",
                    "utils/capture_output.py", "--destination", "test_capture_output.py")
    assert report["results"][0]["status"] == "created"
    first = destination(repo_dir)

    report, _ = cli(repo_dir, model_config, "feedback", "Use setUp method", "--branch", BRANCH)
    assert messages(repo_dir)[0] == "Use setUp method"

    report, err = cli(repo_dir, model_config, "revoke", "--branch", BRANCH)
    assert report["results"][0]["cache"] == "hit"
    assert "MODEL_LOADED=False" in err
    assert destination(repo_dir) == first
    assert messages(repo_dir)[0] == "Revert: Use setUp method"
