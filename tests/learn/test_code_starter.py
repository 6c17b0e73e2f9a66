"""The built-in template's code starter: rendered for each task, and rebuilt alike from history."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from symergion.config.schema import DEFAULT_CONFIG
from symergion.gitrepo import GitRepo
from symergion.learn.history import read_history
from tests.helpers.fleet import FakeFleet, make_config
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"
BUILT_IN_STARTER = ("import unittest\n\nfrom utils import capture_output\n\n\n"
                    "class TestCaptureOutput(unittest.TestCase):\n")


def method_reply(model: str, prompt: str) -> str:
    """Continue the open TestCase class with one test calling the module."""
    return "    def test_it(self):\n        self.assertTrue(callable(capture_output.capture_output))\n"


@pytest.fixture
def fleet() -> FakeFleet:
    """Fake engines that continue the open class."""
    return FakeFleet(method_reply)


def test_the_built_in_starter_imports_the_source_and_opens_its_test_class(
        repo_dir: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    templates = json.loads(json.dumps(DEFAULT_CONFIG["templates"]))
    # Rendering alone: without verification the fake's one test stays as written.
    templates["TestCase"].pop("verify")
    templates["TestCase"].pop("guided")
    config = make_config(templates=templates)
    start_task_with_git(repo_dir)
    assert not make_reconciler(repo_dir, config).sync().failed
    for model in ("alpha", "beta"):
        content = git(repo_dir, "show", f"{model}_{TASK}:test_capture_output.py")
        assert content.startswith(BUILT_IN_STARTER + "    def test_it(self):\n")
        ast.parse(content)
        [prompt] = fleet.engines[model].calls
        assert prompt.endswith("# Create unittest TestCase for the function capture_output\n"
                               + BUILT_IN_STARTER)
    # History renders the same starter, so it rebuilds the exact prompt (its sha256 matches).
    history = read_history(GitRepo(repo_dir), config)
    for candidate in history.tasks[TASK].candidates:
        rebuilt = history.rebuild(candidate)
        assert not isinstance(rebuilt, str), rebuilt
        assert rebuilt.prompt.code_starter == BUILT_IN_STARTER
        assert rebuilt.prompt.digest == candidate.prompt_sha256
