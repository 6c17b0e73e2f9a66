"""Shared fixtures: an isolated environment, real git repositories, a fake-engine reconciler."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from symergion.cache import ResponseStore
from symergion.config import DEFAULT_CONFIG, Checkpoint, Config, parse_config
from symergion.core.execute import Event, Reconciler
from symergion.demo import SOURCE
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own HOME, cache and git config; forbid the real ones."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SYMERGION_CACHE_DIR", str(home / ".cache" / "symergion"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("NO_COLOR", "1")
    for var in ("SYMERGION_CONFIG", "SYMERGION_MODELS", "SYMERGION_DEBUG", "GIT_DIR",
                "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_NOTES_REF"):
        monkeypatch.delenv(var, raising=False)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    return home


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    """Run git in ``cwd`` and return its stdout (raising on failure)."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A repository with one commit on main holding utils/capture_output.py."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "utils").mkdir()
    (path / "utils" / "capture_output.py").write_text(SOURCE)
    (path / "README.md").write_text("demo\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path


def start_task_with_git(path: Path, branch: str = "TestCase_capture_output",
                        destination: str = "test_capture_output.py") -> None:
    """Start a task exactly as the original README does, with plain git."""
    git(path, "branch", branch)
    git(path, "notes", "add", "-m",
        f"task_branch: {branch}, source: utils/capture_output.py, destination: {destination}",
        branch)


def repo_state(path: Path) -> dict[str, Any]:
    """Capture what must never change: work tree files, index bytes, HEAD, user refs."""
    files = {}
    for file in sorted(path.rglob("*")):
        if ".git" in file.relative_to(path).parts or not file.is_file():
            continue
        files[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    git_dir = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
    index = git_dir / "index"
    return {
        "files": files,
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "HEAD": (git_dir / "HEAD").read_text(),
        "status": git(path, "status", "--porcelain=v1", "--untracked-files=all"),
    }


def original_templates() -> dict[str, Any]:
    """The built-in templates in the original format: ``import unittest`` as the code starter
    (no placeholders), no ``verify`` section and no guided generation."""
    templates: dict[str, Any] = json.loads(json.dumps(DEFAULT_CONFIG["templates"]))
    for template in templates.values():
        template.pop("verify", None)
        template.pop("guided", None)
    templates["TestCase"]["code_starter"] = "import unittest\n"
    return templates


def make_config(coders: tuple[str, ...] = ("alpha", "beta"), **overrides: Any) -> Config:
    """A config with fake coder checkpoints and the original TestCase template (no verify)."""
    raw: dict[str, Any] = {
        "checkpoints": [{"name_or_path": f"/models/{c}.gguf", "trait": "coding"} for c in coders],
        "templates": original_templates(),
    }
    raw.update(overrides)
    return parse_config(raw, base_dir=Path("/models"))


class FakeFleet:
    """Fake engines per model, counting loads and calls."""

    def __init__(self, reply: Callable[[str, str], str] | None = None, *, n_ctx: int = 4096) -> None:
        self.reply = reply or default_reply
        self.n_ctx = n_ctx
        self.engines: dict[str, FakeEngine] = {}
        self.loads = 0

    def __call__(self, checkpoint: Checkpoint) -> FakeEngine:
        name = checkpoint.model_name
        if name not in self.engines:
            self.loads += 1
            self.engines[name] = FakeEngine(name, lambda p, n=name: self.reply(n, p), n_ctx=self.n_ctx)
        return self.engines[name]

    @property
    def calls(self) -> int:
        return sum(len(e.calls) for e in self.engines.values())


def default_reply(model: str, prompt: str) -> str:
    """A deterministic test file whose content depends on the model and the feedback."""
    lines = prompt.splitlines()
    while lines and not lines[-1].startswith("#"):  # the code starter, one line or several
        lines.pop()
    feedback = [line[2:] for line in lines[-5:] if line.startswith("# ")]
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    body = "".join(f"    # {line}\n" for line in feedback)
    method = f"    def test_{digest}(self):\n{body}        self.assertTrue(True)\n"
    if prompt.endswith("(unittest.TestCase):\n"):  # the built-in starter opened the class
        return method
    return f"\n\nclass Test{model.capitalize()}(unittest.TestCase):\n" + method


@pytest.fixture
def fleet() -> FakeFleet:
    """Fake engines for every model."""
    return FakeFleet()


@pytest.fixture
def make_reconciler(tmp_path: Path, fleet: FakeFleet) -> Iterator[Callable[..., Reconciler]]:
    """Build reconcilers on fake engines, sharing one response store per test (unless given one)."""
    stores: list[ResponseStore] = []

    def build(path: Path, config: Config | None = None,
              events: list[Event] | None = None, store_dir: Path | None = None) -> Reconciler:
        store = ResponseStore(store_dir or tmp_path / "responses", 100)
        stores.append(store)
        return Reconciler(
            GitRepo(path),
            config or make_config(),
            engines=fleet,
            fingerprint=lambda c: f"fp-{c.model_name}",
            store=store,
            on_event=(events.append if events is not None else None),
        )

    yield build
    for store in stores:
        store.close()


REAL_HOME = Path(os.path.expanduser("~"))
_WATCHED = [REAL_HOME / ".cache" / "symergion", REAL_HOME / ".config" / "symergion"]


def _stamp(paths: list[Path]) -> list[tuple[str, float | None]]:
    return [(str(p), p.stat().st_mtime if p.exists() else None) for p in paths]


@pytest.fixture(autouse=True, scope="session")
def _real_home_untouched() -> Iterator[None]:
    """Fail the session if anything wrote into the developer's real symergion dirs."""
    before = _stamp(_WATCHED)
    yield
    assert _stamp(_WATCHED) == before, "a test wrote into the real HOME"
