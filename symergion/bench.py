"""Benchmark harness: symergion's llama.cpp engine against a plain llama-cpp-python baseline.

One run measures, on the same GGUF and thread count, interleaving the contenders so that the
noise of a shared machine hits both alike:

- prompt and generation tokens/s of ``LlamaEngine`` and of ``Llama.create_completion``, plus a
  floor loop that only decodes and samples (the best any Python-driven loop can do);
- time to first token of a long prompt: cold, in a feedback round and a revoke in the same
  process (KV prefix kept in memory), and in a feedback round run by a new process (KV prefix
  state restored from disk);
- peak RSS of a process that loads one model and generates, against the GGUF's size;
- optionally, prompt lookup decoding (``LlamaPromptLookupDecoding``) on a regeneration prompt
  whose answer repeats the source;
- with ``--remote``, the remote engine: two ``llama_cpp.server`` processes on loopback, each
  with half the threads, generating two answers at once, against the in-process engine
  generating them one after the other (``pip install 'symergion[server]'``).

``--isolation`` measures instead what running safely costs: prompt and generation tokens/s
with and without llama.cpp's extra buffer types, in this process and through a worker process,
and the startup time of a worker against an in-process load.

Run it with ``python -m symergion.bench`` (``nox -s bench``); ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symergion.config import EMBEDDED_MODEL, Sampling
from symergion.engine.extra_buffers import llama_cpp_params
from symergion.engine.serve import serve_command

Progress = Callable[[str], None]

TARGETS = {
    "generation_vs_baseline": 1.08,
    "prompt_vs_baseline": 0.95,
    "feedback_ttft_speedup": 5.0,
    "rss_over_gguf_mb": 400.0,
}
BENCH_CONTEXT = 4096
TTFT_GEN_TOKENS = 16
_MB = 1024 * 1024
# The batched row's sequence counts (``symergion.bench_batch`` measures them).
BATCH_COUNTS = (1, 2, 4, 8)


@dataclass
class _Timing:
    """Wall-clock figures of one streamed completion."""

    first_token: float
    total: float
    chunks: int
    # Time inside llama_decode after the first token, and how many calls that was.
    decode_seconds: float = 0.0
    decode_calls: int = 0


class _DecodeTimer:
    """Time every llama_decode call, whoever makes it.

    Both contenders look ``llama_decode`` up on a module when they run, so swapping the
    module attribute measures how much of a token's time is llama.cpp's own
    work and how much is the Python around it.
    """

    def __init__(self, llama_cpp: Any) -> None:
        # The package re-exports the bindings of its llama_cpp.llama_cpp module, which is
        # where llama-cpp-python's own classes look them up: swap both.
        self.modules = [llama_cpp, importlib.import_module("llama_cpp.llama_cpp")]
        self.real = llama_cpp.llama_decode
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self) -> _DecodeTimer:
        real = self.real

        def timed(ctx: Any, batch: Any) -> int:
            start = time.perf_counter()
            result: int = real(ctx, batch)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return result

        for module in self.modules:
            module.llama_decode = timed
        return self

    def __exit__(self, *_exc: object) -> None:
        for module in self.modules:
            module.llama_decode = self.real

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0


def _time_stream(stream: Iterable[Any], timer: _DecodeTimer | None = None) -> _Timing:
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    for _ in stream:
        if chunks == 0:
            first = time.perf_counter() - start
            if timer is not None:
                timer.reset()
        chunks += 1
    total = time.perf_counter() - start
    if timer is None:
        return _Timing(first_token=first, total=total, chunks=chunks)
    return _Timing(first, total, chunks, timer.seconds, timer.calls)


def _first_token_seconds(stream: Iterator[str]) -> float:
    """Return the seconds until the first piece of text, then abandon the stream."""
    start = time.perf_counter()
    with contextlib.suppress(StopIteration):
        next(stream)
    seconds = time.perf_counter() - start
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    return seconds


def _median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else 0.0


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def source_text(n_functions: int, salt: str) -> str:
    """Return a synthetic Python module; ``salt`` makes its first line (and tokens) unique."""
    parts = [f"# module {salt}: arithmetic helpers\n\n"]
    for i in range(n_functions):
        parts.append(
            f"def scale_{i}(value: float, offset: float = {i}.5) -> float:\n"
            f'    """Return value times {i + 2} plus offset."""\n'
            f"    if value < 0:\n"
            f"        raise ValueError('value must not be negative')\n"
            f"    return value * {i + 2} + offset\n\n\n"
        )
    return "".join(parts)


def _sized_source(count: Callable[[str], int], tokens: int, salt: str) -> str:
    """Return the shortest synthetic source of at least ``tokens`` tokens."""
    n = 1
    while count(source_text(n, salt)) < tokens:
        n += 1
    return source_text(n, salt)


# -- throughput ---------------------------------------------------------------------------


def _floor_loop(llm: Any, llama_cpp: Any, tokens: list[int], n: int) -> float:
    """Return tokens/s of a loop that only decodes and greedily samples (the Python floor)."""
    llm.reset()
    llm.eval(tokens)
    params = llama_cpp.llama_sampler_chain_default_params()
    chain = llama_cpp.llama_sampler_chain_init(params)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    one = (llama_cpp.llama_token * 1)()
    try:
        start = time.perf_counter()
        for i in range(n):
            token = llama_cpp.llama_sampler_sample(chain, llm.ctx, -1)
            if i == n - 1:
                break
            one[0] = token
            llama_cpp.llama_decode(llm.ctx, llama_cpp.llama_batch_get_one(one, 1))
        seconds = time.perf_counter() - start
    finally:
        llama_cpp.llama_sampler_free(chain)
        llm.reset()
        # The floor loop decoded behind Llama's back: drop that KV so the baseline starts clean.
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    return (n - 1) / seconds


def bench_throughput(
    engine: Any,
    llm: Any,
    llama_cpp: Any,
    *,
    prompt_tokens: int,
    gen_tokens: int,
    repeats: int,
    progress: Progress,
) -> dict[str, Any]:
    """Measure prompt and generation tokens/s of the engine, the baseline and the floor.

    The contenders take turns within each repeat, in rotating order. Besides medians, each
    ratio is also given as the median of the ratios within one repeat (paired, so a slow
    spell of a shared machine cancels out) and as the ratio of the best runs (the speeds an
    idle machine gives).
    """
    rows: list[dict[str, float]] = []
    contenders = ["engine", "baseline", "floor"]
    for r in range(repeats):
        progress(f"throughput {r + 1}/{repeats}")
        # A fresh first line per run and contender: neither may reuse a cached prefix.
        prompts = {
            who: _sized_source(engine.count_tokens, prompt_tokens, f"{who}-{r}") + "def main() -> None:\n"
            for who in contenders
        }
        row: dict[str, float] = {}
        for who in contenders[r % 3 :] + contenders[: r % 3]:
            prompt = prompts[who]
            n_prompt = engine.count_tokens(prompt)
            if who == "engine":
                with _DecodeTimer(llama_cpp) as timer:
                    timing = _time_stream(engine.generate(prompt, max_tokens=gen_tokens), timer)
                n_gen = engine.stats.generated_tokens
            elif who == "baseline":
                stream = llm.create_completion(prompt, max_tokens=gen_tokens, temperature=0.0, stream=True)
                with _DecodeTimer(llama_cpp) as timer:
                    timing = _time_stream(stream, timer)
                n_gen = timing.chunks
            else:
                row["floor_gen_tps"] = _floor_loop(
                    llm, llama_cpp, llm.tokenize(prompt.encode(), special=True), gen_tokens
                )
                continue
            row[f"{who}_prompt_tps"] = n_prompt / timing.first_token
            row[f"{who}_gen_tps"] = (n_gen - 1) / (timing.total - timing.first_token)
            row[f"{who}_gen_tokens"] = n_gen
            gen_seconds = timing.total - timing.first_token
            row[f"{who}_decode_ms"] = 1000 * timing.decode_seconds / max(1, timing.decode_calls)
            # Everything a token costs besides llama_decode: sampling, detokenizing, Python.
            row[f"{who}_other_ms"] = 1000 * (gen_seconds - timing.decode_seconds) / max(1, n_gen - 1)
            row["prompt_tokens"] = n_prompt
        rows.append(row)
    med = {key: _median(row[key] for row in rows) for key in rows[0]}
    # Best: the highest speeds, the lowest times.
    best = {key: (min if key.endswith("_ms") else max)(row[key] for row in rows) for key in rows[0]}
    # Both contenders run the very same llama_decode (same context, same graph), so on an idle
    # machine a token costs the fastest decode seen plus each one's own work around it.
    decode_ms = min(best["engine_decode_ms"], best["baseline_decode_ms"])
    idle_engine_ms = decode_ms + med["engine_other_ms"]
    idle_baseline_ms = decode_ms + med["baseline_other_ms"]

    def paired(a: str, b: str) -> float:
        return _median(_ratio(row[a], row[b]) for row in rows)

    return {
        "runs": rows,
        "median": med,
        "best": best,
        "generation_vs_baseline": paired("engine_gen_tps", "baseline_gen_tps"),
        "prompt_vs_baseline": paired("engine_prompt_tps", "baseline_prompt_tps"),
        "engine_vs_floor": paired("engine_gen_tps", "floor_gen_tps"),
        "baseline_vs_floor": paired("baseline_gen_tps", "floor_gen_tps"),
        "idle_estimate": {
            "decode_ms": decode_ms,
            "engine_gen_tps": 1000 / idle_engine_ms,
            "baseline_gen_tps": 1000 / idle_baseline_ms,
            "generation_vs_baseline": idle_baseline_ms / idle_engine_ms,
        },
        "best_generation_vs_baseline": _ratio(best["engine_gen_tps"], best["baseline_gen_tps"]),
        "best_prompt_vs_baseline": _ratio(best["engine_prompt_tps"], best["baseline_prompt_tps"]),
    }


# -- time to first token ------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackPrompts:
    """A long task prompt and its rounds: stable prefix first, feedback last."""

    stable: str
    initial: str
    feedback: str


def feedback_prompts(count: Callable[[str], int], tokens: int, salt: str) -> FeedbackPrompts:
    """Return the prompts of a task of about ``tokens`` tokens and its first feedback round."""
    source = _sized_source(count, tokens, salt)
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


def _engine(model_path: Path, threads: int, state_dir: Path | None,
            extra_buffers: bool | None) -> Any:
    from symergion.engine.llama import LlamaEngine

    return LlamaEngine(
        model_path,
        model_name="bench",
        n_ctx=BENCH_CONTEXT,
        n_threads=threads,
        sampling=Sampling(),
        state_dir=state_dir,
        extra_buffers=extra_buffers,
    )


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one feedback round in this (new) process; return its figures."""
    started = time.perf_counter()
    engine = _engine(Path(spec["model"]), spec["threads"], Path(spec["state_dir"]),
                     spec["extra_buffers"])
    loaded = time.perf_counter() - started
    stream = engine.generate(
        spec["prompt"], max_tokens=spec["gen_tokens"], stable_prefix=spec["stable_prefix"]
    )
    timing = _time_stream(stream)
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


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes."""
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak over exec.
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    # Linux and most BSDs report ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _llama_cpp() -> Any:
    """Import llama_cpp, typed as Any: its ctypes bindings are only partly annotated."""
    return importlib.import_module("llama_cpp")


def _run_batched(model_path: Path, threads: int, extra_buffers: bool, *, gen_tokens: int,
                 repeats: int) -> dict[str, Any]:
    """Run ``symergion.bench_batch`` in a child process, so that its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "symergion.bench_batch", "--model", str(model_path), "--threads",
         str(threads), "--gen-tokens", str(gen_tokens), "--repeats", str(repeats),
         "--extra-buffers", "on" if extra_buffers else "off"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"batched benchmark failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "symergion.bench", "--child", json.dumps(spec)],
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
        engine = _engine(model_path, threads, state_dir, extra_buffers)
        try:
            for r in range(repeats):
                progress(f"time to first token {r + 1}/{repeats}")
                prompts = feedback_prompts(engine.count_tokens, long_prompt_tokens, f"ttft-{r}")
                stable = len(prompts.stable)

                def first(prompt: str, stable: int = stable) -> tuple[float, str, int]:
                    seconds = _first_token_seconds(
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
    cold = _median(row["cold_seconds"] for row in rows)
    feedback = _median(row["feedback_seconds"] for row in rows)
    revoke = _median(row["revoke_seconds"] for row in rows)
    new_process = _median(row["new_process"]["ttft_seconds"] for row in rows)

    def speedup(seconds: Callable[[dict[str, Any]], float]) -> float:
        # Paired within a repeat, like the throughput ratios.
        return _median(_ratio(row["cold_seconds"], seconds(row)) for row in rows)

    return {
        "runs": rows,
        "prompt_tokens": rows[0]["prompt_tokens"],
        "cold_seconds": cold,
        "feedback_seconds": feedback,
        "revoke_seconds": revoke,
        "new_process_feedback_seconds": new_process,
        "new_process_load_seconds": _median(row["new_process"]["load_seconds"] for row in rows),
        "feedback_speedup": speedup(lambda row: row["feedback_seconds"]),
        "revoke_speedup": speedup(lambda row: row["revoke_seconds"]),
        "new_process_speedup": speedup(lambda row: row["new_process"]["ttft_seconds"]),
        "peak_rss_bytes": max(row["new_process"]["peak_rss_bytes"] for row in rows),
    }


# -- prompt lookup decoding ---------------------------------------------------------------


def _copy_prompt() -> str:
    """Return a regeneration prompt whose answer repeats its source."""
    source = source_text(6, "lookup")
    return f"Here is helpers.py:\n```python\n{source}```\nHere is helpers.py again, unchanged:\n```python\n"


def bench_prompt_lookup(
    model_path: Path,
    *,
    threads: int,
    gen_tokens: int,
    repeats: int,
    progress: Progress,
    extra_buffers: bool | None = None,
) -> dict[str, Any]:
    """Measure prompt lookup decoding: llama-cpp-python's, and symergion's own.

    llama-cpp-python's ``LlamaPromptLookupDecoding`` runs through ``create_completion`` on a
    copy task. symergion's (``LlamaEngine(prompt_lookup=True)``) runs on the copy task and on
    a fresh-code prompt, where little repeats, to show what drafting costs when it misses.
    Every figure is the wall time of ``gen_tokens`` greedy tokens, prompt included.
    """
    from symergion.engine.llama import LlamaEngine

    llama_cpp = _llama_cpp()
    speculative: Any = importlib.import_module("llama_cpp.llama_speculative")
    copy = _copy_prompt()
    plain = llama_cpp.Llama(
        str(model_path),
        n_ctx=BENCH_CONTEXT,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    # A draft model needs logits of every position, and llama-cpp-python then keeps
    # n_ctx x n_vocab floats in Python (1 MiB per position here): size n_ctx to the task.
    n_ctx = len(plain.tokenize(copy.encode(), special=True)) + gen_tokens + 64
    lookup = llama_cpp.Llama(
        str(model_path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
        logits_all=True,  # without it, llama-cpp-python overflows its logits array
        draft_model=speculative.LlamaPromptLookupDecoding(num_pred_tokens=10),
    )
    engines = {
        name: LlamaEngine(
            model_path,
            model_name="bench",
            n_ctx=BENCH_CONTEXT,
            n_threads=threads,
            sampling=Sampling(),
            prompt_lookup=name == "lookup",
            extra_buffers=extra_buffers,
        )
        for name in ("plain", "lookup")
    }
    rows: list[dict[str, float]] = []
    texts: dict[str, str] = {}
    try:
        for r in range(repeats):
            progress(f"prompt lookup {r + 1}/{repeats}")
            row: dict[str, float] = {}
            for name, llm in (("plain", plain), ("lookup", lookup)):
                llm.reset()
                start = time.perf_counter()
                result = llm.create_completion(copy, max_tokens=gen_tokens, temperature=0.0)
                row[f"llama_cpp_{name}_seconds"] = time.perf_counter() - start
                texts[f"llama_cpp_{name}"] = result["choices"][0]["text"]
            fresh = _sized_source(engines["plain"].count_tokens, 150, f"fresh-{r}") + "def main() -> None:\n"
            for task, prompt in (("copy", f"# run {r}\n{copy}"), ("fresh", fresh)):
                for name, engine in engines.items():
                    start = time.perf_counter()
                    text = "".join(engine.generate(prompt, max_tokens=gen_tokens))
                    row[f"engine_{task}_{name}_seconds"] = time.perf_counter() - start
                    texts[f"engine_{task}_{name}"] = text
            rows.append(row)
    finally:
        plain.close()
        lookup.close()
        for engine in engines.values():
            engine.close()

    def speedup(prefix: str) -> float:
        return _median(
            _ratio(row[f"{prefix}_plain_seconds"], row[f"{prefix}_lookup_seconds"]) for row in rows
        )

    plain_s = _median(row["llama_cpp_plain_seconds"] for row in rows)
    lookup_s = _median(row["llama_cpp_lookup_seconds"] for row in rows)
    return {
        "runs": rows,
        "plain_seconds": plain_s,
        "lookup_seconds": lookup_s,
        "lookup_speedup": speedup("llama_cpp"),
        "same_text": texts["llama_cpp_plain"] == texts["llama_cpp_lookup"],
        "engine_copy_speedup": speedup("engine_copy"),
        "engine_copy_same_text": texts["engine_copy_plain"] == texts["engine_copy_lookup"],
        "engine_fresh_speedup": speedup("engine_fresh"),
        "engine_fresh_same_text": texts["engine_fresh_plain"] == texts["engine_fresh_lookup"],
    }


# -- the whole run ------------------------------------------------------------------------


# -- extra buffer types and worker processes ---------------------------------------------------


def bench_isolation(
    model_path: Path,
    *,
    threads: int,
    prompt_tokens: int,
    gen_tokens: int,
    repeats: int,
    progress: Progress,
) -> dict[str, Any]:
    """Measure extra buffers on against off, and in process against a worker, paired per repeat.

    Extra buffers "on" is measured only where this machine's probe allows it (it would crash
    elsewhere). Every contender gets a fresh prompt per repeat, so none reuses a cached prefix;
    times are wall-clock in this process, the worker's messages included.
    """
    from symergion.engine.extra_buffers import machine_decision
    from symergion.engine.llama import LlamaEngine
    from symergion.engine.native import load_llama_cpp
    from symergion.engine.proxy import WorkerEngine
    from symergion.engine.worker import EngineSpec

    decision = machine_decision(model_path, llama=load_llama_cpp())
    best = "on" if decision.use_extra_buffers else "off"
    spec = EngineSpec(model_path, "bench", threads, Sampling(), BENCH_CONTEXT,
                      extra_buffers=best, extra_buffers_source=decision.source)
    startup: dict[str, list[float]] = {"in_process": [], "worker": []}

    def timed(load: Callable[[], Any], key: str) -> Any:
        started = time.perf_counter()
        engine = load()
        startup[key].append(time.perf_counter() - started)
        return engine

    def local(extra: bool) -> Any:
        return LlamaEngine(model_path, model_name="bench", n_ctx=BENCH_CONTEXT, n_threads=threads,
                           sampling=Sampling(), extra_buffers=extra)

    progress("loading the contenders")
    engines: dict[str, Any] = {"off": local(False)}
    if decision.use_extra_buffers:
        engines["on"] = timed(lambda: local(True), "in_process")
    engines["worker"] = timed(lambda: WorkerEngine(spec), "worker")
    try:
        for r in range(max(1, repeats // 3)):
            progress(f"startup {r + 1}")
            timed(lambda: local(decision.use_extra_buffers), "in_process").close()
            timed(lambda: WorkerEngine(spec), "worker").close()
        rows: list[dict[str, float]] = []
        names = list(engines)
        count = engines["off"].count_tokens
        for r in range(repeats):
            progress(f"isolation {r + 1}/{repeats}")
            row: dict[str, float] = {}
            for who in names[r % len(names):] + names[: r % len(names)]:
                prompt = _sized_source(count, prompt_tokens, f"{who}-{r}") + "def main() -> None:\n"
                timing = _time_stream(engines[who].generate(prompt, max_tokens=gen_tokens))
                n_gen = engines[who].stats.generated_tokens
                row[f"{who}_prompt_tps"] = count(prompt) / timing.first_token
                row[f"{who}_gen_tps"] = (n_gen - 1) / (timing.total - timing.first_token)
            rows.append(row)
    finally:
        for engine in engines.values():
            engine.close()

    def paired(a: str, b: str) -> float:
        return _median(_ratio(row[a], row[b]) for row in rows)

    result: dict[str, Any] = {
        "decision": decision.as_dict(),
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "runs": rows,
        "median": {key: _median(row[key] for row in rows) for key in rows[0]},
        "startup_seconds": {key: _median(values) for key, values in startup.items()},
        "worker_vs_in_process": {
            "prompt": paired("worker_prompt_tps", f"{best}_prompt_tps"),
            "generation": paired("worker_gen_tps", f"{best}_gen_tps"),
        },
    }
    if decision.use_extra_buffers:
        result["off_vs_on"] = {"prompt": paired("off_prompt_tps", "on_prompt_tps"),
                               "generation": paired("off_gen_tps", "on_gen_tps")}
    return result


def format_isolation(result: dict[str, Any], threads: int, repeats: int) -> str:
    """Render the figures of ``bench_isolation`` as a plain-text table."""
    med = result["median"]
    lines = [
        f"{threads} threads, {repeats} repeats (medians), prompt {result['prompt_tokens']} tokens, "
        f"{result['gen_tokens']} generated; extra buffers here: "
        f"{'on' if result['decision']['use_extra_buffers'] else 'off'} ({result['decision']['reason']})",
        "",
        f"{'contender':<36}{'prompt tok/s':>14}{'gen tok/s':>12}",
    ]
    labels = {"on": "in process, extra buffers on", "off": "in process, extra buffers off",
              "worker": "worker process (machine's decision)"}
    for who, label in labels.items():
        if f"{who}_gen_tps" in med:
            lines.append(f"{label:<36}{med[who + '_prompt_tps']:>14.1f}{med[who + '_gen_tps']:>12.1f}")
    lines.append("")
    if "off_vs_on" in result:
        ratio = result["off_vs_on"]
        lines.append(f"off / on (paired median ratio): prompt {ratio['prompt']:.2f}, "
                     f"generation {ratio['generation']:.2f}")
    ratio = result["worker_vs_in_process"]
    lines.append(f"worker / in process (paired median ratio): prompt {ratio['prompt']:.2f}, "
                 f"generation {ratio['generation']:.2f}")
    start = result["startup_seconds"]
    lines.append(f"startup: in-process load {start['in_process']:.3f} s, worker ready "
                 f"{start['worker']:.3f} s (process start + imports + load)")
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total_ram = 0
    with contextlib.suppress(ValueError, OSError):
        total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": total_ram,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def run_bench(
    model_path: Path,
    *,
    threads: int,
    prompt_tokens: int = 150,
    gen_tokens: int = 200,
    repeats: int = 9,
    out_json: Path | None = None,
    long_prompt_tokens: int = 1200,
    prompt_lookup: bool = True,
    batched: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every benchmark on one GGUF and return (and optionally write) the figures.

    Args:
        model_path: the GGUF file.
        threads: CPU threads for every contender.
        prompt_tokens: prompt length of the throughput runs.
        gen_tokens: tokens generated per throughput run.
        repeats: runs per measurement; figures are medians.
        out_json: where to write the result as JSON (parents are created).
        long_prompt_tokens: prompt length of the time-to-first-token runs (1000 or more).
        prompt_lookup: also measure prompt lookup decoding.
        batched: also measure batched generation (1/2/4/8 sequences, in a child process).
        progress: told what runs next, for a progress display.
    """
    llama_cpp = _llama_cpp()
    say: Progress = progress or (lambda _message: None)
    model_path = Path(model_path)
    say("deciding on extra buffer types")
    extra_buffers = machine_extra_buffers(model_path)
    with llama_cpp_params(extra_buffers):
        return _run_bench(model_path, llama_cpp, say, extra_buffers, threads=threads,
                          prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repeats=repeats,
                          out_json=out_json, long_prompt_tokens=long_prompt_tokens,
                          prompt_lookup=prompt_lookup, batched=batched)


def machine_extra_buffers(model_path: Path) -> bool:
    """Return whether this machine's llama.cpp may use extra buffer types (probed once, cached)."""
    from symergion.engine.extra_buffers import machine_decision

    return machine_decision(model_path, llama=_llama_cpp()).use_extra_buffers


def _run_bench(
    model_path: Path,
    llama_cpp: Any,
    say: Progress,
    extra_buffers: bool,
    *,
    threads: int,
    prompt_tokens: int,
    gen_tokens: int,
    repeats: int,
    out_json: Path | None,
    long_prompt_tokens: int,
    prompt_lookup: bool,
    batched: bool = False,
) -> dict[str, Any]:
    started = time.time()
    load_avg_before = os.getloadavg()
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": _machine(),
        "llama_cpp_python": llama_cpp.__version__,
        "model": {"path": str(model_path), "bytes": model_path.stat().st_size},
        "threads": threads,
        "repeats": repeats,
        "extra_buffers": extra_buffers,
        "targets": TARGETS,
    }

    say("loading the engine and the baseline")
    t = time.perf_counter()
    engine = _engine(model_path, threads, None, extra_buffers)
    engine_load = time.perf_counter() - t
    t = time.perf_counter()
    llm = llama_cpp.Llama(
        str(model_path),
        n_ctx=BENCH_CONTEXT,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    baseline_load = time.perf_counter() - t
    try:
        result["load_seconds"] = {"engine": engine_load, "baseline": baseline_load}
        result["throughput"] = bench_throughput(
            engine,
            llm,
            llama_cpp,
            prompt_tokens=prompt_tokens,
            gen_tokens=gen_tokens,
            repeats=repeats,
            progress=say,
        )
    finally:
        engine.close()
        llm.close()

    result["ttft"] = bench_ttft(
        model_path,
        threads=threads,
        long_prompt_tokens=long_prompt_tokens,
        gen_tokens=gen_tokens,
        repeats=repeats,
        progress=say,
        extra_buffers=extra_buffers,
    )
    rss = result["ttft"]["peak_rss_bytes"]
    result["memory"] = {
        "peak_rss_bytes": rss,
        "gguf_bytes": model_path.stat().st_size,
        "rss_over_gguf_mb": (rss - model_path.stat().st_size) / _MB,
    }
    if prompt_lookup:
        try:
            # The slowest part, and only a yes/no question: fewer repeats do.
            result["prompt_lookup"] = bench_prompt_lookup(
                model_path,
                threads=threads,
                gen_tokens=gen_tokens,
                repeats=max(1, repeats // 3),
                progress=say,
                extra_buffers=extra_buffers,
            )
        except (ValueError, RuntimeError) as exc:
            # An optional measure of a third-party path: report its failure, keep the rest.
            result["prompt_lookup"] = {"error": f"{type(exc).__name__}: {exc}"}
    if batched:
        say("batched generation (1/2/4/8 sequences)")
        result["batched"] = _run_batched(model_path, threads, extra_buffers,
                                         gen_tokens=min(gen_tokens, 64), repeats=max(1, repeats // 3))
    result["load_average"] = {"before": load_avg_before, "after": os.getloadavg()}
    result["seconds"] = time.time() - started
    result["verdict"] = verdict(result)
    if out_json is not None:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_json.with_name(out_json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp.replace(out_json)
    return result


def verdict(result: dict[str, Any]) -> dict[str, bool]:
    """Return, per target of issue 4, whether the run met it."""
    throughput, ttft = result["throughput"], result["ttft"]
    return {
        "generation_vs_baseline": throughput["generation_vs_baseline"] >= TARGETS["generation_vs_baseline"],
        "prompt_vs_baseline": throughput["prompt_vs_baseline"] >= TARGETS["prompt_vs_baseline"],
        "feedback_ttft_speedup": ttft["feedback_speedup"] >= TARGETS["feedback_ttft_speedup"],
        "new_process_ttft_speedup": ttft["new_process_speedup"] >= TARGETS["feedback_ttft_speedup"],
        "rss_over_gguf_mb": result["memory"]["rss_over_gguf_mb"] < TARGETS["rss_over_gguf_mb"],
    }


def format_table(result: dict[str, Any]) -> str:
    """Render the figures of a run as a plain-text table."""
    th, tt, mem = result["throughput"], result["ttft"], result["memory"]
    med, best, idle = th["median"], th["best"], th["idle_estimate"]
    ok = result["verdict"]

    def mark(key: str) -> str:
        return "met" if ok.get(key) else "MISSED"

    lines = [
        f"model {Path(result['model']['path']).name} ({result['model']['bytes'] / _MB:.0f} MB), "
        f"{result['threads']} threads, {result['repeats']} repeats (medians), "
        f"llama-cpp-python {result['llama_cpp_python']}",
        "",
        f"{'measure':<44}{'symergion':>12}{'baseline':>12}{'ratio':>8}  target",
        f"{'prompt tokens/s (' + str(int(med['prompt_tokens'])) + ' tokens)':<44}"
        f"{med['engine_prompt_tps']:>12.1f}{med['baseline_prompt_tps']:>12.1f}"
        f"{th['prompt_vs_baseline']:>8.2f}  >= 0.95 {mark('prompt_vs_baseline')}",
        f"{'generation tokens/s':<44}{med['engine_gen_tps']:>12.1f}"
        f"{med['baseline_gen_tps']:>12.1f}{th['generation_vs_baseline']:>8.2f}"
        f"  >= 1.08 {mark('generation_vs_baseline')}",
        f"{'  floor: decode + CPU sampler only, tokens/s':<44}{med['floor_gen_tps']:>12.1f}"
        f"{'':>12}{th['engine_vs_floor']:>8.2f}  (symergion / floor)",
        f"{'best run: prompt tokens/s':<44}{best['engine_prompt_tps']:>12.1f}"
        f"{best['baseline_prompt_tps']:>12.1f}{th['best_prompt_vs_baseline']:>8.2f}",
        f"{'best run: generation tokens/s':<44}{best['engine_gen_tps']:>12.1f}"
        f"{best['baseline_gen_tps']:>12.1f}{th['best_generation_vs_baseline']:>8.2f}",
        f"{'ms per token inside llama_decode':<44}{med['engine_decode_ms']:>12.2f}"
        f"{med['baseline_decode_ms']:>12.2f}",
        f"{'ms per token outside llama_decode':<44}{med['engine_other_ms']:>12.3f}"
        f"{med['baseline_other_ms']:>12.3f}",
        f"{'idle estimate: generation tokens/s':<44}{idle['engine_gen_tps']:>12.1f}"
        f"{idle['baseline_gen_tps']:>12.1f}{idle['generation_vs_baseline']:>8.2f}"
        f"  (fastest decode {idle['decode_ms']:.2f} ms + median time outside it)",
        "(ratios: median of the ratios within each repeat; best run: ratio of the fastest runs;",
        " outside llama_decode: sampling, detokenizing and all Python work of a token)",
        "",
        f"time to first token, {tt['prompt_tokens']} token prompt        seconds   speedup",
        f"{'  cold':<44}{tt['cold_seconds']:>12.3f}",
        f"{'  feedback round, same process (memory)':<44}{tt['feedback_seconds']:>12.3f}"
        f"{tt['feedback_speedup']:>10.1f}x  >= 5x {mark('feedback_ttft_speedup')}",
        f"{'  revoke, same process (memory)':<44}{tt['revoke_seconds']:>12.3f}{tt['revoke_speedup']:>10.1f}x",
        f"{'  feedback round, new process (disk state)':<44}"
        f"{tt['new_process_feedback_seconds']:>12.3f}{tt['new_process_speedup']:>10.1f}x"
        f"  >= 5x {mark('new_process_ttft_speedup')}",
        f"{'  new process: model load':<44}{tt['new_process_load_seconds']:>12.3f}",
        "",
        f"peak RSS, one model loaded: {mem['peak_rss_bytes'] / _MB:.0f} MB = GGUF "
        f"{mem['gguf_bytes'] / _MB:.0f} MB + {mem['rss_over_gguf_mb']:.0f} MB"
        f"  (< +400 MB {mark('rss_over_gguf_mb')})",
    ]
    if result.get("batched"):
        lines += ["", *batched_rows(result["batched"])]
    lookup = result.get("prompt_lookup")
    if lookup and "error" in lookup:
        lines += ["", f"prompt lookup decoding failed: {lookup['error']}"]
    elif lookup:
        lines += [
            "",
            f"prompt lookup decoding, {result['repeats'] // 3 or 1} repeats, "
            "speedup = plain time / lookup time (paired median)",
            f"  llama-cpp-python LlamaPromptLookupDecoding, copy task: "
            f"{lookup['lookup_speedup']:.2f}x, same text: {lookup['same_text']}",
            f"  symergion prompt_lookup=True, copy task: {lookup['engine_copy_speedup']:.2f}x, "
            f"same text: {lookup['engine_copy_same_text']}",
            f"  symergion prompt_lookup=True, fresh code: {lookup['engine_fresh_speedup']:.2f}x, "
            f"same text: {lookup['engine_fresh_same_text']}",
        ]
    before, after = result["load_average"]["before"], result["load_average"]["after"]
    lines += ["", f"load average before {before[0]:.2f}, after {after[0]:.2f}"]
    return "\n".join(lines)


def batched_rows(result: dict[str, Any]) -> list[str]:
    """Render the batched row in the benchmark table's layout."""
    mem = result["memory"]
    lines = [f"batched generation, {result['gen_tokens']} tokens each after"
             f" {result.get('prompt_tokens', '~120')}, {result['repeats']} repeats"
             "       tokens/s   ms/step   vs one",]
    for n in BATCH_COUNTS:
        row = result[str(n)]
        target = "  >= 2.2x " + ("met" if row["vs_one"] >= 2.2 else "MISSED") if n == 4 else ""
        lines.append(f"  {n} sequence{'s' if n > 1 else ' '}{'':<32}{row['tokens_per_second']:>10.1f}"
                     f"{row['ms_per_step']:>10.1f}{row['vs_one']:>8.2f}x{target}")
    over = (mem["peak_rss_bytes"] - mem["gguf_bytes"] - mem["kv_allocated_bytes"]) / _MB
    lines.append(f"  peak RSS {mem['peak_rss_bytes'] / _MB:.0f} MB = GGUF {mem['gguf_bytes'] / _MB:.0f} MB"
                 f" + KV {mem['kv_allocated_bytes'] / _MB:.0f} MB allocated"
                 f" ({mem['kv_used_bytes'] / _MB:.0f} MB used) + {over:.0f} MB"
                 f"  (< +400 MB {'met' if over < 400 else 'MISSED'})")
    return lines


# -- remote engines --------------------------------------------------------------------------


def _start_server(model_path: Path, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``llama_cpp.server`` on a free loopback port; return it and its endpoint."""
    import socket

    import httpx2

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*serve_command(), "--model", str(model_path),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(BENCH_CONTEXT),
             "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--verbose", "False", "--interrupt_requests", "False"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"{endpoint}/v1/models", timeout=2).status_code == 200:
                return process, endpoint
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama_cpp.server did not start; see {log}")


def bench_remote(
    model_path: Path,
    *,
    threads: int,
    prompt_tokens: int = 150,
    gen_tokens: int = 200,
    repeats: int = 9,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Two answers: two local servers at once (half the threads each) vs one in-process engine.

    Each repeat generates two fresh prompts (no prefix can be reused) greedily, ``gen_tokens``
    at most, once with ``LlamaEngine`` one after the other and once with two ``RemoteEngine``
    threads, one per server, in rotating order. Figures are aggregate tokens/s over wall time
    (prompt processing included), and a single answer on one server against the engine.
    """
    from symergion.engine.remote import RemoteEngine

    say: Progress = progress or (lambda _message: None)
    server_threads = max(1, threads // 2)
    engine = _engine(model_path, threads, None, extra_buffers=None)
    processes: list[subprocess.Popen[bytes]] = []
    remotes: list[RemoteEngine] = []
    rows: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as logs:
            for i in range(2):
                say(f"starting llama_cpp.server {i + 1} of 2 ({server_threads} threads)")
                process, endpoint = _start_server(model_path, server_threads, Path(logs) / f"{i}.log")
                processes.append(process)
                remotes.append(RemoteEngine(endpoint, model_name=f"server{i}",
                                            context_size=BENCH_CONTEXT))

            def remote_run(index: int, prompt: str, out: list[int]) -> None:
                pieces = remotes[index].generate(prompt, max_tokens=gen_tokens)
                out[index] = sum(1 for _ in pieces)

            for repeat in range(repeats):
                say(f"remote repeat {repeat + 1}/{repeats}")
                prompts = [_sized_source(engine.count_tokens, prompt_tokens, f"remote-{repeat}-{k}")
                           for k in range(5)]
                row: dict[str, float] = {}

                def local_two(prompts: list[str], row: dict[str, float]) -> None:
                    t = time.perf_counter()
                    n = sum(sum(1 for _ in engine.generate(p, max_tokens=gen_tokens))
                            for p in prompts[:2])
                    row["local_two_tps"] = n / (time.perf_counter() - t)

                def remote_two(prompts: list[str], row: dict[str, float]) -> None:
                    import threading

                    counts = [0, 0]
                    # Daemon threads: Ctrl-C ends the run even while a request is waiting.
                    workers = [threading.Thread(target=remote_run, args=(k, prompts[2 + k], counts),
                                                daemon=True) for k in range(2)]
                    t = time.perf_counter()
                    for worker in workers:
                        worker.start()
                    for worker in workers:
                        worker.join()
                    row["remote_two_tps"] = sum(counts) / (time.perf_counter() - t)

                def one_each(prompts: list[str], row: dict[str, float]) -> None:
                    t = time.perf_counter()
                    n = sum(1 for _ in engine.generate(prompts[4], max_tokens=gen_tokens))
                    row["local_one_tps"] = n / (time.perf_counter() - t)
                    counts = [0, 0]
                    t = time.perf_counter()
                    remote_run(0, prompts[4], counts)
                    row["remote_one_tps"] = counts[0] / (time.perf_counter() - t)

                turns = [local_two, remote_two, one_each]
                for k in range(len(turns)):
                    turns[(repeat + k) % len(turns)](prompts, row)
                rows.append(row)
    finally:
        engine.close()
        for remote in remotes:
            remote.close()
        for process in processes:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            if process.poll() is None:
                process.kill()
    med = {key: _median(row[key] for row in rows) for key in rows[0]}
    return {
        "runs": rows,
        "median": med,
        "server_threads": server_threads,
        "two_servers_vs_engine": _median(_ratio(r["remote_two_tps"], r["local_two_tps"]) for r in rows),
        "one_server_vs_engine": _median(_ratio(r["remote_one_tps"], r["local_one_tps"]) for r in rows),
    }


def format_remote(remote: dict[str, Any], threads: int) -> list[str]:
    """Render the remote rows of the table."""
    med = remote["median"]
    return [
        "",
        f"remote engine: llama_cpp.server on loopback, {remote['server_threads']} threads each; "
        f"in-process engine {threads} threads",
        f"{'measure':<44}{'remote':>12}{'engine':>12}{'ratio':>8}",
        f"{'two answers at once, 2 servers, tokens/s':<44}{med['remote_two_tps']:>12.1f}"
        f"{med['local_two_tps']:>12.1f}{remote['two_servers_vs_engine']:>8.2f}",
        f"{'one answer, 1 server, tokens/s':<44}{med['remote_one_tps']:>12.1f}"
        f"{med['local_one_tps']:>12.1f}{remote['one_server_vs_engine']:>8.2f}",
        "(aggregate tokens over wall time, prompt included; ratios: paired medians)",
    ]


def _default_model() -> Path:
    from symergion.models import resolve_model

    return resolve_model(EMBEDDED_MODEL, Path.cwd())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; the JSON goes to --out."""
    parser = argparse.ArgumentParser(
        prog="python -m symergion.bench",
        description="Benchmark symergion's llama.cpp engine against llama-cpp-python.",
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--gen-tokens", type=int, default=200)
    parser.add_argument("--long-prompt-tokens", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--no-prompt-lookup", action="store_true")
    parser.add_argument("--no-batched", action="store_true",
                        help="skip the batched generation row (python -m symergion.bench_batch)")
    parser.add_argument("--isolation", action="store_true",
                        help="measure only extra buffers on/off and in-process/worker")
    parser.add_argument("--remote", action="store_true",
                        help="also measure the remote engine on two llama_cpp.server processes")
    parser.add_argument("--only-remote", action="store_true", help="measure only the remote engine")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    model = args.model or _default_model()
    if args.isolation:
        figures = bench_isolation(
            model, threads=args.threads, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
            repeats=args.repeats,
            progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
        )
        figures["command"] = " ".join(sys.argv)
        figures["machine"] = _machine()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(format_isolation(figures, args.threads, args.repeats))
        return 0
    if args.only_remote:
        return _main_remote(args, model)
    result = run_bench(
        model,
        threads=args.threads,
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        repeats=args.repeats,
        out_json=args.out,
        long_prompt_tokens=args.long_prompt_tokens,
        prompt_lookup=not args.no_prompt_lookup,
        batched=not args.no_batched,
        progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
    )
    if args.remote:
        result["remote"] = _remote_result(args, model)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(result))
    if args.remote:
        print("\n".join(format_remote(result["remote"], args.threads)))
    print(f"\nJSON written to {args.out}", file=sys.stderr)
    return 0


def _remote_result(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    return bench_remote(
        model, threads=args.threads, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
        repeats=args.repeats,
        progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
    )


def _main_remote(args: argparse.Namespace, model: Path) -> int:
    started = time.time()
    load_before = os.getloadavg()
    remote = _remote_result(args, model)
    result = {"command": " ".join(sys.argv), "machine": _machine(), "threads": args.threads,
              "repeats": args.repeats, "remote": remote, "seconds": time.time() - started,
              "load_average": {"before": load_before, "after": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(format_remote(remote, args.threads)[1:]))
    print(f"load average before {load_before[0]:.2f}, after {result['load_average']['after'][0]:.2f}")
    print(f"\nJSON written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
