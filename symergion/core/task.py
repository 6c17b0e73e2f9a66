"""An active task and its feedback: what ``plan`` discovers from notes and ``inputs`` reads.

Its own module so that ``core.inputs`` (below the plan) and ``core.plan`` share the record
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symergion.config.schema import Template
from symergion.core.spec import TaskSpec


@dataclass(frozen=True)
class Feedback:
    """One active feedback note for a task; ``target`` is the commit it annotates."""

    target: str
    blob: str
    text: str
    order: int


@dataclass
class Task:
    """An active task: its branch, template, spec and ordered feedback."""

    name: str
    tip: str
    template: Template
    spec: TaskSpec
    feedback: list[Feedback] = field(default_factory=list)
