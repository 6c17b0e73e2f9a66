"""Core entry points the CLI calls: a locked sync pass (optionally with a remote), views."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from symergion.app.lock import repo_lock
from symergion.config.load import load_config
from symergion.core.execute import Event, Problem, Reconciler, Report
from symergion.core.ops import Views
from symergion.core.remote import pull, push
from symergion.errors import Cancelled
from symergion.gitrepo import GitRepo, git_running


class Printer(Protocol):
    """Receives progress: model loads and reconcile events."""

    def loading(self, model: str) -> None:
        """Announce a model load."""

    def __call__(self, event: Event) -> None:
        """Render one event."""


@contextlib.contextmanager
def stop_on_signals(cancel: threading.Event) -> Iterator[None]:
    """Turn SIGTERM and Ctrl-C (SIGINT) into a clean stop: set ``cancel``, unwind with Cancelled.

    A llama.cpp call cannot be interrupted from Python, but the engine returns to Python after
    every token and every prompt batch, so the handler runs within a fraction of a second.
    While a git command runs, the handler only sets ``cancel`` and the pass stops at its next
    check: unwinding there would kill git inside a ref transaction and leave ``.lock`` files
    behind that block those refs until someone deletes them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        cancel.set()
        if not git_running():
            raise Cancelled(f"stopped by signal {signum}; nothing half-made was published",
                            hint="run sync again to finish the work")

    previous = {signum: signal.signal(signum, handler)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_pass(
    repo: GitRepo,
    reconciler: Reconciler,
    *,
    remote: str | None = None,
) -> Report:
    """Run one pass; with ``remote``, fetch first and push the results after (never forced)."""
    remote_report = None
    if remote is not None:
        remote_report = pull(repo, reconciler.config, remote)
    report = reconciler.sync()
    if remote is not None and remote_report is not None:
        held = [(r.branch, r.task, r.model) for r in report.results
                if r.status in ("created", "updated", "up-to-date")]
        push(repo, remote, held, remote_report)
        for ref, why in remote_report.rejected.items():
            if ref.startswith("refs/heads/"):
                # A later pass cannot fix this on its own: the next attempt builds on the local
                # branch, which still lacks the remote's commits.
                name = ref[len("refs/heads/"):]
                todo = (f"someone else pushed to it: merge {remote}/{name} into {name} (or "
                        f"reset {name} to it), then sync again")
            else:
                todo = "sync again (it fetches and merges first)"
            report.problems.append(Problem(
                f"push to {remote}", f"{ref} was rejected ({why}); the local result is kept\n"
                f"  hint: {todo}"))
    return report


def sync_once(
    repo_path: Path,
    config_path: Path | None,
    models: Path | None,
    *,
    printer: Printer,
    remote: str | None = None,
    max_seconds: float | None = None,
) -> Report:
    """Load config, take the repository lock and run one pass on real models.

    ``max_seconds`` replaces the config's time budget of each branch.
    """
    from symergion.app.runtime import build_reconciler

    config = load_config(config_path, models)
    if max_seconds is not None:
        config = dataclasses.replace(config, max_seconds=max_seconds)
    repo = GitRepo(repo_path)
    cancel = threading.Event()
    with repo_lock(repo.common_dir), stop_on_signals(cancel):
        reconciler, pool, store = build_reconciler(
            repo, config, on_event=printer, on_load=printer.loading, cancel=cancel
        )
        try:
            store.open()
            return run_pass(repo, reconciler, remote=remote)
        finally:
            pool.close()
            store.close()


def task_views(repo_path: Path, config_path: Path | None, models: Path | None) -> Views:
    """Return the plan's views for ``ergon list`` and ``status`` (loads no model)."""
    from symergion.core.ops import current_views

    return current_views(GitRepo(repo_path), load_config(config_path, models))


def revoke_latest(
    repo_path: Path, config_path: Path | None, models: Path | None, branch: str | None
) -> tuple[str, str]:
    """Remove the latest feedback note of a model branch's task."""
    from symergion.core.ops import revoke_feedback

    return revoke_feedback(GitRepo(repo_path), load_config(config_path, models), branch)
