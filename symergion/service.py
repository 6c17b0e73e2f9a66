"""Core entry points the CLI calls: a locked sync pass (optionally with a remote), views."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from symergion.config import load_config
from symergion.core.execute import Event, Problem, Reconciler, Report, shadow_ref
from symergion.errors import Cancelled
from symergion.gitrepo import GitRepo, git_running
from symergion.lock import repo_lock


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


@dataclass
class RemoteReport:
    """What a team/CI pass exchanged with a remote."""

    fetched: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def run_pass(
    repo: GitRepo,
    reconciler: Reconciler,
    *,
    remote: str | None = None,
) -> Report:
    """Run one pass; with ``remote``, fetch first and push the results after (never forced)."""
    remote_report = None
    if remote is not None:
        remote_report = _pull(repo, remote)
    report = reconciler.sync()
    if remote is not None and remote_report is not None:
        _push(repo, reconciler, remote, report, remote_report)
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


def _pull(repo: GitRepo, remote: str) -> RemoteReport:
    from symergion.errors import GitError

    if remote not in repo.remotes():
        raise GitError(f"there is no remote named {remote!r}",
                       hint="see `git remote -v` for the configured remotes")
    notes_ref = repo.notes_ref()
    fetched_notes = repo.fetch(remote, notes_ref)
    result = RemoteReport()
    if fetched_notes:
        repo.merge_notes(fetched_notes)
        result.fetched.append(notes_ref)
    # Bring local branches up to the remote's where that is a fast-forward (or they are new);
    # never move a branch that is checked out or that has local commits the remote lacks.
    snap = repo.snapshot()
    checked_out = repo.checked_out_branches()
    tracking = repo.remote_branches(remote)
    for name, oid in tracking.items():
        local = snap.branch(name)
        if name in checked_out or local == oid:
            continue
        if local is None or repo.is_ancestor(local, oid):
            from symergion.gitrepo import ZERO_OID

            if repo.update_refs([(f"refs/heads/{name}", oid, local or ZERO_OID)],
                                f"symergion: fast-forward from {remote}"):
                result.fetched.append(name)
    return result


def _push(
    repo: GitRepo, reconciler: Reconciler, remote: str, report: Report, result: RemoteReport
) -> None:
    refspecs = []
    for r in report.results:
        if r.status in ("created", "updated", "up-to-date"):
            refspecs.append(f"refs/heads/{r.branch}:refs/heads/{r.branch}")
            refspecs.append(f"{shadow_ref(r.task, r.model)}:{shadow_ref(r.task, r.model)}")
    notes_ref = repo.notes_ref()
    if repo.snapshot().refs.get(notes_ref):
        refspecs.append(f"{notes_ref}:{notes_ref}")
    result.rejected.update(repo.push(remote, refspecs))
    result.pushed.extend(s.split(":")[0] for s in refspecs if s.split(":")[0] not in result.rejected)


def sync_once(
    repo_path: Path,
    config_path: Path | None,
    models: Path | None,
    *,
    printer: Printer,
    remote: str | None = None,
) -> Report:
    """Load config, take the repository lock and run one pass on real models."""
    from symergion.runtime import build_reconciler

    config = load_config(config_path, models)
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


def _offline_reconciler(repo: GitRepo, config_path: Path | None, models: Path | None) -> Any:
    from symergion.runtime import build_reconciler

    config = load_config(config_path, models)
    reconciler, _pool, store = build_reconciler(repo, config)
    return config, reconciler, store


def task_views(repo_path: Path, config_path: Path | None, models: Path | None) -> Any:
    """Return the active tasks for ``ergon list``."""
    from symergion.core.ops import list_tasks

    repo = GitRepo(repo_path)
    config, reconciler, store = _offline_reconciler(repo, config_path, models)
    try:
        return list_tasks(repo, reconciler, config)
    finally:
        store.close()


def revoke_latest(
    repo_path: Path, config_path: Path | None, models: Path | None, branch: str | None
) -> tuple[str, str]:
    """Remove the latest feedback note of a model branch's task."""
    from symergion.core.ops import revoke_feedback

    repo = GitRepo(repo_path)
    config, reconciler, store = _offline_reconciler(repo, config_path, models)
    try:
        return revoke_feedback(repo, reconciler, config, branch)
    finally:
        store.close()


def status_rows(
    repo_path: Path, config_path: Path | None, models: Path | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return one row per model branch: up-to-date, pending, deleted or blocked."""
    from symergion.core.execute import TRAILER_PROMPT, model_branch

    repo = GitRepo(repo_path)
    config, reconciler, store = _offline_reconciler(repo, config_path, models)
    rows: list[dict[str, Any]] = []
    try:
        snap = repo.snapshot()
        tasks, problems = reconciler.discover(snap)
        messages = [f"{p.where}: {p.message}" for p in problems]
        for task in tasks:
            try:
                digest = reconciler.planned_digest(task)
            except Exception as exc:
                digest, blocked = None, str(exc)
            else:
                blocked = ""
            for coder in config.coders:
                branch = model_branch(coder.model_name, task.name)
                head = snap.branch(branch)
                if head is None:
                    state = "deleted" if shadow_ref(task.name, coder.model_name) in snap.refs \
                        else "pending"
                elif blocked:
                    state = "blocked"
                else:
                    own = reconciler.last_own_commit(head, coder.model_name, task.name)
                    if digest is None:
                        state = "unknown"
                    elif own is not None and own[1].get(TRAILER_PROMPT) == digest:
                        state = "up-to-date"
                    else:
                        state = "pending"
                rows.append({"task": task.name, "model": coder.model_name, "branch": branch,
                             "state": state, "commit": head, "feedback": len(task.feedback),
                             "reason": blocked or None})
        return rows, messages
    finally:
        store.close()
