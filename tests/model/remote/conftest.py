"""Fixtures for remote-engine tests: llama-cpp-python's own server on loopback, real model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.server import Server, start_server
from tests.needs import model_package


@pytest.fixture(scope="session")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Gemma 3 270M Q4_K_M GGUF, assembled once per session into tmp."""
    package = model_package()
    return Path(package.assemble(tmp_path_factory.mktemp("models") / "gemma3-270m.gguf"))


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One llama_cpp.server for the session (in the session's environment), stopped at its end."""
    server = start_server(gguf_path, tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture
def make_server(gguf_path: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers of the test's own (fresh KV cache, or to be killed); all stopped after."""
    servers: list[Server] = []

    def make(*extra: str) -> Server:
        server = start_server(gguf_path, tmp_path, *extra)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
