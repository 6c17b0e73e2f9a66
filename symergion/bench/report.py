"""The verdict of a run against its targets, and the plain-text table of its figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from symergion.bench.measure import BATCH_COUNTS, MB

# What a run should reach: ratios to the baseline, a speedup, megabytes over the GGUF's size.
TARGETS = {
    "generation_vs_baseline": 1.08,
    "prompt_vs_baseline": 0.95,
    "feedback_ttft_speedup": 5.0,
    "rss_over_gguf_mb": 400.0,
}


def verdict(result: dict[str, Any]) -> dict[str, bool]:
    """Return, per target, whether the run met it."""
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
        f"model {Path(result['model']['path']).name} ({result['model']['bytes'] / MB:.0f} MB), "
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
        f"peak RSS, one model loaded: {mem['peak_rss_bytes'] / MB:.0f} MB = GGUF "
        f"{mem['gguf_bytes'] / MB:.0f} MB + {mem['rss_over_gguf_mb']:.0f} MB"
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
    over = (mem["peak_rss_bytes"] - mem["gguf_bytes"] - mem["kv_allocated_bytes"]) / MB
    lines.append(f"  peak RSS {mem['peak_rss_bytes'] / MB:.0f} MB = GGUF {mem['gguf_bytes'] / MB:.0f} MB"
                 f" + KV {mem['kv_allocated_bytes'] / MB:.0f} MB allocated"
                 f" ({mem['kv_used_bytes'] / MB:.0f} MB used) + {over:.0f} MB"
                 f"  (< +400 MB {'met' if over < 400 else 'MISSED'})")
    return lines

