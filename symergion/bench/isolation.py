"""What running safely costs: prompt and generation tokens/s with and without llama.cpp's extra
buffer types, in this process and through a worker process, and a worker's startup time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.bench.measure import (
    BENCH_CONTEXT,
    Progress,
    median,
    ratio,
    sized_source,
    time_stream,
)
from symergion.config.sampling import Sampling

if TYPE_CHECKING:
    from symergion.engine.extra_buffers import Decision


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
                prompt = sized_source(count, prompt_tokens, f"{who}-{r}") + "def main() -> None:\n"
                timing = time_stream(engines[who].generate(prompt, max_tokens=gen_tokens))
                n_gen = engines[who].stats.generated_tokens
                row[f"{who}_prompt_tps"] = count(prompt) / timing.first_token
                row[f"{who}_gen_tps"] = (n_gen - 1) / (timing.total - timing.first_token)
            rows.append(row)
    finally:
        for engine in engines.values():
            engine.close()
    return _isolation_summary(decision, best, rows, startup, prompt_tokens=prompt_tokens,
                              gen_tokens=gen_tokens)


def _isolation_summary(decision: Decision, best: str, rows: list[dict[str, float]],
                       startup: dict[str, list[float]], *, prompt_tokens: int,
                       gen_tokens: int) -> dict[str, Any]:
    """Return the medians and the paired ratios of the runs.

    ``best`` names the in-process contender that loads as the machine decided: the worker's
    match.
    """

    def paired(a: str, b: str) -> float:
        return median(ratio(row[a], row[b]) for row in rows)

    result: dict[str, Any] = {
        "decision": decision.as_dict(),
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "runs": rows,
        "median": {key: median(row[key] for row in rows) for key in rows[0]},
        "startup_seconds": {key: median(values) for key, values in startup.items()},
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
        pair = result["off_vs_on"]
        lines.append(f"off / on (paired median ratio): prompt {pair['prompt']:.2f}, "
                     f"generation {pair['generation']:.2f}")
    pair = result["worker_vs_in_process"]
    lines.append(f"worker / in process (paired median ratio): prompt {pair['prompt']:.2f}, "
                 f"generation {pair['generation']:.2f}")
    start = result["startup_seconds"]
    lines.append(f"startup: in-process load {start['in_process']:.3f} s, worker ready "
                 f"{start['worker']:.3f} s (process start + imports + load)")
    return "\n".join(lines)

