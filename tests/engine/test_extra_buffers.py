"""Extra buffer types: the decision, the crash probe and its cache (the real model's tests are in
tests/model/engine/test_extra_buffers.py)."""

from __future__ import annotations

import json
import pickle
import signal
import sys
from pathlib import Path

import pytest

from symergion.config.environment import ENV_EXTRA_BUFFERS, extra_buffers_setting
from symergion.config.parse import parse_config
from symergion.engine.base import ChatPrompt, prompt_segments
from symergion.engine.extra_buffers import (
    Verdict,
    VerdictCache,
    decide,
    resolve,
    verdict_from_exit,
)
from symergion.errors import ConfigError
from tests.needs import need_module

# -- the decision, pure --------------------------------------------------------------------------


def test_on_and_off_are_obeyed_whatever_the_cache_says() -> None:
    crashed = Verdict(False, "died", "t")
    on = decide("on", "SYMERGION_EXTRA_BUFFERS", crashed)
    off = decide("off", "cfg.json: extra_buffers", Verdict(True, "ok", "t"))
    assert on is not None and on.use_extra_buffers and "SYMERGION_EXTRA_BUFFERS" in on.reason
    assert off is not None and not off.use_extra_buffers and "cfg.json" in off.reason


def test_auto_takes_the_cached_verdict_or_asks_for_a_probe() -> None:
    assert decide("auto", "default", None) is None
    cached = decide("auto", "default", Verdict(False, "a probe died by SIGSEGV", "2026-01-01"))
    assert cached is not None and not cached.use_extra_buffers
    assert "SIGSEGV" in cached.reason and "cached" in cached.reason and not cached.probed


@pytest.mark.parametrize(("code", "use"), [(0, True), (-signal.SIGSEGV, False), (-signal.SIGILL, False),
                                          (-signal.SIGBUS, False), (-signal.SIGABRT, False)])
def test_exit_status_gives_a_verdict(code: int, use: bool) -> None:
    verdict = verdict_from_exit(code)
    assert verdict is not None and verdict.use_extra_buffers is use


@pytest.mark.parametrize("code", [1, 127, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL])
def test_a_failure_that_is_no_crash_proves_nothing(code: int) -> None:
    assert verdict_from_exit(code) is None


def test_env_wins_over_config_which_wins_over_the_default(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    config = parse_config({"extra_buffers": "off"}, base_dir=tmp_path, source=tmp_path / "c.json")
    assert extra_buffers_setting(None) == ("auto", "default")
    assert extra_buffers_setting(config) == ("off", f"{tmp_path / 'c.json'}: extra_buffers")
    monkeypatch.setenv(ENV_EXTRA_BUFFERS, "ON")
    assert extra_buffers_setting(config) == ("on", ENV_EXTRA_BUFFERS)
    monkeypatch.setenv(ENV_EXTRA_BUFFERS, "sometimes")
    with pytest.raises(ConfigError, match="auto, on, off") as caught:
        extra_buffers_setting(config)
    assert caught.value.hint


def test_invalid_config_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="extra_buffers"):
        parse_config({"extra_buffers": True}, base_dir=tmp_path)


# -- the probe, in real child processes ---------------------------------------------------------

SEGFAULT = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]


def marker_command(marker: Path) -> list[str]:
    """A probe that would leave a trace, to prove it never ran."""
    return [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]


@pytest.fixture
def llama() -> object:
    need_module("llama_cpp", "pip install -e '.[demo]'")
    from symergion.engine.native import load_llama_cpp

    return load_llama_cpp()


def test_a_probe_that_crashes_turns_extra_buffers_off_once_and_for_all(
        tmp_path: Path, llama: object) -> None:
    cache = VerdictCache(tmp_path / "extra-buffers.json")
    first = resolve("auto", "default", tmp_path / "m.gguf", llama=llama, cache=cache, command=SEGFAULT)
    assert not first.use_extra_buffers and first.probed
    assert "SIGSEGV" in first.reason
    stored = json.loads(cache.path.read_text())
    (entry,) = stored.values()
    assert entry["use_extra_buffers"] is False and entry["cpu"]["model"] and entry["build"]["system_info"]

    marker = tmp_path / "marker"
    again = resolve("auto", "default", tmp_path / "m.gguf", llama=llama, cache=cache,
                    command=marker_command(marker))
    assert not marker.exists(), "the probe ran again despite a cached verdict"
    assert not again.use_extra_buffers and not again.probed and "cached" in again.reason


def test_a_probe_stopped_by_ctrl_c_is_not_cached(tmp_path: Path, llama: object) -> None:
    cache = VerdictCache(tmp_path / "extra-buffers.json")
    # A child started in the background inherits SIGINT ignored and would exit 0: restore the default.
    interrupted = [sys.executable, "-c", "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.kill(os.getpid(), signal.SIGINT)"]
    decision = resolve("auto", "default", tmp_path / "m.gguf", llama=llama, cache=cache,
                       command=interrupted)
    assert not decision.use_extra_buffers and "probed again next time" in decision.reason
    assert not cache.path.exists()


def test_forced_settings_never_probe(tmp_path: Path, llama: object) -> None:
    cache = VerdictCache(tmp_path / "extra-buffers.json")
    marker = tmp_path / "marker"
    for setting in ("on", "off"):
        decision = resolve(setting, ENV_EXTRA_BUFFERS, tmp_path / "m.gguf", llama=llama, cache=cache,
                           command=marker_command(marker))
        assert decision.use_extra_buffers is (setting == "on")
    assert not marker.exists() and not cache.path.exists()


def test_a_corrupt_verdict_file_costs_one_probe(tmp_path: Path, llama: object) -> None:
    cache = VerdictCache(tmp_path / "extra-buffers.json")
    cache.path.write_text("{not json")
    decision = resolve("auto", "default", tmp_path / "m.gguf", llama=llama, cache=cache,
                       command=SEGFAULT)
    assert decision.probed and not decision.use_extra_buffers
    assert json.loads(cache.path.read_text())


# -- special tokens stay text in sources and notes ------------------------------------------------


def test_chat_prompt_keeps_its_span_across_pickling() -> None:
    prompt = ChatPrompt("<start_of_turn>user\nhi<end_of_turn>\n", (20, 22))
    back = pickle.loads(pickle.dumps(prompt))
    assert isinstance(back, ChatPrompt) and back == prompt and back.content == (20, 22)
    assert prompt_segments(back) == [("<start_of_turn>user\n", True), ("hi", False),
                                     ("<end_of_turn>\n", True)]
    assert prompt_segments("plain <eos>") == [("plain <eos>", False)]
    assert prompt.head(21).content == (20, 21)
