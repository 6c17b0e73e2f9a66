"""Finishing a file: stop when it is complete or degenerate, keep the longest valid prefix.

A base model does not know when a file is done. Small models decoded greedily fall into loops
(``mock_mock_mock...``), repeat whole blocks, count on in lines of one shape (``t = 55``,
``u = 56`` ...; see ``symergion.verify.shape``), or start a second file. ``Finisher.check`` runs
on every token but reads only the text that is new since its last call, so it costs
microseconds.

A check of generated text, like the rest of ``verify``: the pass (``core``) and guided
generation (``verify.guide``) both stop and trim with it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from symergion.verify.shape import ShapeRuns

# Bumped whenever stop/trim behaviour changes, so cached responses made by older rules are
# not served for the same prompt.
FINISHER_VERSION = "2"

_TAIL = 240
_MIN_PERIODIC = 60
_MIN_REPEATS = 4


@dataclass(frozen=True)
class Finished:
    """The text to commit and what was cut from the raw completion."""

    text: str
    stop: str
    trimmed_chars: int
    trimmed_lines: int
    parses: bool | None


class Finisher:
    """Decide when to stop generating a file, then trim it to a valid prefix.

    Args:
        path: the destination path (its suffix picks the language check).
        code_starter: the text the completion starts from (a repeat of its first line at the
            top level means the model started another file).
    """

    def __init__(self, path: str, code_starter: str) -> None:
        self.path = path
        self.python = path.endswith((".py", ".pyi"))
        first = code_starter.strip().splitlines()
        self.restart_line = first[0] if first else None
        self._cut: int | None = None
        self._reason = ""
        # What check has read: the complete lines, where each starts, the non-blank ones.
        self._done = 0
        self._offset = 0
        self._lines: list[str] = []
        self._starts: list[int] = []
        self._body: list[str] = []
        self._shapes = ShapeRuns() if self.python else None
        self._run_lines: list[str] = []  # the first lines of a shape loop, kept if needed

    def check(self, text: str) -> str | None:
        """Return a stop reason if generation should stop now, else None.

        ``text`` is everything so far; only what came since the last call is read (the lines
        completed since), so a long generation costs time in its new text per call.
        """
        if self._periodic_tail(text):
            self._reason = "repetition"
            return self._reason
        end = text.rfind("\n", self._done)
        if end < 0:
            return None
        new = text[self._done : end].split("\n")
        self._done = end + 1
        for line in new:
            index = len(self._lines)
            self._lines.append(line)
            self._starts.append(self._offset)
            self._offset += len(line) + 1
            reason = self._line_stop(self._lines, index)
            if reason:
                self._cut = self._starts[index]
                self._reason = reason
                return reason
            if line.strip():
                self._body.append(line)
            if self._shapes is not None:
                run = self._shapes.feed(line)
                if run is not None:
                    self._cut = self._starts[run.start_line]
                    self._run_lines = self._lines[run.start_line : run.start_line + 2]
                    self._reason = "shape-loop"
                    return self._reason
        if self._repeated_block(self._body):
            self._cut = self._done  # the complete lines: a repeated block is cut whole
            self._reason = "repetition"
            return self._reason
        return None

    def _line_stop(self, lines: list[str], index: int) -> str | None:
        line = lines[index]
        if line.startswith("```"):
            return "fence"
        if index > 0 and self.restart_line and line.strip() == self.restart_line and (
            not line.startswith((" ", "\t"))
        ):
            return "restart"
        if self.python and index > 0 and line and not line[0].isspace() and not line.startswith(
            ("#", ")", "]", "}")
        ):
            # A top-level statement after the __main__ guard's body: the file has ended.
            for prev in range(index - 1, -1, -1):
                if lines[prev].startswith("if __name__"):
                    return "complete" if prev < index - 1 else None
                if lines[prev] and not lines[prev][0].isspace():
                    break
        return None

    @staticmethod
    def _periodic_tail(text: str) -> bool:
        tail = text[-_TAIL:]
        for period in range(1, 41):
            if period * _MIN_REPEATS > len(tail):
                break
            unit = tail[-period:]
            if not any(c.isalnum() for c in unit):
                continue
            count = 1
            pos = len(tail) - period
            while pos - period >= 0 and tail[pos - period : pos] == unit:
                count += 1
                pos -= period
            if count >= _MIN_REPEATS and count * period >= _MIN_PERIODIC:
                return True
        return False

    @staticmethod
    def _repeated_block(body: list[str]) -> bool:
        for size in range(1, 9):
            repeats = 4 if size == 1 else 3
            if len(body) < size * repeats:
                break
            block = body[-size:]
            if all(body[-size * (k + 1) : len(body) - size * k] == block for k in range(repeats)):
                return True
        return False

    def finish(self, raw: str, stop: str) -> Finished:
        """Trim ``raw`` (code starter plus completion) to the file to commit.

        Args:
            raw: the full text: code starter and everything generated.
            stop: why generation ended ("eos", "budget", or a reason ``check`` returned).
        """
        text = raw
        if self._cut is not None:
            text = text[: self._cut]
        if stop == "repetition" or self._reason == "repetition":
            text = _drop_repetition(text)
        parses: bool | None = None
        if self.python and self._reason == "shape-loop" and not _parses(text):
            # Cut before the loop, the block it began in may be left empty: keep its first
            # line or two, which real code has too, rather than drop the block's header.
            for keep in range(1, len(self._run_lines) + 1):
                candidate = text + "".join(line + "\n" for line in self._run_lines[:keep])
                if _parses(candidate):
                    text = candidate
                    break
        if self.python:
            text, parses = _longest_parsing_prefix(text)
        elif not text.endswith("\n") and "\n" in text and stop in ("budget", "repetition"):
            text = text[: text.rfind("\n") + 1]
        text = text.rstrip() + "\n" if text.strip() else ""
        trimmed = raw[len(text):] if raw.startswith(text) else raw
        return Finished(
            text=text,
            stop=self._reason or stop,
            trimmed_chars=max(0, len(raw) - len(text)),
            trimmed_lines=trimmed.count("\n"),
            parses=parses,
        )


def _drop_repetition(text: str) -> str:
    """Cut a degenerate tail: keep one copy of a periodic run or of a repeated block."""
    # Character loops ("mock_mock_mock"): cut at the start of the line the loop begins in.
    tail_start = max(0, len(text) - _TAIL)
    for period in range(1, 41):
        unit = text[-period:]
        if not unit or not any(c.isalnum() for c in unit):
            continue
        pos = len(text) - period
        count = 1
        while pos - period >= tail_start and text[pos - period : pos] == unit:
            count += 1
            pos -= period
        if count >= _MIN_REPEATS and count * period >= _MIN_PERIODIC:
            # A run of whole lines may begin at a newline: the line before it is not part of it.
            return text[: text.rfind("\n", 0, pos + 1) + 1]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for size in range(1, 9):
        block = lines[-size:]
        end = len(lines)
        while end - size * 2 >= 0 and lines[end - size * 2 : end - size] == block:
            end -= size
        if end < len(lines) - size:
            return "\n".join(lines[:end]) + "\n"
    return text + ("\n" if not text.endswith("\n") else "")


def _longest_parsing_prefix(text: str) -> tuple[str, bool]:
    """Return the longest prefix of ``text`` cut at a line start that parses as Python."""
    if _parses(text):
        return text, True
    lines = text.splitlines(keepends=True)
    for end in range(len(lines) - 1, 0, -1):
        candidate = "".join(lines[:end])
        if _parses(candidate):
            return candidate, True
    return "", False


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # CPython's parser gives up on deep nesting or long operator runs ("((((", "----")
        # with RecursionError or MemoryError: such text is not a file worth committing.
        return False
    return True
