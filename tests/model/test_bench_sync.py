"""Smoke test of the end-to-end benchmark (figures are not asserted: benchmarks measure)."""

from __future__ import annotations

import json
import subprocess

from symergion.bench.sync import main


def test_bench_sync_runs_every_round(tmp_path, gguf_path, capsys):
    out = tmp_path / "sync.json"
    assert main(["--model", str(gguf_path), "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rounds = {r["round"]: r for r in data["rounds"]}
    assert rounds["initial (cold)"]["cache"] == "miss"
    assert rounds["revoke (cached)"]["cache"] == "hit"
    assert rounds["revoke (cached)"]["llama_cpp_imported"] is False
    assert rounds["no-op sync"]["llama_cpp_imported"] is False
    assert "symergion --help" in capsys.readouterr().out


def test_the_multi_task_sync_generates_without_verifying(tmp_path, gguf_path):
    from symergion.bench.sync import cold_tasks

    found = cold_tasks(gguf_path, 2, tmp_path, 2)

    assert found["tasks"] == 2 and found["tokens"] > 0
    log = subprocess.run(["git", "log", "--all", "--format=%B"], cwd=tmp_path / "repo",
                         check=True, capture_output=True, text=True).stdout
    # Generation only: the built-in template's verify section was left out of the config.
    assert "Symergion-Tokens:" in log
    assert "Symergion-Verify:" not in log
