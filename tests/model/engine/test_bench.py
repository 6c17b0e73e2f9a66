"""Smoke test of the benchmark harness on the real GGUF (tiny sizes, no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.bench.engine import main, run_bench
from symergion.bench.report import format_table


@pytest.mark.slow
def test_run_bench_writes_json_and_renders_a_table(gguf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "bench.json"
    messages: list[str] = []

    result = run_bench(
        gguf_path,
        threads=2,
        prompt_tokens=40,
        gen_tokens=8,
        repeats=1,
        out_json=out,
        long_prompt_tokens=120,
        progress=messages.append,
    )

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    run = result["ttft"]["runs"][0]
    assert run["feedback_source"] == "memory"
    assert run["revoke_source"] == "memory"
    assert run["new_process"]["prefix_source"] == "disk"
    assert result["throughput"]["median"]["engine_gen_tokens"] == 8
    assert result["prompt_lookup"]["same_text"] in (True, False)
    assert result["memory"]["peak_rss_bytes"] > result["memory"]["gguf_bytes"] // 2
    assert set(result["verdict"]) == {
        "generation_vs_baseline",
        "prompt_vs_baseline",
        "feedback_ttft_speedup",
        "new_process_ttft_speedup",
        "rss_over_gguf_mb",
    }
    assert "time to first token" in format_table(result)
    batched = result["batched"]
    assert [batched[str(n)]["tokens_per_second"] > 0 for n in (1, 2, 4, 8)] == [True] * 4
    eight = batched["runs"][0]["8"]
    # Every step decodes one token of each running sequence: up to 8 per step, more than 1.
    assert eight["steps"] < eight["step_tokens"] <= 8 * eight["steps"]
    assert batched["memory"]["kv_allocated_bytes"] >= batched["memory"]["kv_used_bytes"] > 0
    assert "8 sequences" in format_table(result)
    assert any("throughput" in m for m in messages)


def test_isolation_bench_pairs_the_contenders(gguf_path: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "isolation.json"
    code = main(["--isolation", "--model", str(gguf_path), "--threads", "2", "--prompt-tokens", "40",
                 "--gen-tokens", "6", "--repeats", "1", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    row = result["runs"][0]
    assert row["worker_gen_tps"] > 0 and row["off_gen_tps"] > 0
    assert ("on_gen_tps" in row) is result["decision"]["use_extra_buffers"]
    assert result["startup_seconds"]["worker"] > 0
    assert "worker / in process" in capsys.readouterr().out


def test_batched_row_makes_prompts_of_the_length_asked(gguf_path: Path) -> None:
    from symergion.bench.batch import bench_batched

    result = bench_batched(gguf_path, threads=2, extra_buffers=False, gen_tokens=4,
                           prompt_tokens=300, repeats=1, counts=(1, 2))

    # The shortest prompt of whole functions that reaches the length: not far above it.
    assert 300 <= result["prompt_tokens"] < 400
    assert result["2"]["tokens_per_second"] > 0
