"""Extra buffer types on the real model: the real probe, and the fallback forced on any machine.

The decision, the probe in child processes and its cache are tested without a model in
tests/engine/test_extra_buffers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.config.environment import ENV_EXTRA_BUFFERS, extra_buffers_setting
from symergion.engine.extra_buffers import (
    Verdict,
    VerdictCache,
    llama_cpp_params,
    resolve,
)
from tests.helpers.engine import THREADS
from tests.needs import need_module

# -- the real probe ------------------------------------------------------------------------------


@pytest.fixture
def llama() -> object:
    need_module("llama_cpp", "pip install -e '.[demo]'")
    from symergion.engine.native import load_llama_cpp

    return load_llama_cpp()


def test_the_real_probe_runs_once_per_machine_and_build(gguf_path: Path, tmp_path: Path,
                                                        llama: object) -> None:
    cache = VerdictCache(tmp_path / "extra-buffers.json")
    first = resolve("auto", "default", gguf_path, llama=llama, cache=cache)
    assert first.probed
    assert "probe" in first.reason
    second = resolve("auto", "default", gguf_path, llama=llama, cache=cache)
    assert not second.probed and second.use_extra_buffers is first.use_extra_buffers


# -- the fallback, forced on any machine --------------------------------------------------------


def test_off_keeps_out_of_extra_buffers_and_generates_llama_cpps_text(
        make_engine, extra_buffers, gguf_path: Path) -> None:
    """Off gives llama-cpp-python's own greedy text with extra buffers off, token for token.

    (With and without extra buffers the texts may differ: repacked weights round differently.)
    """
    import llama_cpp

    prompt = 'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n'
    long_prompt = prompt + "".join(f"# note {i}: keep the numbers small\n" for i in range(40))
    decided = make_engine(n_ctx=2048)
    off = make_engine(n_ctx=2048, extra_buffers=False)
    assert off.buffer_types and set(off.buffer_types) <= {"CPU", "CPU_Mapped"}
    if extra_buffers:
        # Where extra buffers work, this build repacks some weights: the switch changes something.
        assert set(decided.buffer_types) - {"CPU", "CPU_Mapped"}
    with llama_cpp_params(False):
        baseline = llama_cpp.Llama(str(gguf_path), n_ctx=2048, n_threads=THREADS,
                                   n_threads_batch=THREADS, verbose=False)
    try:
        for text in (prompt, long_prompt):
            ours = "".join(off.generate(text, max_tokens=48))
            assert off.stats.generated_tokens == 48
            expected = baseline.create_completion(text, max_tokens=48, temperature=0)
            assert ours == expected["choices"][0]["text"]
    finally:
        baseline.close()


def test_env_off_reaches_the_loaded_model(gguf_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from symergion.config.sampling import Sampling
    from symergion.engine.worker import EngineSpec, load_in_process

    monkeypatch.setenv(ENV_EXTRA_BUFFERS, "off")
    setting, source = extra_buffers_setting(None)
    spec = EngineSpec(gguf_path, "gemma", THREADS, Sampling(), 1024, None, setting, source)
    engine, decision = load_in_process(spec)
    try:
        assert not decision.use_extra_buffers and ENV_EXTRA_BUFFERS in decision.reason
        assert not engine.extra_buffers and set(engine.buffer_types) <= {"CPU", "CPU_Mapped"}
        assert "".join(engine.generate("def add(a, b):\n", max_tokens=8))
    finally:
        engine.close()


def test_an_engine_built_without_a_setting_obeys_the_env(gguf_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from symergion.config.sampling import Sampling
    from symergion.engine.llama import LlamaEngine

    monkeypatch.setenv(ENV_EXTRA_BUFFERS, "off")
    engine = LlamaEngine(gguf_path, model_name="gemma", n_ctx=512, n_threads=THREADS, sampling=Sampling())
    try:
        assert not engine.extra_buffers and set(engine.buffer_types) <= {"CPU", "CPU_Mapped"}
    finally:
        engine.close()


def test_an_engine_built_without_a_setting_keeps_a_cached_crash_verdict(
        gguf_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Intel AMX machine: setting auto, the probe's crash cached; a plain engine stays out."""
    from symergion.config.sampling import Sampling
    from symergion.engine.extra_buffers import CACHE_FILE, build_identity, cpu_identity, identity_key
    from symergion.engine.llama import LlamaEngine
    from symergion.engine.native import load_llama_cpp

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("SYMERGION_CACHE_DIR", str(cache_dir))
    cpu, build = cpu_identity(), build_identity(load_llama_cpp())
    VerdictCache(cache_dir / CACHE_FILE).put(identity_key(cpu, build),
                                             Verdict(False, "died by SIGSEGV", "t"), {})
    engine = LlamaEngine(gguf_path, model_name="gemma", n_ctx=512, n_threads=THREADS, sampling=Sampling())
    try:
        assert not engine.extra_buffers and set(engine.buffer_types) <= {"CPU", "CPU_Mapped"}
        assert "".join(engine.generate("def add(a, b):\n", max_tokens=4))
    finally:
        engine.close()
