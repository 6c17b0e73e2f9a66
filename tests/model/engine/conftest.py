"""Fixtures for engine tests: the real embedded GGUF, assembled once into a temp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from symergion.config.sampling import Sampling
from tests.helpers.engine import THREADS
from tests.needs import model_package


@pytest.fixture(scope="session")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the Gemma 3 270M Q4_K_M GGUF, assembled into a session temp directory."""
    package = model_package()
    target = tmp_path_factory.mktemp("models") / package.MODEL_NAME
    return Path(package.assemble(target))


@pytest.fixture
def extra_buffers(gguf_path: Path) -> bool:
    """Return this machine's decision on extra buffer types, as an engine makes it by itself."""
    from symergion.engine.extra_buffers import machine_decision
    from symergion.engine.native import load_llama_cpp

    return machine_decision(gguf_path, llama=load_llama_cpp()).use_extra_buffers


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
