"""Time to first token of a long task prompt: cold, in a feedback round and a revoke in the same
process (KV prefix kept in memory), and in a feedback round run by a new process (KV prefix
state restored from disk)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symergion.bench.measure import (
    TTFT_GEN_TOKENS,
    Progress,
    first_token_seconds,
    llama_engine,
    median,
    peak_rss_bytes,
    ratio,
    sized_source,
    time_stream,
)


@dataclass(frozen=True)
class FeedbackPrompts:
    """A long task prompt and its rounds: stable prefix first, feedback last."""

    stable: str
    initial: str
    feedback: str


def feedback_prompts(count: Callable[[str], int], tokens: int, salt: str) -> FeedbackPrompts:
    """Return the prompts of a task of about ``tokens`` tokens and its first feedback round."""
    source = sized_source(count, tokens, salt)
    stable = (
        "# Source file: helpers.py\n"
        f"{source}"
        "# Task: create a unittest TestCase for helpers.py in test_helpers.py.\n"
    )
    return FeedbackPrompts(
        stable=stable,
        initial=stable + "import unittest\n",
        feedback=stable + "# Feedback: use a setUp method.\nimport unittest\n",
    )


def child_round(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one feedback round in this (new) process; return its figures."""
    started = time.perf_counter()
    engine = llama_engine(Path(spec["model"]), spec["threads"], Path(spec["state_dir"]),
                          spec["extra_buffers"])
    loaded = time.perf_counter() - started
    stream = engine.generate(
        spec["prompt"], max_tokens=spec["gen_tokens"], stable_prefix=spec["stable_prefix"]
    )
    timing = time_stream(stream)
    stats = engine.stats
    engine.close()
    return {
        "load_seconds": loaded,
        "ttft_seconds": timing.first_token,
        "process_seconds": time.perf_counter() - started,
        "prefix_source": stats.prefix_source,
        "reused_prefix_tokens": stats.reused_prefix_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``child_round`` in a new process (``--child``); return its figures and wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "symergion.bench.engine", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def bench_ttft(
    model_path: Path,
    *,
    threads: int,
    long_prompt_tokens: int,
    gen_tokens: int,
    repeats: int,
    progress: Progress,
    extra_buffers: bool | None = None,
) -> dict[str, Any]:
    """Measure time to first token: cold, feedback and revoke in-process, feedback in a new process."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="symergion-bench-") as tmp:
        state_dir = Path(tmp) / "kv"
        engine = llama_engine(model_path, threads, state_dir, extra_buffers)
        try:
            for r in range(repeats):
                progress(f"time to first token {r + 1}/{repeats}")
                prompts = feedback_prompts(engine.count_tokens, long_prompt_tokens, f"ttft-{r}")
                stable = len(prompts.stable)

                def first(prompt: str, stable: int = stable) -> tuple[float, str, int]:
                    seconds = first_token_seconds(
                        engine.generate(prompt, max_tokens=TTFT_GEN_TOKENS, stable_prefix=stable)
                    )
                    return seconds, engine.stats.prefix_source, engine.stats.reused_prefix_tokens

                cold, _, _ = first(prompts.initial)
                prompt_tokens = engine.stats.prompt_tokens
                feedback, feedback_source, feedback_reused = first(prompts.feedback)
                revoke, revoke_source, _ = first(prompts.initial)
                child = _run_child(
                    {
                        "model": str(model_path),
                        "threads": threads,
                        "extra_buffers": extra_buffers,
                        "state_dir": str(state_dir),
                        "prompt": prompts.feedback,
                        "stable_prefix": stable,
                        "gen_tokens": gen_tokens,
                    }
                )
                rows.append(
                    {
                        "prompt_tokens": prompt_tokens,
                        "cold_seconds": cold,
                        "feedback_seconds": feedback,
                        "feedback_source": feedback_source,
                        "feedback_reused_tokens": feedback_reused,
                        "revoke_seconds": revoke,
                        "revoke_source": revoke_source,
                        "new_process": child,
                    }
                )
        finally:
            engine.close()
    cold = median(row["cold_seconds"] for row in rows)
    feedback = median(row["feedback_seconds"] for row in rows)
    revoke = median(row["revoke_seconds"] for row in rows)
    new_process = median(row["new_process"]["ttft_seconds"] for row in rows)

    def speedup(seconds: Callable[[dict[str, Any]], float]) -> float:
        # Paired within a repeat, like the throughput ratios.
        return median(ratio(row["cold_seconds"], seconds(row)) for row in rows)

    return {
        "runs": rows,
        "prompt_tokens": rows[0]["prompt_tokens"],
        "cold_seconds": cold,
        "feedback_seconds": feedback,
        "revoke_seconds": revoke,
        "new_process_feedback_seconds": new_process,
        "new_process_load_seconds": median(row["new_process"]["load_seconds"] for row in rows),
        "feedback_speedup": speedup(lambda row: row["feedback_seconds"]),
        "revoke_speedup": speedup(lambda row: row["revoke_seconds"]),
        "new_process_speedup": speedup(lambda row: row["new_process"]["ttft_seconds"]),
        "peak_rss_bytes": max(row["new_process"]["peak_rss_bytes"] for row in rows),
    }

