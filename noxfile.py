"""Developer sessions: tests, lint, typecheck, bench. Extra arguments pass through."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV = nox.project.dependency_groups(PYPROJECT, "dev")
FINETUNE = nox.project.dependency_groups(PYPROJECT, "finetune")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (fast tests, real model, real server); e.g. `nox -s tests -- -m "not model"`.

    Without arguments, the model tiers run a second time as on an Intel AMX machine.
    """
    session.install("-e", ".[demo,server]", *DEV)
    session.run("pytest", *session.posargs)
    if not session.posargs:
        # The crash of llama.cpp's AMX kernel happens only on some Intel machines. Run the model
        # tiers again as on one whose probe crashed: tests/conftest.py fails every test that
        # loaded a model with extra buffer types (in the test process or any child).
        session.log("model tiers again, as on an Intel AMX machine (extra buffer types off)")
        session.run("pytest", "-m", "model", "-q", env={"SYMERGION_TEST_EXTRA_BUFFERS": "off"})


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff, and the layers and import cycles with lint-imports (pyproject.toml)."""
    session.install("ruff", "import-linter")
    session.run("ruff", "check", "symergion", "tests", "scripts", "noxfile.py", *session.posargs)
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy (strict), and the quality harness, which drives the
    package's verification API directly (a changed signature breaks it, and no test runs it)."""
    session.install("-e", ".[demo]", *DEV)
    session.run("mypy", *session.posargs)
    if not session.posargs:
        session.run("mypy", "benchmarks/quality.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Run both benchmarks on the embedded model: the engine, then the end-to-end sync rounds.

    Results go to bench-results/bench.json and bench-results/sync.json; arguments after `--`
    go to the engine benchmark (e.g. `nox -s bench -- --repeats 3`).
    """
    session.install("-e", ".[demo]", *DEV)
    session.run("python", "-m", "symergion.bench.engine", *session.posargs)
    session.run("python", "-m", "symergion.bench.sync")


@nox.session
def finetune(session: nox.Session) -> None:
    """Run the fine-tune recipe end to end on a tiny Llama, on the CPU (a few minutes).

    llama.cpp's converters come from the llama-cpp-python sdist of the installed version (its
    vendor/llama.cpp); set SYMERGION_LLAMA_CPP to use another checkout.
    """
    session.install("-e", ".[demo]", *DEV, *FINETUNE)
    env = {"HF_HUB_OFFLINE": "1"}
    checkout = session.env.get("SYMERGION_LLAMA_CPP") or _llama_cpp_from_sdist(session)
    env["SYMERGION_LLAMA_CPP"] = checkout
    session.run("pytest", "-m", "finetune", "tests/finetune", *session.posargs, env=env)


def _llama_cpp_from_sdist(session: nox.Session) -> str:
    """Download and unpack the installed llama-cpp-python's sdist; return its vendor/llama.cpp."""
    import pathlib
    import tarfile

    version = session.run("python", "-c", "import llama_cpp; print(llama_cpp.__version__)",
                          silent=True)
    version = str(version).strip()
    cache = pathlib.Path(session.cache_dir) / f"llama-cpp-python-{version}"
    checkout = cache / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if not (checkout / "convert_lora_to_gguf.py").is_file():
        session.run("python", "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                    "--no-binary", ":all:", "-d", str(cache), silent=True)
        (archive,) = cache.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    return str(checkout)


@nox.session
def quality(session: nox.Session) -> None:
    """Measure the generated TestCase files on small stdlib modules (docs/quality.md).

    Results go to bench-results/quality.json; arguments after `--` go to the benchmark
    (e.g. `nox -s quality -- --set unseen`, `--modes plain,fewshot`, `--samples 4`).
    """
    session.install("-e", ".[demo]", *DEV)
    session.env["PYTHONPATH"] = str(session.invoked_from)
    session.run("python", "benchmarks/quality.py", *session.posargs)
