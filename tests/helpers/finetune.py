"""Harvest-style JSONL for the fine-tune recipe: the prompt, good and poor completions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SOURCE = "def scale(value, factor):\n    return value * factor\n"
PROMPT = f"# File: utils/scale.py\n{SOURCE}# Task: Create unittest TestCase\nimport unittest\n"


def completion(i: int, good: bool = True) -> str:
    """Return a test file a model might have written: a good one or a poor one."""
    check = f"self.assertEqual(scale({i}, 2), {2 * i})" if good else "self.assertTrue(True)"
    return (f"\n\nclass TestScale(unittest.TestCase):\n    def test_scale_{i}(self):\n"
            f"        {check}\n")


def source(i: int, kind: str) -> dict[str, Any]:
    """Return the provenance object a harvested row carries (ignored by the recipe)."""
    return {"task": "TestCase_scale", "model": "gemma3-270m", "round": i, "kind": kind,
            "commits": [f"{i:040x}"]}


def write_harvest(directory: Path, n: int = 8) -> Path:
    """Write sft.jsonl, preference.jsonl and kto.jsonl as `symergion harvest --out` lays them out."""
    directory.mkdir(parents=True, exist_ok=True)

    def dump(name: str, rows: list[dict[str, Any]]) -> None:
        with (directory / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

    dump("sft.jsonl", [{"prompt": PROMPT, "completion": completion(i), "source": source(i, "merged")}
                       for i in range(n)])
    dump("preference.jsonl", [{"prompt": PROMPT, "chosen": completion(i),
                               "rejected": completion(i, good=False),
                               "source": source(i, "annotated")} for i in range(n)])
    dump("kto.jsonl", [{"prompt": PROMPT, "completion": completion(i, good=i % 2 == 0),
                        "label": i % 2 == 0, "source": source(i, "verified")} for i in range(n)])
    return directory
