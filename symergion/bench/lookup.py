"""Prompt lookup decoding: llama-cpp-python's ``LlamaPromptLookupDecoding`` and symergion's own
``LlamaEngine(prompt_lookup=True)``, each against the same model without it."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from symergion.bench.measure import (
    BENCH_CONTEXT,
    Progress,
    import_llama_cpp,
    median,
    ratio,
    sized_source,
    source_text,
)
from symergion.config.sampling import Sampling


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

    llama_cpp = import_llama_cpp()
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
            rows.append(_lookup_row(r, copy, {"plain": plain, "lookup": lookup}, engines, texts,
                                    gen_tokens=gen_tokens))
    finally:
        plain.close()
        lookup.close()
        for engine in engines.values():
            engine.close()
    return _lookup_summary(rows, texts)


def _lookup_row(r: int, copy: str, llms: dict[str, Any], engines: dict[str, Any],
                texts: dict[str, str], *, gen_tokens: int) -> dict[str, float]:
    """Time every contender once on the copy task (and the engines on fresh code); keep the texts."""
    row: dict[str, float] = {}
    for name, llm in llms.items():
        llm.reset()
        start = time.perf_counter()
        result = llm.create_completion(copy, max_tokens=gen_tokens, temperature=0.0)
        row[f"llama_cpp_{name}_seconds"] = time.perf_counter() - start
        texts[f"llama_cpp_{name}"] = result["choices"][0]["text"]
    fresh = sized_source(engines["plain"].count_tokens, 150, f"fresh-{r}") + "def main() -> None:\n"
    for task, prompt in (("copy", f"# run {r}\n{copy}"), ("fresh", fresh)):
        for name, engine in engines.items():
            start = time.perf_counter()
            text = "".join(engine.generate(prompt, max_tokens=gen_tokens))
            row[f"engine_{task}_{name}_seconds"] = time.perf_counter() - start
            texts[f"engine_{task}_{name}"] = text
    return row


def _lookup_summary(rows: list[dict[str, float]], texts: dict[str, str]) -> dict[str, Any]:
    """Return the median times, the paired speedups and whether lookup changed the text."""
    def speedup(prefix: str) -> float:
        return median(
            ratio(row[f"{prefix}_plain_seconds"], row[f"{prefix}_lookup_seconds"]) for row in rows
        )

    plain_s = median(row["llama_cpp_plain_seconds"] for row in rows)
    lookup_s = median(row["llama_cpp_lookup_seconds"] for row in rows)
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

