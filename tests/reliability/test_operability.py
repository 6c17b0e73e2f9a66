"""Point 7: watch logs one line per event, `sync --json` says what was done and what failed and
why, and every exit code in the README is what the CLI really returns."""

from __future__ import annotations

import re
from pathlib import Path

from symergion.app.lock import repo_lock
from tests.helpers.git import git
from tests.helpers.reliability import ROOT, TASK, start_task

README = ROOT / "README.md"


def test_watch_logs_one_line_per_event(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    git(repo_dir, "branch", "TestCase_two", "main")
    git(repo_dir, "notes", "add", "-f", "-m",
        f"task_branch: {TASK}, source: utils/capture_output.py, destination: t.py\n"
        "task_branch: TestCase_two, source: utils/capture_output.py, destination: t2.py", "main")
    result = cli("watch", "--interval", "0.1", "--max-passes", "1", "--repo", repo_dir,
                 "--config", cfg)
    assert result.code == 0, result.err
    done = [line for line in result.err.splitlines() if "cache=" in line]
    pattern = re.compile(r"^\d\d:\d\d:\d\d (\S+) (alpha|beta): .* \[decoded=(\d+) kept=\d+ "
                         r"seconds=(\d+\.\d)( decoding=[\d.]+s tok/s=[\d.]+)? cache=(hit|miss)\]$")
    events = [pattern.match(line) for line in done]
    assert all(events), done
    assert sorted((m[1], m[2]) for m in events if m) == sorted(
        (t, m) for t in ("TestCase_two", TASK) for m in ("alpha", "beta"))
    assert all(int(m[3]) > 0 for m in events if m)


def test_sync_json_reports_done_failed_and_why(repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    start_task(repo_dir, "TestCase_broken", source="missing.py")
    result = cli("sync", "--repo", repo_dir, "--config", cfg, "--json")
    assert result.code == 4, result.err
    data = result.json()
    assert data["ok"] is False
    done = {r["branch"]: r for r in data["results"]}
    assert set(done) == {f"alpha_{TASK}", f"beta_{TASK}"}
    for r in done.values():
        assert r["status"] == "created" and r["commit"] and r["cache"] == "miss"
        assert r["tokens"] > 0 and r["seconds"] >= 0 and r["message"].startswith("Create")
    [problem] = data["problems"]
    assert problem["where"] == "task TestCase_broken"
    assert "'missing.py' does not exist on the task branch" in problem["message"]
    assert "hint:" in problem["message"]
    # Data on stdout only: the JSON document is the whole of stdout.
    assert result.out.lstrip().startswith("{") and result.out.rstrip().endswith("}")


def test_exit_codes_match_the_readme(repo_dir, cfg, cli, fake_runtime, tmp_path: Path):
    text = README.read_text()
    paragraph = text[text.index("Exit codes:"):].split("\n\n")[0]
    documented = {int(c) for c in re.findall(r"`(\d+)`", paragraph)}
    assert documented == {0, 1, 2, 3, 4, 130}
    common = ("--repo", repo_dir, "--config", cfg)

    observed: dict[int, str] = {}
    start_task(repo_dir)
    observed[cli("sync", *common).code] = "done"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    observed[cli("sync", "--repo", repo_dir, "--config", bad).code] = "bad config"
    observed[cli("sync", "--no-such-option", *common).code] = "usage"
    with repo_lock(repo_dir / ".git"):
        result = cli("sync", *common)
        observed[result.code] = "locked"
    start_task(repo_dir, "TestCase_broken", source="missing.py")
    observed[cli("sync", *common).code] = "some task failed"
    assert observed == {0: "done", 1: "bad config", 2: "usage", 3: "locked", 4: "some task failed"}
    # 130 is observed with real signals in test_crash.py.


def test_sync_verbose_shows_where_the_time_went_and_json_carries_it(
        repo_dir, cfg, cli, fake_runtime):
    start_task(repo_dir)
    result = cli("sync", "-v", "--repo", repo_dir, "--config", cfg)
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    split = lines[next(i for i, line in enumerate(lines) if line.startswith("pass: ")):]
    assert [line.split(":")[0].strip() for line in split] == [
        "pass", "prompts", "decoding", "verification", "git", "model load", "other"]
    assert "tokens evaluated" in split[1] and " kept" in split[2]
    git(repo_dir, "branch", "-D", f"alpha_{TASK}")  # nothing to generate: a second, quiet pass
    data = cli("sync", "--repo", repo_dir, "--config", cfg, "--json").json()
    spend = data["spend"]
    assert spend["decoded_tokens"] == 0 and spend["wall_seconds"] > 0 and spend["git_calls"] > 0


def test_sync_takes_a_time_budget(repo_dir, cfg, cli, fake_runtime, monkeypatch):
    import symergion.app.runtime as runtime

    passes = []
    real = runtime.build_reconciler

    def build(repo, config, **kwargs):
        passes.append(config.max_seconds)
        return real(repo, config, **kwargs)

    monkeypatch.setattr(runtime, "build_reconciler", build)
    start_task(repo_dir)
    assert cli("sync", "--max-seconds", "0", "--repo", repo_dir, "--config", cfg).code == 2
    result = cli("sync", "--max-seconds", "90", "--repo", repo_dir, "--config", cfg)
    assert result.code == 0, result.err
    assert cli("sync", "--repo", repo_dir, "--config", cfg).code == 0
    # The option replaces the config's budget for its pass only.
    assert passes == [90.0, None]
