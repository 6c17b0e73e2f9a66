"""generate_many on the fake engine, and run_jobs on top of it."""

from __future__ import annotations

import threading

from symergion.engine.base import Engine, GenerationRequest
from symergion.engine.fake import FakeEngine
from symergion.engine.jobs import Job, run_jobs


def replies(prompt: str) -> str:
    return {"a": "alpha beta gamma", "b": "bbbbbbbb", "c": "c1c2c3c4c5c6", "d": "done"}[prompt]


def test_the_fake_batch_interleaves_and_plays_each_reply_whole() -> None:
    engine: Engine = FakeEngine("m", replies, slots=2)
    pieces = list(engine.generate_many([GenerationRequest(p, 100) for p in "abcd"]))
    texts = {i: "".join(piece for j, piece in pieces if j == i) for i in range(4)}
    assert texts == {0: "alpha beta gamma", 1: "bbbbbbbb", 2: "c1c2c3c4c5c6", 3: "done"}
    # Two slots: request 0 and 1 alternate first; 2 only starts when 1 has ended.
    assert [i for i, _ in pieces[:4]] == [0, 1, 0, 1]
    assert [i for i, _ in pieces].index(2) > max(k for k, (i, _) in enumerate(pieces) if i == 1)
    assert [s.stop for s in engine.batch_stats] == ["eos"] * 4


def test_the_fake_batch_honours_budgets_stops_and_cancel() -> None:
    engine = FakeEngine("m", replies)
    stopped: set[int] = set()
    seen: list[tuple[int, str]] = []
    for index, piece in engine.generate_many(
            [GenerationRequest("a", 2), GenerationRequest("c", 100)], stopped=stopped):
        seen.append((index, piece))
        if index == 1:
            stopped.add(1)
    assert seen == [(0, "alph"), (1, "c1c2"), (0, "a be")]
    assert [s.stop for s in engine.batch_stats] == ["max_tokens", "stopped"]
    cancel = threading.Event()
    cancel.set()
    assert list(engine.generate_many([GenerationRequest("a", 9)], cancel=cancel)) == []
    assert engine.batch_stats[0].stop == "cancelled"


def test_run_jobs_stops_each_job_on_its_check_and_keeps_the_order() -> None:
    engine = FakeEngine("m", replies, slots=3)
    progress: list[tuple[int, int]] = []
    jobs = [
        Job("a", 100, start=">", check=lambda text: "found" if "beta" in text else None),
        Job("b", 1),
        Job("c", 100),
        Job("d", 100, check=lambda text: None),
    ]
    results = run_jobs(engine, jobs, on_piece=lambda i, _p, n: progress.append((i, n)))
    assert [r.text for r in results] == [">alpha beta g", "bbbb", "c1c2c3c4c5c6", "done"]
    assert [r.stop for r in results] == ["found", "budget", "eos", "eos"]
    assert [r.tokens for r in results] == [3, 1, 3, 1]
    assert (0, 3) in progress and (2, 3) in progress
    assert all(r.seconds >= 0 for r in results)
    # The check told the engine to stop job 0: it produced no fourth piece.
    assert engine.batch_stats[0].stop == "stopped"
    assert engine.batch_stats[0].generated_tokens == 3


def test_run_jobs_reports_cancelled_jobs() -> None:
    cancel = threading.Event()
    engine = FakeEngine("m", replies)

    def check(text: str) -> str | None:
        cancel.set()
        return None

    results = run_jobs(engine, [Job("a", 100, check=check), Job("c", 100)], cancel=cancel)
    assert [r.stop for r in results] == ["cancelled", "cancelled"]
    assert results[0].text == "alph"
