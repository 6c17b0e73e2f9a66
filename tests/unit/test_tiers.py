"""The tiers are directories: tests/conftest.py marks what lives under tests/model and tests/finetune.

A collection in a child pytest on the real tree shows the marks at work: ``-m`` selects by them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tests/model/models/test_locate.py"
FAST = "tests/models/test_locate.py"
FINETUNE = "tests/finetune/test_recipe.py"


def collected(*args: str) -> list[str]:
    """Return the test ids a child pytest collects with ``args`` (on the real tree)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, capture_output=True, text=True, check=False)
    # 5: every test deselected, which some of these collections expect.
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


def files(ids: list[str]) -> set[str]:
    return {test_id.split("::")[0] for test_id in ids}


def test_a_test_under_tests_model_carries_the_model_marker_and_one_outside_does_not() -> None:
    assert files(collected("-m", "model", MODEL, FAST)) == {MODEL}
    assert files(collected("-m", "not model", MODEL, FAST)) == {FAST}


def test_the_finetune_tier_runs_only_when_asked_for() -> None:
    asked = collected("-m", "finetune", FINETUNE, FAST)
    assert asked and files(asked) == {FINETUNE}
    assert collected(FINETUNE) == []
    assert collected("-m", "not model", FINETUNE) == []


def test_no_test_file_marks_its_own_tier() -> None:
    """A mark in a file would put a test in a tier its directory does not say."""
    spelled = re.compile(r"mark\.(model|finetune)\b")
    marking = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "tests").rglob("*.py"))
               if path.name != "conftest.py" and path != Path(__file__).resolve()
               and spelled.search(path.read_text(encoding="utf-8"))]
    assert marking == []
