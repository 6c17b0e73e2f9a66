"""Run several generations of one model together and collect each one's text: ``run_jobs``.

The caller describes each generation as a ``Job`` (prompt, budget, and a check that decides,
from the text so far, that the answer is complete) and gets a ``JobResult`` per job, in order.
The jobs go through ``Engine.generate_many`` in one call, so a llama.cpp engine decodes them
in one batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from symergion.engine.base import Engine, GenerationRequest, GenerationStats

# What a check returns: a stop reason (the text is complete), or None to go on.
Check = Callable[[str], str | None]
# Told each piece: job index, the piece, how many pieces the job has had.
OnPiece = Callable[[int, str, int], None]

# The engine's reasons, in the words of a response record.
_STOPS = {"eos": "eos", "max_tokens": "budget", "cancelled": "cancelled", "stopped": "stopped",
          "": "cancelled"}


@dataclass(frozen=True)
class Job:
    """One generation: the prompt, its token budget, and what decides it is complete.

    ``start`` is text the answer continues (a code starter): ``check`` sees ``start`` plus
    the pieces so far, and the result's text begins with it.
    """

    prompt: str
    max_tokens: int
    stable_prefix: int = 0
    start: str = ""
    check: Check | None = None
    seed: int | None = None  # a sample's own seed (best of n); None: the checkpoint's


@dataclass
class JobResult:
    """What one job produced, and why it ended."""

    text: str
    tokens: int
    seconds: float  # from the start of the run to the job's last piece
    stop: str  # the check's reason, "eos", "budget" or "cancelled"
    stats: GenerationStats = field(default_factory=GenerationStats)


def run_jobs(
    engine: Engine,
    jobs: Sequence[Job],
    *,
    cancel: threading.Event | None = None,
    on_piece: OnPiece | None = None,
) -> list[JobResult]:
    """Generate every job together; return their results in the order of ``jobs``.

    A job ends when its check returns a reason, at EOS or at its budget; the others go on.
    When ``cancel`` is set every unfinished job ends with stop "cancelled" (the caller decides
    whether to keep anything). Errors of the engine propagate.
    """
    texts = [job.start for job in jobs]
    counts = [0] * len(jobs)
    reasons: list[str | None] = [None] * len(jobs)
    ended = [0.0] * len(jobs)
    stopped: set[int] = set()
    began = time.monotonic()
    requests = [GenerationRequest(job.prompt, job.max_tokens, job.stable_prefix, job.seed) for job in jobs]
    pieces = engine.generate_many(requests, cancel=cancel, stopped=stopped)
    try:
        for index, piece in pieces:
            if index in stopped:
                continue
            texts[index] += piece
            counts[index] += 1
            ended[index] = time.monotonic() - began
            if on_piece is not None:
                on_piece(index, piece, counts[index])
            check = jobs[index].check
            reason = check(texts[index]) if check is not None else None
            if reason:
                reasons[index] = reason
                stopped.add(index)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    stats = engine.batch_stats
    results = []
    for index in range(len(jobs)):
        figures = stats[index] if index < len(stats) else GenerationStats()
        reason = reasons[index] or _STOPS.get(figures.stop, figures.stop)
        if cancel is not None and cancel.is_set() and reasons[index] is None:
            reason = "cancelled"
        results.append(JobResult(texts[index], counts[index], ended[index], reason, figures))
    return results
