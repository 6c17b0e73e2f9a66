"""Fixtures for LoRA tests: real GGUF adapters written with the gguf writer for a real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.gguf import write_tiny_gguf
from tests.needs import model_package


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny F16 llama GGUF (random weights) that llama.cpp loads."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-f16.gguf")


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama GGUF of another width: same architecture and tensor names, other shapes."""
    return write_tiny_gguf(tmp_path_factory.mktemp("wide") / "wide-f16.gguf", n_embd=512,
                           n_ff=1024, name="Wide Llama")


@pytest.fixture(scope="session")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Gemma 3 270M Q4_K_M GGUF, assembled once per session into tmp."""
    package = model_package()
    target = tmp_path_factory.mktemp("gemma") / package.MODEL_NAME
    return Path(package.assemble(target))
