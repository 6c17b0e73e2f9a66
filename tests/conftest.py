"""Shared fixtures: an isolated environment, real git repositories, a fake-engine reconciler."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from symergion.app.demo import SOURCE
from symergion.cache import ResponseStore
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, Checkpoint, Config
from symergion.core.execute import Event, Reconciler
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from tests.needs import bwrap_problem, missing

# Extra buffer types: what the machine decides, and the rule every model load must keep.
LOAD_GUARD = Path(__file__).parent / "load_guard"
# "off" makes this machine act as an Intel AMX machine whose probe crashed (the verdict is
# seeded as a crash), so that the guard below shows, on any CPU, every load that would crash there.
ENV_SIMULATE = "SYMERGION_TEST_EXTRA_BUFFERS"
SIMULATE_CRASH = os.environ.get(ENV_SIMULATE, "").strip().lower() == "off"
_spec = importlib.util.spec_from_file_location("symergion_test_load_guard", LOAD_GUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
load_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load_guard)


def _isolate(env: dict[str, str] | os._Environ[str], home: Path, log: Path) -> None:
    """Point HOME, caches and git config into ``home``; record model loads into ``log``."""
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["SYMERGION_CACHE_DIR"] = str(home / ".cache" / "symergion")
    env["GIT_CONFIG_GLOBAL"] = str(home / ".gitconfig")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HOME"] = str(home / ".cache" / "huggingface")
    env["NO_COLOR"] = "1"
    for var in ("SYMERGION_CONFIG", "SYMERGION_MODELS", "SYMERGION_DEBUG", "SYMERGION_EXTRA_BUFFERS",
                "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_NOTES_REF"):
        env.pop(var, None)
    # Children (model workers, servers, the probe) record their loads too.
    env[load_guard.ENV_LOG] = str(log)
    paths = [str(LOAD_GUARD), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
    )


@pytest.fixture(autouse=True, scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Isolate the whole session before any fixture runs; return the file model loads go to.

    Session and module fixtures (a shared server, a base engine) start before any test's own
    environment: they get this one, never the real HOME. Its cache holds the session's
    extra-buffer verdict, seeded into every test's cache: the first test that needs a probe runs
    it, the others reuse its verdict. Under ``SYMERGION_TEST_EXTRA_BUFFERS=off`` the verdict is a
    crash from the start, as on an Intel AMX machine. The whole log of loads is checked at the
    end, for the loads made outside every test.
    """
    saved = dict(os.environ)
    home = tmp_path_factory.mktemp("session-home")
    log = home / "loads.jsonl"
    log.touch()
    _isolate(os.environ, home, log)
    os.environ["SYMERGION_SESSION_CACHE"] = os.environ["SYMERGION_CACHE_DIR"]
    load_guard.install()
    if SIMULATE_CRASH:
        from symergion.engine.extra_buffers import (
            CACHE_FILE,
            Verdict,
            VerdictCache,
            build_identity,
            cpu_identity,
            identity_key,
        )
        from symergion.engine.native import load_llama_cpp

        cpu, build = cpu_identity(), build_identity(load_llama_cpp())
        verdict = Verdict(False, f"a probe with extra buffer types died by SIGSEGV ({ENV_SIMULATE}=off)",
                          "simulated")
        cache = VerdictCache(home / ".cache" / "symergion" / CACHE_FILE)
        cache.put(identity_key(cpu, build), verdict, {"cpu": cpu, "build": build})
    try:
        yield log
        check_loads(log.read_text(encoding="utf-8").splitlines())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def session_verdicts() -> Path:
    """The session cache's extra-buffer verdicts (``session_env``)."""
    from symergion.engine.extra_buffers import CACHE_FILE

    return Path(os.environ["SYMERGION_SESSION_CACHE"]) / CACHE_FILE


def extra_buffers_forbidden() -> bool:
    """Return whether the session's verdict keeps models out of extra buffer types."""
    from symergion.engine.extra_buffers import VerdictCache

    entries = VerdictCache(session_verdicts())._read().values()
    return any(isinstance(e, dict) and e.get("use_extra_buffers") is False for e in entries)


def forbidden_loads(lines: list[str]) -> list[dict[str, Any]]:
    """Return the loads with extra buffer types, except the probe's own (it exists to try them)."""
    loads = [json.loads(line) for line in lines if line.strip()]
    return [load for load in loads if load["use_extra_bufts"]
            and not str(load["argv"][0]).endswith(os.path.join("engine", "probe.py"))]


def check_loads(lines: list[str], forbidden: bool | None = None) -> None:
    """Fail when a model was loaded with extra buffer types where the machine's decision is off.

    ``forbidden`` says whether the decision is off; by default the session's verdict says it.
    """
    if forbidden is None:
        forbidden = extra_buffers_forbidden()
    if forbidden and (loads := forbidden_loads(lines)):
        pytest.fail("loaded a model with extra buffer types where this machine's decision is off "
                    f"(it would crash on an Intel AMX machine): {loads}", pytrace=False)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                 session_env: Path) -> Iterator[Path]:
    """Give every test its own HOME, cache and git config; forbid the real ones.

    Also fails a test that loaded a model with extra buffer types where the machine's decision
    is off: on the Intel machines where llama.cpp's AMX kernel faults, that load kills the run.
    """
    home = tmp_path_factory.mktemp("home")
    env = dict(os.environ)
    _isolate(env, home, session_env)
    for var in set(os.environ) - set(env):
        monkeypatch.delenv(var)
    for var, value in env.items():
        if os.environ.get(var) != value:
            monkeypatch.setenv(var, value)
    shared, own = session_verdicts(), Path(env["SYMERGION_CACHE_DIR"]) / session_verdicts().name
    if shared.exists():
        own.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared, own)
    start = session_env.stat().st_size
    yield home
    if not shared.exists() and own.exists():
        shared.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(own, shared)  # the first probe's verdict, for the rest of the session
    with session_env.open(encoding="utf-8") as log:
        log.seek(start)
        check_loads(log.read().splitlines())


@pytest.fixture
def bwrap_available() -> None:
    """Skip (fail under CI) a test that needs the real bubblewrap sandbox where it cannot run."""
    if (problem := bwrap_problem()) is not None:
        missing(f"bubblewrap unavailable: {problem}")


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


# The properties are about values, not speed: on a shared 2-core machine under load, generating
# inputs can take over a second, which is no defect of the code under test.
hypothesis.settings.register_profile(
    "symergion", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("symergion")
