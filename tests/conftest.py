"""Shared fixtures: an isolated environment, real git repositories, a fake-engine reconciler."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import pytest

from symergion.app.demo import SOURCE
from symergion.cache import ResponseStore
from symergion.config.schema import Config
from symergion.core.execute import Event, Reconciler
from symergion.gitrepo import GitRepo
from tests.helpers.fleet import FakeFleet, make_config
from tests.helpers.git import git
from tests.helpers.load_guard import (
    ENV_SIMULATE,
    LOAD_GUARD,
    SIMULATE_CRASH,
    check_loads,
    load_guard,
    session_verdicts,
)
from tests.needs import bwrap_problem, missing

# Fixtures that fast tests and real-model tests of one part share (their tiers are separate trees).
pytest_plugins = ["tests.fixtures.finetune", "tests.fixtures.lora", "tests.fixtures.models"]


TESTS = Path(__file__).parent
# A test's tier is the directory it lives in: the real GGUF model under tests/model, the
# fine-tune recipe (torch, a llama.cpp checkout) under tests/finetune. No test marks itself.
TIERS = {"model": TESTS / "model", "finetune": TESTS / "finetune"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with the tier of its directory, before ``-m`` selects on the marks.

    The slow recipe tests are left out unless ``-m`` names ``finetune`` (as `nox -s finetune`
    does): a plain run, or ``-m "not model"``, must not start training.
    """
    for item in items:
        for marker, directory in TIERS.items():
            if item.path.is_relative_to(directory):
                item.add_marker(marker)
    if "finetune" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("finetune") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


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
