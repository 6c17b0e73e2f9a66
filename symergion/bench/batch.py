"""The batched-generation row of the benchmarks: 1, 2, 4 and 8 sequences decoded together.

``python -m symergion.bench.batch --threads 2`` prints the figures as JSON;
``symergion.bench.engine`` runs it in a child process (so that its peak RSS is its own) and puts
it in its table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from symergion.bench.measure import (
    BATCH_COUNTS,
    default_model,
    machine_extra_buffers,
    peak_rss_bytes,
    source_text,
)
from symergion.config.sampling import Sampling


def _prompts(count: int, functions: int = 3) -> list[str]:
    """Return ``count`` different code prompts of ``functions`` functions (3 make ~120 tokens)."""
    return [source_text(functions, f"batch{i}") + f"\ndef task_{i}(values):\n" for i in range(count)]


def _functions_for(engine: Any, tokens: int) -> int:
    """Return the number of functions that makes a prompt of at least ``tokens`` tokens."""
    functions = 1
    while len(engine.tokenize(_prompts(1, functions)[0])) < tokens:
        functions += 1
    return functions


def bench_batched(
    model_path: Path,
    *,
    threads: int,
    extra_buffers: bool,
    gen_tokens: int = 64,
    prompt_tokens: int = 120,
    repeats: int = 3,
    counts: Sequence[int] = BATCH_COUNTS,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Measure aggregate generation tokens/s and ms per step of ``generate_many``.

    The generation phase only: the time of the decode steps (every running sequence adds one
    token per step), not the prompts'. Each prompt has about ``prompt_tokens`` tokens: the
    longer the context, the more of a step is attention, which each sequence pays alone.
    Ratios to one sequence are taken within each repeat and their median reported; the counts
    take turns in rotating order.
    """
    from symergion.engine.base import GenerationRequest
    from symergion.engine.llama import LlamaEngine

    engine = LlamaEngine(model_path, model_name="bench", n_ctx=2048, n_threads=threads,
                         sampling=Sampling(), extra_buffers=extra_buffers, slots=max(counts))
    functions = _functions_for(engine, prompt_tokens)
    measured_prompt = len(engine.tokenize(_prompts(1, functions)[0]))
    runs: list[dict[int, dict[str, float]]] = []
    kv_bytes_per_token = kv_allocated = kv_used = 0.0
    try:
        for repeat in range(repeats):
            figures: dict[int, dict[str, float]] = {}
            order = list(counts[repeat % len(counts):]) + list(counts[: repeat % len(counts)])
            for n in order:
                progress(f"batched generation {repeat + 1}/{repeats}: {n} sequences")
                requests = [GenerationRequest(p, gen_tokens) for p in _prompts(n, functions)]
                if n == 1:
                    # One sequence is the single-sequence path: what a one-task sync runs.
                    for _ in engine.generate(requests[0].prompt, max_tokens=gen_tokens):
                        pass
                    stats = engine.stats
                    # Its first token comes from the prompt, as in a batch: not a step.
                    steps, seconds = stats.generated_tokens - 1, stats.generation_seconds
                    tokens = steps
                else:
                    for _ in engine.generate_many(requests):
                        context = engine.batch_context
                        if not kv_bytes_per_token and context is not None:
                            # A slot holds its prompt now: the size of its state per token.
                            slot = max(context.slots, key=lambda s: len(s.cached))
                            size = context.ctx.state_size(slot.seq)
                            kv_bytes_per_token = int(size) / len(slot.cached)
                    f = engine.batch_figures
                    steps, seconds, tokens = f.steps, f.step_seconds, f.step_tokens
                    used = sum(s.prompt_tokens + s.generated_tokens for s in engine.batch_stats)
                    kv_used = max(kv_used, kv_bytes_per_token * used)
                figures[n] = {"tokens_per_second": tokens / seconds,
                              "ms_per_step": 1000 * seconds / steps,
                              "step_tokens": tokens, "steps": steps}
            runs.append(figures)
        context = engine.batch_context
        if context is not None:
            kv_allocated = kv_bytes_per_token * context.per_seq * context.slots_count
    finally:
        engine.close()
    kv = {"kv_bytes_per_token": kv_bytes_per_token, "kv_allocated_bytes": kv_allocated,
          "kv_used_bytes": kv_used}
    return _summary(model_path, runs, counts, kv, gen_tokens=gen_tokens, repeats=repeats,
                    prompt_tokens=measured_prompt)


def _summary(model_path: Path, runs: list[dict[int, dict[str, float]]], counts: Sequence[int],
             kv: dict[str, float], *, gen_tokens: int, repeats: int,
             prompt_tokens: int) -> dict[str, Any]:
    """Return the medians per sequence count, paired ratios to one sequence, and the memory."""
    result: dict[str, Any] = {"gen_tokens": gen_tokens, "repeats": repeats, "runs": runs,
                              "prompt_tokens": prompt_tokens}
    for n in counts:
        result[str(n)] = {
            "tokens_per_second": statistics.median(r[n]["tokens_per_second"] for r in runs),
            "ms_per_step": statistics.median(r[n]["ms_per_step"] for r in runs),
            "vs_one": statistics.median(r[n]["tokens_per_second"] / r[1]["tokens_per_second"]
                                        for r in runs),
        }
    result["memory"] = {
        "peak_rss_bytes": peak_rss_bytes(),
        "gguf_bytes": model_path.stat().st_size,
        **kv,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the batched row's figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m symergion.bench.batch")
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=120,
                        help="length of each prompt; a sync's prompts hold a whole source file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extra-buffers", choices=("on", "off", "auto"), default="auto")
    args = parser.parse_args(argv)
    model = args.model or default_model()
    extra = {"on": True, "off": False}.get(args.extra_buffers)
    if extra is None:
        extra = machine_extra_buffers(model)
    started = time.perf_counter()
    result = bench_batched(model, threads=args.threads, extra_buffers=extra,
                           gen_tokens=args.gen_tokens, prompt_tokens=args.prompt_tokens, repeats=args.repeats,
                           progress=lambda m: print(m, file=sys.stderr))
    result.update(threads=args.threads, extra_buffers=extra, seconds=time.perf_counter() - started)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
