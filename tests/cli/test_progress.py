"""The progress printer: a rich bar on a terminal, plain lines without escape codes elsewhere."""

from __future__ import annotations

import io

import pytest

from symergion.cli.progress import ProgressPrinter
from symergion.core.report import Event


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def play(printer: ProgressPrinter) -> None:
    printer(Event("start", "TestCase_x", "gemma", detail="120 prompt tokens, budget 200",
                  budget=200))
    for tokens in (16, 32, 48):
        printer(Event("progress", "TestCase_x", "gemma", tokens=tokens, seconds=tokens / 40,
                      budget=200))
    printer(Event("done", "TestCase_x", "gemma", tokens=50, seconds=1.25, cache="miss",
                  detail="committed", kept=30, decode_seconds=1.0))


def test_log_stream_gets_plain_event_lines_only() -> None:
    stream = io.StringIO()
    play(ProgressPrinter(stream=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("TestCase_x gemma: generating (120 prompt tokens, budget 200)")
    # The rate is of decoding alone (50 tokens in 1.0 s), not kept tokens over the whole 1.25 s.
    assert "decoded=50 kept=30 seconds=1.2 decoding=1.0s tok/s=50.0 cache=miss" in lines[1]
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_terminal_shows_tokens_rate_and_eta_against_the_budget() -> None:
    stream = Terminal()
    printer = ProgressPrinter(stream=stream)
    printer(Event("start", "TestCase_x", "gemma", detail="budget 200", budget=200))
    printer(Event("progress", "TestCase_x", "gemma", tokens=48, seconds=1.2, budget=200))
    shown = stream.getvalue()
    assert "gemma on TestCase_x" in shown
    assert "48/200" in shown
    assert "40.0 tok/s" in shown
    assert "ETA 0:04" in shown  # (200 - 48) tokens at 40 tok/s
    printer(Event("done", "TestCase_x", "gemma", tokens=50, seconds=1.25, cache="miss",
                  detail="committed"))
    # The bar is transient: it is gone, and the event line stays.
    assert printer._bar is None
    assert "committed [decoded=50" in stream.getvalue()


def test_a_batch_shows_one_row_per_generation_until_each_ends() -> None:
    stream = Terminal()
    printer = ProgressPrinter(stream=stream)
    for task in ("TestCase_a", "TestCase_b"):
        printer(Event("start", task, "gemma", detail="budget 100", budget=100))
    printer(Event("progress", "TestCase_a", "gemma", tokens=16, seconds=1.0, budget=100))
    printer(Event("progress", "TestCase_b", "gemma", tokens=32, seconds=1.0, budget=100))
    shown = stream.getvalue()
    assert "gemma on TestCase_a" in shown and "16/100" in shown
    assert "gemma on TestCase_b" in shown and "32/100" in shown
    printer(Event("done", "TestCase_a", "gemma", tokens=20, seconds=1.2, cache="miss",
                  detail="committed a"))
    # b still decodes: its row stays, a's is gone.
    assert printer._bar is not None and list(printer._rows) == [("TestCase_b", "gemma")]
    printer(Event("done", "TestCase_b", "gemma", tokens=40, seconds=1.3, cache="miss",
                  detail="committed b"))
    assert printer._bar is None
    assert "committed a [decoded=20" in stream.getvalue()
    assert "committed b [decoded=40" in stream.getvalue()


def test_quiet_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = Terminal()
    play(ProgressPrinter(stream=stream, quiet=True))
    assert stream.getvalue() == ""


@pytest.mark.parametrize("no_color", [False, True])
def test_problems_are_coloured_unless_no_color(monkeypatch: pytest.MonkeyPatch,
                                               no_color: bool) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    stream = Terminal()
    ProgressPrinter(stream=stream)(Event("problem", "TestCase_x", "gemma",
                                         detail="model file missing"))
    shown = stream.getvalue()
    assert "problem: TestCase_x gemma: model file missing" in shown
    # SGR colour sequences (ESC [ ... m) appear exactly when colour is allowed.
    assert ("\x1b[33m" in shown) is not no_color


def test_a_generation_without_decoding_figures_shows_no_rate() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream)
    printer(Event("done", "TestCase_x", "gemma", tokens=50, seconds=9.0, cache="miss",
                  detail="committed"))
    line = stream.getvalue()
    assert "decoded=50 seconds=9.0 cache=miss" in line and "tok/s" not in line
