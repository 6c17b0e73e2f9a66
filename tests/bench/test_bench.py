"""The engine benchmark's command line (its runs on the real GGUF are in tests/model/engine)."""

from __future__ import annotations

import pytest

from symergion.bench.engine import main


def test_bench_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--repeats" in capsys.readouterr().out
