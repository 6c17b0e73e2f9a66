"""Developer sessions: tests, lint, typecheck, bench. Extra arguments pass through."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV = nox.project.dependency_groups(PYPROJECT, "dev")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (unit, git and real-model tests); e.g. `nox -s tests -- -m "not model"`."""
    session.install("-e", ".[demo]", *DEV)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "symergion", "tests", "scripts", "noxfile.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy (strict)."""
    session.install("-e", ".[demo]", *DEV)
    session.run("mypy", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run both benchmarks on the embedded model: the engine, then the end-to-end sync rounds.

    Results go to bench-results/bench.json and bench-results/sync.json; arguments after `--`
    go to the engine benchmark (e.g. `nox -s bench -- --repeats 3`).
    """
    session.install("-e", ".[demo]", *DEV)
    session.run("python", "-m", "symergion.bench", *session.posargs)
    session.run("python", "-m", "symergion.bench_sync")


@nox.session
def quality(session: nox.Session) -> None:
    """Measure the generated TestCase files on small stdlib modules (docs/quality.md).

    Results go to bench-results/quality.json; arguments after `--` go to the benchmark
    (e.g. `nox -s quality -- --set unseen`, `--modes plain,fewshot`, `--samples 4`).
    """
    session.install("-e", ".[demo]", *DEV)
    session.env["PYTHONPATH"] = str(session.invoked_from)
    session.run("python", "benchmarks/quality.py", *session.posargs)
