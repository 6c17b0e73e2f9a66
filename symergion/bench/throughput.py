"""Throughput: prompt and generation tokens/s of the engine, of llama-cpp-python's
``create_completion`` (the baseline) and of a floor loop that only decodes and samples."""

from __future__ import annotations

import time
from typing import Any

from symergion.bench.measure import (
    DecodeTimer,
    Progress,
    median,
    ratio,
    sized_source,
    time_stream,
)


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
    for r in range(repeats):
        progress(f"throughput {r + 1}/{repeats}")
        rows.append(_throughput_row(engine, llm, llama_cpp, r, prompt_tokens=prompt_tokens,
                                    gen_tokens=gen_tokens))
    return _throughput_summary(rows)


def _throughput_row(engine: Any, llm: Any, llama_cpp: Any, r: int, *, prompt_tokens: int,
                    gen_tokens: int) -> dict[str, float]:
    """Run each contender once, starting with the ``r``-th in turn; return their figures."""
    contenders = ["engine", "baseline", "floor"]
    # A fresh first line per run and contender: neither may reuse a cached prefix.
    prompts = {
        who: sized_source(engine.count_tokens, prompt_tokens, f"{who}-{r}") + "def main() -> None:\n"
        for who in contenders
    }
    row: dict[str, float] = {}
    for who in contenders[r % 3 :] + contenders[: r % 3]:
        prompt = prompts[who]
        n_prompt = engine.count_tokens(prompt)
        if who == "engine":
            with DecodeTimer(llama_cpp) as timer:
                timing = time_stream(engine.generate(prompt, max_tokens=gen_tokens), timer)
            n_gen = engine.stats.generated_tokens
        elif who == "baseline":
            stream = llm.create_completion(prompt, max_tokens=gen_tokens, temperature=0.0, stream=True)
            with DecodeTimer(llama_cpp) as timer:
                timing = time_stream(stream, timer)
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
    return row


def _throughput_summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Return the medians, the best runs, the paired ratios and the idle estimate of the runs."""
    med = {key: median(row[key] for row in rows) for key in rows[0]}
    # Best: the highest speeds, the lowest times.
    best = {key: (min if key.endswith("_ms") else max)(row[key] for row in rows) for key in rows[0]}
    # Both contenders run the very same llama_decode (same context, same graph), so on an idle
    # machine a token costs the fastest decode seen plus each one's own work around it.
    decode_ms = min(best["engine_decode_ms"], best["baseline_decode_ms"])
    idle_engine_ms = decode_ms + med["engine_other_ms"]
    idle_baseline_ms = decode_ms + med["baseline_other_ms"]

    def paired(a: str, b: str) -> float:
        return median(ratio(row[a], row[b]) for row in rows)

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
        "best_generation_vs_baseline": ratio(best["engine_gen_tps"], best["baseline_gen_tps"]),
        "best_prompt_vs_baseline": ratio(best["engine_prompt_tps"], best["baseline_prompt_tps"]),
    }

