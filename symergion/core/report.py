"""What a pass tells its caller: progress events while it runs, a report when it is done.

The CLI renders both (``cli/progress.py``, ``cli/tasks.py``); ``Report.as_dict`` is the
``--json`` output of ``sync``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from symergion.core.plan import Problem
from symergion.core.response import Response


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
    kept_tokens: int | None = None  # of ``tokens`` (all decoded), those a commit holds
    decode_seconds: float | None = None  # of ``seconds``, the time spent decoding


@dataclass
class Spend:
    """Where one pass's wall time went: the engines' work, verification, git, model loads.

    Prompt tokens are those the engines evaluated; ``reused_tokens`` came from the KV cache.
    Decoded tokens are all the tokens generated; ``kept_tokens`` those whose text a commit of
    the pass holds, the rest ``discarded`` by reason (tests left out of a guided file, samples
    that ranked lower, ...). Seconds are measured where the work happens, so they add up to
    at most the wall time; ``other_seconds`` is the rest (Python, tokenizing, waiting).
    """

    wall_seconds: float = 0.0
    load_seconds: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prompt_seconds: float = 0.0
    decoded_tokens: int = 0
    kept_tokens: int = 0
    discarded: dict[str, int] = field(default_factory=dict)
    decode_seconds: float = 0.0
    verify_runs: int = 0
    verify_seconds: float = 0.0
    git_calls: int = 0
    git_seconds: float = 0.0

    @property
    def other_seconds(self) -> float:
        """Return the wall time no measured part accounts for."""
        measured = (self.load_seconds + self.prompt_seconds + self.decode_seconds
                    + self.verify_seconds + self.git_seconds)
        return max(0.0, self.wall_seconds - measured)

    @property
    def decode_rate(self) -> float:
        """Return the decoded tokens per second of decoding (0 when nothing was decoded)."""
        return self.decoded_tokens / self.decode_seconds if self.decode_seconds else 0.0

    @property
    def prompt_rate(self) -> float:
        """Return the evaluated prompt tokens per second of evaluation."""
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    def discard(self, reason: str, tokens: int) -> None:
        """Count decoded tokens that no commit holds, under ``reason``."""
        if tokens > 0:
            self.discarded[reason] = self.discarded.get(reason, 0) + tokens

    def keep(self, response: Response) -> None:
        """Count a generated response a commit holds: its kept tokens, and what it left out."""
        tokens = int(response.tokens)
        self.kept_tokens += int(response.kept_tokens if response.kept_tokens is not None else tokens)
        for reason, count in dict(response.discarded or {}).items():
            self.discard(str(reason), int(count))

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-able data, seconds rounded to milliseconds."""
        data = {name: round(value, 3) if isinstance(value, float) else value
                for name, value in asdict(self).items()}
        data["other_seconds"] = round(self.other_seconds, 3)
        data["decode_tokens_per_second"] = round(self.decode_rate, 1)
        data["prompt_tokens_per_second"] = round(self.prompt_rate, 1)
        return data

    def lines(self) -> list[str]:
        """Return the time split as a few lines for people (``sync -v``)."""
        wall = self.wall_seconds or 1.0

        def part(seconds: float) -> str:
            return f"{seconds:.1f} s ({100 * seconds / wall:.0f}%)"

        discarded = ", ".join(f"{n} {why}" for why, n in sorted(self.discarded.items()))
        return [
            f"pass: {self.wall_seconds:.1f} s wall",
            f"  prompts:      {part(self.prompt_seconds)}, {self.prompt_tokens} tokens evaluated"
            f" ({self.prompt_rate:.0f} tok/s), {self.reused_tokens} reused from the KV cache",
            f"  decoding:     {part(self.decode_seconds)}, {self.decoded_tokens} tokens"
            f" ({self.decode_rate:.1f} tok/s), {self.kept_tokens} kept"
            + (f"; discarded: {discarded}" if discarded else ""),
            f"  verification: {part(self.verify_seconds)}, {self.verify_runs} runs",
            f"  git:          {part(self.git_seconds)}, {self.git_calls} commands",
            f"  model load:   {part(self.load_seconds)}",
            f"  other:        {part(self.other_seconds)}",
        ]


@dataclass
class Report:
    """The outcome of one pass."""

    results: list[Result] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)

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
            "spend": self.spend.as_dict(),
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
    kept: int | None = None  # done: of ``tokens`` (all decoded), those a commit holds
    decode_seconds: float = 0.0  # done: of ``seconds``, the time spent decoding
    eta: float | None = None  # progress: seconds the whole pass may still take, when known
