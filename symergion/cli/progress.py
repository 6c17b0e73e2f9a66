"""Progress on stderr: a rich progress bar on a terminal, one plain line per event in logs.

On a terminal a generation shows a live bar: tokens against the token budget, tokens per second
and an estimate of the time left (the budget is an upper bound: a file usually finishes before
it). When stderr is not a terminal (cron, CI, a pipe) only the event lines are written, without
escape codes. rich honours ``NO_COLOR``.
"""

from __future__ import annotations

import atexit
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from symergion.config.environment import color_enabled
from symergion.core.execute import Event

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class ProgressPrinter:
    """Render reconcile events on stderr.

    Args:
        quiet: print nothing.
        stream: where to print (stderr by default).
    """

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self._console: Any = None
        self._bar: Progress | None = None
        # One row per generation in flight: a batch decodes several at once.
        self._rows: dict[tuple[str, str], TaskID] = {}
        if self.live:
            # rich is imported only for a terminal: logs and --json never pay for it.
            from rich.console import Console

            self._console = Console(file=self.stream, no_color=not color_enabled(),
                                    highlight=False, soft_wrap=True)
            # A bar left running would leave the terminal's cursor hidden.
            atexit.register(self.close)

    def _write(self, text: str, *, style: str | None = None) -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(text, markup=False, style=style)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def loading(self, model: str) -> None:
        """Announce a model load."""
        self._write(f"loading {model} ...")

    def close(self) -> None:
        """Stop the live bar, if one is shown."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._rows.clear()

    def _end_row(self, event: Event) -> None:
        """Remove the row of a generation that ended; stop the bar when none is left."""
        row = self._rows.pop((event.task, event.model), None)
        if row is not None and self._bar is not None:
            self._bar.remove_task(row)
        if not self._rows:
            self.close()

    def _show_bar(self, event: Event) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        key = (event.task, event.model)
        if self._bar is None:
            self._bar = Progress(
                TextColumn("  {task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("tokens  {task.fields[rate]:.1f} tok/s  ETA {task.fields[eta]}"),
                console=self._console,
                transient=True,
                auto_refresh=False,
            )
            self._bar.start()
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = self._bar.add_task(f"{event.model} on {event.task}",
                                                        total=event.budget or None, rate=0.0,
                                                        eta="?")
        rate = event.tokens / event.seconds if event.seconds else 0.0
        if event.eta is not None:
            eta = f"{_duration(event.eta)} (pass)"  # the whole pass, as the pass estimates it
        else:
            # The budget is an upper bound: most files finish before it, so this is a ceiling.
            left = (event.budget - event.tokens) / rate if rate and event.budget else None
            eta = _duration(left)
        self._bar.update(row, completed=event.tokens, rate=rate,
                         total=event.budget or None, eta=eta)
        self._bar.refresh()

    def __call__(self, event: Event) -> None:
        """Render one event."""
        if self.quiet:
            return
        if event.kind == "progress":
            if self.live:
                self._show_bar(event)
            return
        if event.kind in ("done", "problem"):
            self._end_row(event)
        stamp = time.strftime("%H:%M:%S")
        if event.kind == "start":
            self._write(f"{stamp} {event.task} {event.model}: generating ({event.detail})")
        elif event.kind == "done":
            if event.cache == "hit":
                self._write(f"{stamp} {event.task} {event.model}: {event.detail or 'done'} "
                            "[cache=hit]")
            elif event.tokens or event.cache:
                self._write(f"{stamp} {event.task} {event.model}: {event.detail or 'done'} "
                            f"[{figures_text(event)}]")
            else:
                self._write(f"{stamp} {event.task} {event.model}: {event.detail}")
        elif event.kind in ("check", "compacted"):
            self._write(f"{stamp} {event.task} {event.model}: {event.detail}")
        elif event.kind == "problem":
            where = f"{event.task} {event.model}".strip()
            self._write(f"{stamp} problem: {where}: {event.detail}", style="yellow")


def figures_text(event: Event) -> str:
    """Return a finished generation's figures: tokens decoded and kept, time, decoding rate.

    The rate divides the decoded tokens by the decoding time alone: the kept tokens over the
    whole time (prompts, verification) would make a healthy engine look slow.
    """
    parts = [f"decoded={event.tokens}"]
    if event.kept is not None:
        parts.append(f"kept={event.kept}")
    parts.append(f"seconds={event.seconds:.1f}")
    if event.decode_seconds > 0:
        parts.append(f"decoding={event.decode_seconds:.1f}s "
                     f"tok/s={event.tokens / event.decode_seconds:.1f}")
    parts.append(f"cache={event.cache}")
    return " ".join(parts)


def _duration(seconds: float | None) -> str:
    """Return ``seconds`` as m:ss, or ? when unknown."""
    if seconds is None:
        return "?"
    whole = max(0, round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"
