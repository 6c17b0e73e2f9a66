"""Note parsing, prompt rendering and the token budget."""

from __future__ import annotations

import math

import pytest

from symergion.app.demo import SOURCE
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, TASK_BRANCH_SPEC
from symergion.core.prompt import LACONIC, call_to_action, reasoning_rows, render
from symergion.core.spec import parse_params, split_sections
from symergion.engine.base import max_new_tokens


def template():
    from pathlib import Path

    return parse_config(DEFAULT_CONFIG, base_dir=Path(".")).templates["TestCase"]


def test_split_sub_notes():
    text = ("task_branch: TestCase_a, source: a.py, destination: test_a.py\n"
            "task_branch: TestCase_b; Use setUp")
    sections = split_sections(text, TASK_BRANCH_SPEC)
    assert [(s.task_branch, s.text) for s in sections] == [
        ("TestCase_a", "source: a.py, destination: test_a.py"),
        ("TestCase_b", "Use setUp"),
    ]
    assert [(s.task_branch, s.text) for s in split_sections("Use setUp", TASK_BRANCH_SPEC)] == [
        (None, "Use setUp")]
    assert split_sections("  \n", TASK_BRANCH_SPEC) == []


def test_params_and_extra_rows():
    params, rows = parse_params(
        "source: utils/capture_output.py, destination: test_capture_output.py\n"
        "Cover empty output too", template())
    assert params == {"source": "utils/capture_output.py",
                      "destination": "test_capture_output.py"}
    assert rows == ("Cover empty output too",)


def test_call_to_action_names_entities():
    assert call_to_action("Create unittest TestCase", SOURCE) == (
        "Create unittest TestCase for the function capture_output")
    assert call_to_action("Do", "class A:\n    def m(self): pass\ndef f(x): pass\n") == (
        "Do for the class A, the function f")
    assert call_to_action("Do", "x = 1\n") == "Do for the above code"


def test_render_keeps_feedback_last_and_prefix_stable():
    files = [("utils/x.py", SOURCE)]
    first = render(files, ["Create tests"], [], "import unittest\n")
    second = render(files, ["Create tests"], ["Use setUp"], "import unittest\n")
    third = render(files, ["Create tests"], ["Use setUp", "Mock print"], "import unittest\n")
    assert first.text.endswith("# Create tests\nimport unittest\n")
    assert second.text.endswith("# Create tests\n\n# Use setUp\nimport unittest\n")
    assert third.text.startswith(second.text[: second.stable_prefix])
    assert second.text.startswith(first.text[: first.stable_prefix])
    assert first.digest != second.digest and len(first.digest) == 64


def test_reasoning_rows_drop_code_blocks():
    rows = reasoning_rows("Think about edge cases.\n```python\nprint(1)\n```\nUse mocks.")
    assert rows == ["Think about edge cases.", "Use mocks.", LACONIC]
    assert reasoning_rows("```python\nx\n```\n") == []


@pytest.mark.parametrize("prompt_tokens", [10, 150, 1000, 4000])
def test_budget_matches_original_formula(prompt_tokens):
    n_ctx, ntokens = 8192, 512
    capacity = n_ctx - prompt_tokens
    diff = capacity - ntokens
    expected = round(capacity - diff * math.exp(-prompt_tokens / diff))
    assert max_new_tokens(n_ctx, prompt_tokens, ntokens) == expected


def test_budget_edges():
    assert max_new_tokens(1024, 1024, 512) == 0
    assert max_new_tokens(1024, 2000, 512) == 0
    assert max_new_tokens(1024, 800, 512) == 224  # capacity below ntokens: all that is left
