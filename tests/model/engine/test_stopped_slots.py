"""A sequence the caller stops (a degenerate loop, say) takes no further decode step in a batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling
from symergion.engine.jobs import Job, JobResult, run_jobs
from symergion.engine.proxy import WorkerEngine
from symergion.engine.worker import EngineSpec
from tests.helpers.engine import THREADS

TOPICS = ["square root", "factorial", "reverse of a string", "sum of digits"]
STOP_AT = 5  # the pieces after which the check of job 1 says the text is degenerate


def prompt(topic: str) -> str:
    return f"# Python\n# A function that computes the {topic}.\ndef "


def jobs() -> list[Job]:
    def stop_after(pieces: int) -> Callable[[str], str | None]:
        seen = [0]

        def check(_text: str) -> str | None:
            seen[0] += 1
            return "shape-loop" if seen[0] >= pieces else None

        return check

    return [Job(prompt(topic), 48, check=stop_after(STOP_AT) if i == 1 else None)
            for i, topic in enumerate(TOPICS)]


def decoded_rows(results: list[JobResult]) -> int:
    """The batch rows the sequences need: a token each after the first (which the prompt's
    evaluation gives), and one more for a sampled end of sequence, which is not a piece."""
    return sum(r.stats.generated_tokens - 1 + (r.stats.stop == "eos") for r in results)


def test_a_stopped_sequence_takes_no_further_step_in_process(make_engine: Callable[..., Any]):
    engine = make_engine(extra_buffers=False, slots=4)
    results = run_jobs(engine, jobs())
    stopped = results[1]
    assert stopped.stop == "shape-loop" and stopped.tokens == STOP_AT
    assert stopped.stats.stop == "stopped"
    assert stopped.stats.generated_tokens == STOP_AT, "no token after the stop"
    assert all(r.tokens > STOP_AT for i, r in enumerate(results) if i != 1)
    # Every row of every decode step went to a sequence still running.
    assert engine.batch_figures.step_tokens == decoded_rows(results)


def test_a_stopped_sequence_takes_at_most_the_step_under_way_in_a_worker(
        gguf_path: Path, extra_buffers: bool):
    """A model runs in a worker process: the stop crosses a socket while the worker decodes, so
    the sequence may be in the step already under way, never in a later one."""
    spec = EngineSpec(gguf_path, "gemma3-270m", THREADS, Sampling(), 4096,
                      extra_buffers="on" if extra_buffers else "off", extra_buffers_source="tests")
    engine = WorkerEngine(spec)
    try:
        results = run_jobs(engine, jobs())
    finally:
        engine.close()
    stopped = results[1]
    assert stopped.stop == "shape-loop" and stopped.tokens == STOP_AT
    assert stopped.stats.stop == "stopped"
    assert STOP_AT <= stopped.stats.generated_tokens <= STOP_AT + 1
    assert all(r.tokens > STOP_AT + 1 for i, r in enumerate(results) if i != 1)
