"""Fixtures for the reliability tests: a config of fake coders, a remote with two clones, and the
CLI on fake engines in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from symergion.cli.main import main
from symergion.config.schema import Checkpoint
from symergion.engine.fake import FakeEngine
from tests.helpers.fleet import default_reply
from tests.helpers.git import git
from tests.helpers.reliability import CONFIG


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config file with two fake coders, alpha and beta."""
    path = tmp_path / "symergion.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture
def team(repo_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(remote bare repo, this clone, a teammate's clone), all at main."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo_dir, "remote", "add", "origin", str(remote))
    git(repo_dir, "push", "-q", "origin", "main")
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(remote), str(mate))
    return remote, repo_dir, mate


# -- fake engines plugged into the real runtime -------------------------------------------------


class Fleet:
    """Fake engines per model; ``reply`` may run code while a model "generates"."""

    def __init__(self) -> None:
        self.reply: Callable[[str, str], str] = default_reply
        self.n_ctx: dict[str, int] = {}  # per model; 4096 when not given
        self.engines: dict[str, FakeEngine] = {}
        self.only: set[str] | None = None  # serve only these models; the rest stay real

    def engine(self, checkpoint: Checkpoint) -> FakeEngine:
        name = checkpoint.model_name
        if name not in self.engines:
            self.engines[name] = FakeEngine(name, lambda p, n=name: self.reply(n, p),
                                            n_ctx=self.n_ctx.get(name, 4096))
        return self.engines[name]

    @property
    def calls(self) -> int:
        return sum(len(e.calls) for e in self.engines.values())


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Serve models from fake engines (all, or only ``fleet.only``; the rest go to the real
    runtime, which checks the GGUF files)."""
    import symergion.app.runtime as runtime

    fleet = Fleet()
    real_load, real_fingerprint = runtime.load_engine, runtime.fingerprint

    def load(config: Any, c: Checkpoint) -> Any:
        if fleet.only is not None and c.model_name not in fleet.only:
            return real_load(config, c)
        return fleet.engine(c)

    def fingerprint(config: Any, c: Checkpoint) -> str:
        if fleet.only is not None and c.model_name not in fleet.only:
            return real_fingerprint(config, c)
        return f"fp-{c.model_name}"

    monkeypatch.setattr(runtime, "load_engine", load)
    monkeypatch.setattr(runtime, "fingerprint", fingerprint)
    return fleet


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process through ``main()`` (so errors map to exit codes)."""

    def run(*args: str | Path) -> CliResult:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
