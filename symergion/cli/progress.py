"""Progress on stderr: a live line on a terminal, one line per event in logs (cron, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from symergion.core.execute import Event


class ProgressPrinter:
    """Render reconcile events on stderr.

    Args:
        quiet: print nothing.
        stream: where to print (stderr by default).
    """

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._line_open = False

    def _write(self, text: str, *, transient: bool = False) -> None:
        if self.quiet:
            return
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        if transient:
            self.stream.write(text)
            self._line_open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def loading(self, model: str) -> None:
        """Announce a model load."""
        self._write(f"loading {model} ...")

    def __call__(self, event: Event) -> None:
        """Render one event."""
        stamp = time.strftime("%H:%M:%S")
        if event.kind == "progress":
            if self.live:
                rate = event.tokens / event.seconds if event.seconds else 0.0
                self._write(f"  {event.model} on {event.task}: {event.tokens} tokens, "
                            f"{rate:.1f} tok/s", transient=True)
            return
        if event.kind == "start":
            self._write(f"{stamp} {event.task} {event.model}: generating ({event.detail})")
        elif event.kind == "done":
            if event.cache == "hit":
                self._write(f"{stamp} {event.task} {event.model}: {event.detail or 'done'} "
                            "[cache=hit]")
            elif event.tokens or event.cache:
                rate = event.tokens / event.seconds if event.seconds else 0.0
                self._write(
                    f"{stamp} {event.task} {event.model}: {event.detail or 'done'} "
                    f"[tokens={event.tokens} seconds={event.seconds:.1f} "
                    f"tok/s={rate:.1f} cache={event.cache}]"
                )
            else:
                self._write(f"{stamp} {event.task} {event.model}: {event.detail}")
        elif event.kind == "problem":
            where = f"{event.task} {event.model}".strip()
            self._write(f"{stamp} problem: {where}: {event.detail}")
