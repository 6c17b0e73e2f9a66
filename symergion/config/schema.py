"""The config's schema: the records a validated config is made of, and the built-in default.

The config file keeps the original's fields as they are (``idle_cores``, ``model_cache_size``,
``response_cache_size``, ``ntokens``, ``default_branch``, ``task_branch_spec``, ``checkpoints``,
``templates``). A checkpoint's ``name_or_path`` names a GGUF file: an absolute path, a path
relative to the models directory, ``hf://ORG/REPO/FILE.gguf``, or ``embedded:gemma3-270m``.
Each checkpoint may add ``name`` (used in branch names), ``context_size``, ``sampling``, a LoRA
adapter (``lora``, a GGUF adapter file resolved like ``name_or_path``, and ``lora_scale``) and, for
reasoners, ``reasoning_markers``. The top-level ``extra_buffers`` (``auto``, ``on`` or ``off``)
says whether llama.cpp may use its extra buffer types (AMX, CPU repacking); see
``symergion.engine.extra_buffers``. A checkpoint with ``endpoint`` (``http://host:port``) runs on a
model server (llama.cpp's ``llama-server`` or any OpenAI-compatible completions server); its
``name_or_path``, if given, names the model to ask that server for.

``symergion.config.parse`` turns decoded JSON into these records, ``symergion.config.load`` finds
and reads the file, and ``symergion.config.environment`` holds every setting read from the
environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling

EXTRA_BUFFERS_CHOICES = ("auto", "on", "off")

EMBEDDED_MODEL = "embedded:gemma3-270m"

TASK_BRANCH_SPEC = r"task_branch:[\s]*([\p{L}\p{N}_\-\.\/]+)"
_PARAM = r":[\s]*([\p{L}\p{N}_\-\.\/]+)(?:[,;]?[\s]*|[\n]?)"

DEFAULT_CONFIG: dict[str, Any] = {
    "idle_cores": 0,
    "model_cache_size": 1,
    "response_cache_size": 100,
    "ntokens": 512,
    "default_branch": "main",
    "task_branch_spec": TASK_BRANCH_SPEC,
    "checkpoints": [
        {"name_or_path": EMBEDDED_MODEL, "name": "gemma3-270m", "trait": "coding"},
    ],
    "templates": {
        "TestCase": {
            "params": {"source": "source" + _PARAM, "destination": "destination" + _PARAM},
            "call_to_action": "Create unittest TestCase",
            # Placeholders: the module under test's import line and a class name for its tests.
            "code_starter": ("import unittest\n\n{import_module}\n\n\n"
                             "class {test_class}(unittest.TestCase):\n"),
            # Tests per public name of the source, from openers the method writes: the greedy
            # one and two sampled variants, pruned to those that add coverage (docs/quality.md).
            "guided": {"variants": 3},
            "verify": {
                "command": "python -m unittest {module}",
                "timeout": 60,
                "coverage": True,
                "runs": 2,
                "prune": True,
                "repair_rounds": 1,
            },
        },
        # pytest files: module-level test functions with plain asserts, run by real pytest. The
        # starter opens the first test, as TestCase's opens the class (docs/quality.md).
        "PyTest": {
            "params": {"source": "source" + _PARAM, "destination": "destination" + _PARAM},
            "call_to_action": "Create pytest tests",
            "code_starter": "import pytest\n\n{import_module}\n\n\ndef test_",
            "verify": {
                "command": "python -m pytest {destination}",
                "timeout": 60,
                "coverage": True,
                "runs": 2,
                "prune": True,
                "repair_rounds": 1,
            },
        },
    },
}

# The command that the structured unittest runner stands in for (per-test outcomes, coverage).
DEFAULT_VERIFY_COMMAND = "python -m unittest {module}"
# The kinds of test file a template can make, and the commands whose runs a kind's structured
# runner stands in for (``symergion.verify.kinds``): the command names the kind.
UNITTEST_KIND = "unittest"
PYTEST_KIND = "pytest"
PYTEST_VERIFY_COMMAND = "python -m pytest {destination}"
STRUCTURED_COMMANDS: dict[str, tuple[str, ...]] = {
    UNITTEST_KIND: (DEFAULT_VERIFY_COMMAND, "{python} -m unittest {module}"),
    PYTEST_KIND: (PYTEST_VERIFY_COMMAND, "{python} -m pytest {destination}", "pytest {destination}"),
}

# The kinds of checkpoint (``Checkpoint.kind``); ``symergion.app.runtime`` registers an engine for each.
LLAMA_KIND = "llama"
REMOTE_KIND = "remote"


@dataclass(frozen=True)
class Checkpoint:
    """One model: where its GGUF (or its server) is, what it does, and how it samples.

    For a checkpoint with an ``endpoint``, ``name_or_path`` is the endpoint, followed by
    ``#`` and ``served_model`` when the config names the model to ask the server for: it
    stays unique per served model, as engine pools and caches key on it.
    """

    name_or_path: str
    trait: str
    name: str | None = None
    context_size: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning_start_tokens: tuple[int, ...] = ()
    reasoning_stop_tokens: tuple[int, ...] = ()
    reasoning_markers: tuple[str, str] | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    endpoint: str | None = None
    served_model: str | None = None
    samples: int = 1  # candidates per prompt when the template verifies; the best is published

    @property
    def weights(self) -> tuple[str, str | None, float]:
        """Return what identifies the loaded weights: the model file, its adapter and scale."""
        return (self.name_or_path, self.lora, self.lora_scale)

    @property
    def kind(self) -> str:
        """Return which engine runs this checkpoint: ``"remote"`` (its ``endpoint``) or ``"llama"``.

        A ``"llama"`` checkpoint is a local GGUF that llama.cpp runs in a worker process. The
        kind follows from the fields, so a config never states it and cannot contradict it.
        """
        return REMOTE_KIND if self.endpoint is not None else LLAMA_KIND

    @property
    def model_name(self) -> str:
        """Return the name used in branch names: ``name``, else the GGUF file stem."""
        if self.name:
            return self.name
        source = self.served_model if self.kind == REMOTE_KIND else self.name_or_path
        tail = (source or "").rstrip("/").split("/")[-1].split(":")[-1]
        return tail[: -len(".gguf")] if tail.lower().endswith(".gguf") else tail


@dataclass(frozen=True)
class VerifySpec:
    """How a template's candidates are checked: the command, its limits, and what follows."""

    command: str = DEFAULT_VERIFY_COMMAND
    timeout: float = 60.0
    coverage: bool = False
    runs: int = 1
    prune: bool = False
    repair_rounds: int = 0

    @property
    def kind(self) -> str | None:
        """Return the kind of test file whose structured runner stands in for the command.

        None for any other command: it runs as written, and only its exit status and summary
        line count (no per-test outcomes, so no prune or repair).
        """
        command = " ".join(self.command.split())
        return next((kind for kind, commands in STRUCTURED_COMMANDS.items() if command in commands), None)

    @property
    def structured(self) -> bool:
        """Return whether a built-in runner (per-test outcomes) can stand in for the command."""
        return self.kind is not None


@dataclass(frozen=True)
class GuideSpec:
    """Guided generation of a Python unittest file (``symergion.verify.guide``).

    The prompt gains a worked example, and the file is written one test per public name of the
    module under test, each from an opener the method writes (``docs/quality.md``).
    """

    targets: int = 12  # the most public names to write a test for
    variants: int = 1  # tests per target: the greedy one, then sampled ones


@dataclass(frozen=True)
class Template:
    """A task type: the parameters its notes carry and how its prompt starts and ends."""

    name: str
    params: dict[str, str]
    call_to_action: str
    code_starter: str = ""
    verify: VerifySpec | None = None
    guided: GuideSpec | None = None


@dataclass(frozen=True)
class Config:
    """A validated configuration."""

    idle_cores: int
    model_cache_size: int
    response_cache_size: int
    ntokens: int
    default_branch: str
    task_branch_spec: str
    checkpoints: tuple[Checkpoint, ...]
    templates: dict[str, Template]
    models_dir: Path
    source: Path | None = None
    extra_buffers: str = "auto"
    allow_destinations: tuple[str, ...] = ()  # glob patterns of CI/hook paths tasks may write
    max_seconds: float | None = None  # each branch's time budget in a pass; None: no limit

    @property
    def coders(self) -> tuple[Checkpoint, ...]:
        """Return the checkpoints with the ``coding`` trait."""
        return tuple(c for c in self.checkpoints if c.trait == "coding")

    @property
    def reasoners(self) -> tuple[Checkpoint, ...]:
        """Return the checkpoints with the ``reasoning`` trait."""
        return tuple(c for c in self.checkpoints if c.trait == "reasoning")

    def threads(self) -> int:
        """Return how many CPU threads inference may use: all cores but ``idle_cores``."""
        return max(1, (os.cpu_count() or 1) - self.idle_cores)

    def template_for(self, task_branch: str) -> Template | None:
        """Return the template whose name prefixes the task branch, the longest name first."""
        for name in sorted(self.templates, key=len, reverse=True):
            if task_branch.startswith(name):
                return self.templates[name]
        return None
