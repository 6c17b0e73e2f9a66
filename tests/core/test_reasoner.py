"""Reasoners: their reasoning is cut out between markers and enriches the initial prompt."""

from __future__ import annotations

from symergion.config.parse import parse_config
from symergion.core.prompt import LACONIC
from tests.helpers.fleet import FakeFleet, original_templates
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"


def config():
    from pathlib import Path

    return parse_config({
        "checkpoints": [
            {"name_or_path": "alpha.gguf", "trait": "coding"},
            {"name_or_path": "thinker.gguf", "trait": "reasoning",
             "reasoning_start_tokens": [7], "reasoning_stop_tokens": [8]},
        ],
        "templates": original_templates(),
    }, base_dir=Path("."))


def test_reasoning_enriches_initial_prompt_and_is_cached(repo_dir, make_reconciler):
    fleet_replies = {
        "thinker": "<7>Cover empty output.\n```python\nprint('x')\n```\nCover exceptions.<8>"
                   "text after the stop marker is dropped",
    }
    from tests.helpers.fleet import default_reply

    fleet = FakeFleet(lambda model, prompt: fleet_replies.get(model) or default_reply(model, prompt))
    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir, config())
    reconciler.engines = fleet
    report = reconciler.sync()
    assert [r.branch for r in report.results] == [f"alpha_{TASK}"]
    message = git(repo_dir, "log", "-1", "--format=%B", f"alpha_{TASK}").split("\n\nSymergion-")[0]
    assert message.splitlines() == [
        "Create unittest TestCase for the function capture_output",
        "Cover empty output.",
        "Cover exceptions.",
        LACONIC,
    ]
    thinker = fleet.engines["thinker"]
    assert thinker.calls[0].startswith("<user>") and "capture_output" in thinker.calls[0]
    # The coder's prompt carries the reasoning.
    assert "# Cover exceptions." in fleet.engines["alpha"].calls[0]
    assert "dropped" not in fleet.engines["alpha"].calls[0]

    # Feedback: the reasoning comes from the cache, the reasoner is not asked again.
    git(repo_dir, "notes", "add", "-m", "Use setUp", f"alpha_{TASK}")
    reconciler = make_reconciler(repo_dir, config())
    reconciler.engines = fleet
    reconciler.sync()
    assert len(thinker.calls) == 1
    assert len(fleet.engines["alpha"].calls) == 2
