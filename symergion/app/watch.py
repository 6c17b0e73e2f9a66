"""`watch`: sync in a loop, under one lock, polling refs (file events alone miss packed refs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from symergion.app.lock import repo_lock
from symergion.app.service import Printer, run_pass, stop_on_signals
from symergion.config.load import load_config
from symergion.core.execute import Event
from symergion.core.state import poll_digest
from symergion.errors import Cancelled, SymergionError
from symergion.gitrepo import GitRepo


def refs_state(repo: GitRepo) -> str:
    """Return a cheap digest of every ref and note ref: equal digests mean nothing changed.

    Only ``for-each-ref`` and the worktree list run; the full state is read by the pass itself,
    and only when this changed. The checked-out branches count too: switching away from a
    model branch lets its new attempt be published.
    """
    return poll_digest(repo)


def watch_loop(
    repo_path: Path,
    config_path: Path | None,
    models: Path | None,
    *,
    interval: float,
    printer: Printer,
    remote: str | None = None,
    max_passes: int = 0,
    max_polls: int = 0,
    on_poll: Callable[[int], None] | None = None,
) -> int:
    """Poll and reconcile until interrupted; return the exit code (130 on Ctrl-C/SIGTERM).

    A pass runs when refs or notes changed since the last clean pass (or with a remote, on every
    poll). Models stay loaded between passes, so a feedback round reuses the KV prefix.
    ``max_passes``/``max_polls`` stop the loop after that many (0: never); ``on_poll`` is
    called with the poll count after each poll.
    """
    from symergion.app.runtime import build_reconciler

    config = load_config(config_path, models)
    repo = GitRepo(repo_path)
    cancel = threading.Event()
    passes = polls = 0
    with repo_lock(repo.common_dir), stop_on_signals(cancel):
        reconciler, pool, store = build_reconciler(
            repo, config, on_event=printer, on_load=printer.loading, cancel=cancel
        )
        last = ""
        try:
            store.open()
            printer(Event("done", "watch", "", detail=f"watching {repo_path} every {interval}s "
                                                      "(Ctrl-C stops)"))
            while True:
                state = refs_state(repo)
                if state != last or remote is not None:
                    try:
                        report = run_pass(repo, reconciler, remote=remote)
                    except Cancelled:
                        raise
                    except SymergionError as exc:
                        printer(Event("problem", "watch", "", detail=str(exc)))
                        report = None
                    # Re-read: our own commits changed the refs; a clean pass means "seen".
                    last = refs_state(repo) if report is not None and not report.failed else state
                    passes += 1
                polls += 1
                if on_poll is not None:
                    on_poll(polls)
                if (max_passes and passes >= max_passes) or (max_polls and polls >= max_polls):
                    return 0
                if cancel.wait(interval):
                    # A signal that arrived while git ran only set ``cancel``: stop here.
                    raise Cancelled("stopped")
        except (KeyboardInterrupt, Cancelled):
            printer(Event("done", "watch", "", detail="stopped"))
            return 130
        finally:
            pool.close()
            store.close()
            repo.close()
