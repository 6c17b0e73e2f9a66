"""What a pass tells its caller: progress events while it runs, a report when it is done.

The CLI renders both (``cli/progress.py``, ``cli/tasks.py``); ``Report.as_dict`` is the
``--json`` output of ``sync``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from symergion.core.plan import Problem


@dataclass
class Result:
    """What one pass did for one model branch (or retired task)."""

    task: str
    model: str
    branch: str
    status: str  # created | updated | up-to-date | skipped | failed | retired | kept
    commit: str | None = None
    message: str | None = None
    tokens: int | None = None
    seconds: float | None = None
    cache: str | None = None
    stop: str | None = None
    reason: str | None = None
    verify: str | None = None  # the Symergion-Verify trailer of the published tip


@dataclass
class Report:
    """The outcome of one pass."""

    results: list[Result] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Return whether anything failed or could not be understood."""
        return bool(self.problems) or any(r.status == "failed" for r in self.results)

    def changed(self) -> list[Result]:
        """Return results that moved a ref."""
        return [r for r in self.results if r.status in ("created", "updated", "retired")]

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data."""
        return {
            "ok": not self.failed,
            "results": [asdict(r) for r in self.results],
            "problems": [asdict(p) for p in self.problems],
            "notices": list(self.notices),
        }


@dataclass
class Event:
    """A progress event for the caller to render."""

    kind: str  # start | progress | compacted (the source, to fit) | check (verification) | done | problem
    task: str
    model: str
    tokens: int = 0
    seconds: float = 0.0
    cache: str | None = None
    detail: str = ""
    budget: int = 0  # the token budget of a generation (start, progress), 0 when unknown
