"""Smoke test of the benchmark harness on the real GGUF (tiny sizes, no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.bench import format_table, main, run_bench


@pytest.mark.model
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
    assert any("throughput" in m for m in messages)


def test_bench_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--repeats" in capsys.readouterr().out
