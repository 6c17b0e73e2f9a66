"""Fake engines per model and the configs they run under: the reconciler without a real model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, Checkpoint, Config
from symergion.engine.fake import FakeEngine


def original_templates() -> dict[str, Any]:
    """The built-in templates in the original format: ``import unittest`` as the code starter
    (no placeholders), no ``verify`` section and no guided generation."""
    templates: dict[str, Any] = json.loads(json.dumps(DEFAULT_CONFIG["templates"]))
    for template in templates.values():
        template.pop("verify", None)
        template.pop("guided", None)
    templates["TestCase"]["code_starter"] = "import unittest\n"
    return templates


def make_config(coders: tuple[str, ...] = ("alpha", "beta"), **overrides: Any) -> Config:
    """A config with fake coder checkpoints and the original TestCase template (no verify)."""
    raw: dict[str, Any] = {
        "checkpoints": [{"name_or_path": f"/models/{c}.gguf", "trait": "coding"} for c in coders],
        "templates": original_templates(),
    }
    raw.update(overrides)
    return parse_config(raw, base_dir=Path("/models"))


class FakeFleet:
    """Fake engines per model, counting loads and calls."""

    def __init__(self, reply: Callable[[str, str], str] | None = None, *, n_ctx: int = 4096) -> None:
        self.reply = reply or default_reply
        self.n_ctx = n_ctx
        self.engines: dict[str, FakeEngine] = {}
        self.loads = 0

    def __call__(self, checkpoint: Checkpoint) -> FakeEngine:
        name = checkpoint.model_name
        if name not in self.engines:
            self.loads += 1
            self.engines[name] = FakeEngine(name, lambda p, n=name: self.reply(n, p), n_ctx=self.n_ctx)
        return self.engines[name]

    @property
    def calls(self) -> int:
        return sum(len(e.calls) for e in self.engines.values())


def default_reply(model: str, prompt: str) -> str:
    """A deterministic test file whose content depends on the model and the feedback."""
    lines = prompt.splitlines()
    while lines and not lines[-1].startswith("#"):  # the code starter, one line or several
        lines.pop()
    feedback = [line[2:] for line in lines[-5:] if line.startswith("# ")]
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    body = "".join(f"    # {line}\n" for line in feedback)
    method = f"    def test_{digest}(self):\n{body}        self.assertTrue(True)\n"
    if prompt.endswith("(unittest.TestCase):\n"):  # the built-in starter opened the class
        return method
    return f"\n\nclass Test{model.capitalize()}(unittest.TestCase):\n" + method
