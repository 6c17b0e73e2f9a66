"""`symergion sync` with checkpoints on a real llama_cpp.server, next to a local one."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symergion.app.runtime import build_reconciler
from symergion.config.load import load_config
from symergion.core.report import Event
from symergion.gitrepo import GitRepo
from tests.helpers.fleet import original_templates
from tests.helpers.git import git, repo_state, start_task_with_git
from tests.helpers.server import N_CTX, Server, free_port

TASK = "TestCase_capture_output"


def write_config(path: Path, checkpoints: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"idle_cores": 0, "ntokens": 64, "checkpoints": checkpoints,
                                "templates": original_templates()}))
    return path


def remote_checkpoint(endpoint: str, name: str = "remote") -> dict[str, Any]:
    return {"endpoint": endpoint, "name": name, "trait": "coding", "context_size": N_CTX}


def local_checkpoint(gguf: Path) -> dict[str, Any]:
    return {"name_or_path": str(gguf), "name": "local", "trait": "coding", "context_size": N_CTX}


def sync(repo: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symergion", "sync", "--json", "--repo", str(repo),
         "--config", str(config)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=1200, check=False,
    )


def by_model(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["model"]: r for r in report["results"]}


def test_sync_with_a_local_and_a_remote_checkpoint(
    repo_dir: Path, tmp_path: Path, gguf_path: Path, llama_server: Server
) -> None:
    config = write_config(tmp_path / "config.json",
                          [local_checkpoint(gguf_path), remote_checkpoint(llama_server.endpoint)])
    start_task_with_git(repo_dir)
    before = repo_state(repo_dir)
    proc = sync(repo_dir, config)
    assert proc.returncode == 0, proc.stderr
    results = by_model(json.loads(proc.stdout))
    assert results["local"]["status"] == results["remote"]["status"] == "created"
    for model in ("local", "remote"):
        text = git(repo_dir, "show", f"{model}_{TASK}:test_capture_output.py")
        ast.parse(text)
        assert text.startswith("import unittest\n")
        trailers = git(repo_dir, "log", "-1", "--format=%B", f"{model}_{TASK}")
        assert f"Symergion-Model: {model}" in trailers
    assert repo_state(repo_dir) == before

    # A second pass has nothing to do, and the server is not asked for anything.
    again = sync(repo_dir, config)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in json.loads(again.stdout)["results"]} == {"up-to-date"}


def test_a_down_endpoint_fails_its_branch_and_the_other_models_go_on(
    repo_dir: Path, tmp_path: Path, gguf_path: Path
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "config.json",
                          [remote_checkpoint(endpoint), local_checkpoint(gguf_path)])
    start_task_with_git(repo_dir)
    proc = sync(repo_dir, config)
    assert proc.returncode == 4, proc.stderr
    results = by_model(json.loads(proc.stdout))
    assert results["local"]["status"] == "created"
    assert results["remote"]["status"] == "failed"
    assert endpoint in results["remote"]["reason"]
    assert "start the server" in results["remote"]["reason"]
    assert git(repo_dir, "branch", "--list", f"remote_{TASK}") == ""


def test_a_server_dying_mid_stream_publishes_nothing(
    repo_dir: Path, tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    server = make_server()
    config = load_config(write_config(tmp_path / "config.json", [remote_checkpoint(server.endpoint)]))
    start_task_with_git(repo_dir)
    before_refs = git(repo_dir, "for-each-ref")

    def kill_on_progress(event: Event) -> None:
        if event.kind == "progress":
            server.kill()

    repo = GitRepo(repo_dir)
    reconciler, pool, store = build_reconciler(repo, config, on_event=kill_on_progress)
    try:
        report = reconciler.sync()
        assert len(store) == 0  # no response was stored for a broken stream
    finally:
        pool.close()
        store.close()
    (result,) = report.results
    assert result.status == "failed"
    assert result.reason is not None and server.endpoint in result.reason
    assert git(repo_dir, "for-each-ref") == before_refs


def test_the_served_models_identity_enters_the_cache_key(
    repo_dir: Path, tmp_path: Path, llama_server: Server, make_server: Callable[..., Server]
) -> None:
    """The same prompt and checkpoint on a server serving another model is a cache miss."""
    other = make_server("--model_alias", "gemma-other")
    start_task_with_git(repo_dir)
    repo = GitRepo(repo_dir)
    caches = []
    for endpoint in (llama_server.endpoint, llama_server.endpoint, other.endpoint):
        config = load_config(write_config(tmp_path / "config.json", [remote_checkpoint(endpoint)]))
        reconciler, pool, store = build_reconciler(repo, config)
        try:
            (tp,) = reconciler.plan().tasks
            assert tp.prompt is not None
            caches.append(reconciler.responder.respond(tp.task, config.coders[0], tp.prompt,
                                                       tp.destination).cache)
        finally:
            pool.close()
            store.close()
    assert caches == ["miss", "hit", "miss"]
