"""Engines registered by checkpoint kind: the kind of a checkpoint, and the dispatch on it."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from symergion.app.runtime import EngineKind, EngineKinds, engine_kind, fingerprint, load_engine
from symergion.config.parse import parse_config
from symergion.config.schema import LLAMA_KIND, REMOTE_KIND, Checkpoint, Config
from symergion.engine.base import Engine
from symergion.engine.fake import FakeEngine
from symergion.engine.remote import RemoteEngine
from symergion.errors import ConfigError, ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.metadata import model_fingerprint


@dataclass(frozen=True)
class OddCheckpoint(Checkpoint):
    """A checkpoint of a kind no engine is registered for."""

    @property
    def kind(self) -> str:
        return "onnx"


@pytest.fixture
def refused_endpoint() -> Iterator[str]:
    """An address whose port is bound but not listening: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def config_of(tmp_path: Path, *checkpoints: dict[str, Any]) -> Config:
    return parse_config({"checkpoints": list(checkpoints)}, base_dir=tmp_path)


def test_kind_follows_from_the_fields(tmp_path: Path) -> None:
    config = config_of(tmp_path, {"name_or_path": "m.gguf", "trait": "coding"},
                       {"endpoint": "http://127.0.0.1:8080/v1", "name": "far", "trait": "coding"},
                       {"endpoint": "http://127.0.0.1:8080", "name_or_path": "qwen.gguf",
                        "trait": "coding"})
    assert [c.kind for c in config.checkpoints] == [LLAMA_KIND, REMOTE_KIND, REMOTE_KIND]
    assert [c.model_name for c in config.checkpoints] == ["m", "far", "qwen"]


def test_every_kind_a_checkpoint_can_have_is_registered() -> None:
    assert list(engine_kind) == sorted([LLAMA_KIND, REMOTE_KIND])


def test_a_registry_dispatches_by_kind_and_names_the_known_kinds_for_an_unknown_one(
        tmp_path: Path) -> None:
    def load(tag: str) -> EngineKind:
        def engine(config: Config, checkpoint: Checkpoint) -> Engine:
            return FakeEngine(f"{tag}:{checkpoint.model_name}", "x")
        return EngineKind(load=engine, fingerprint=lambda config, checkpoint: f"{tag}-fp")

    kinds = EngineKinds()
    kinds.register("alpha", load("a"))
    kinds.register("beta", load("b"))
    config = config_of(tmp_path, {"name_or_path": "x.gguf", "trait": "coding"})
    [checkpoint] = config.checkpoints
    assert kinds("beta").fingerprint(config, checkpoint) == "b-fp"
    assert kinds("alpha").load(config, checkpoint).model_name == "a:x"
    with pytest.raises(ValueError, match="'alpha' is already registered"):
        kinds.register("alpha", load("c"))
    with pytest.raises(ConfigError, match=r"kind 'gamma' \(known kinds: 'alpha', 'beta'\)"):
        kinds("gamma")


def test_an_unknown_kind_is_refused_before_anything_loads(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(64))
    odd = OddCheckpoint(name_or_path="m.gguf", trait="coding")
    config = config_of(tmp_path, {"name_or_path": "m.gguf", "trait": "coding"})
    for call in (load_engine, fingerprint):
        with pytest.raises(ConfigError, match="no engine runs checkpoints of kind 'onnx'") as info:
            call(config, odd)
        assert "endpoint" in (info.value.hint or "")


def test_a_local_checkpoint_is_fingerprinted_and_loaded_as_a_gguf(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    config = config_of(tmp_path, {"name_or_path": "m.gguf", "trait": "coding"},
                       {"name_or_path": "gone.gguf", "trait": "coding"})
    present, missing = config.checkpoints
    assert fingerprint(config, present) == model_fingerprint(model)
    # The llama kind resolves the GGUF before it starts a worker; a missing file stops it there.
    with pytest.raises(ModelNotFoundError, match=re.escape("gone.gguf does not exist")):
        load_engine(config, missing)


def test_a_remote_checkpoint_goes_to_its_server(tmp_path: Path, refused_endpoint: str) -> None:
    config = config_of(tmp_path, {"endpoint": refused_endpoint, "name_or_path": "qwen.gguf",
                                  "trait": "coding", "context_size": 2048})
    [checkpoint] = config.checkpoints
    engine = load_engine(config, checkpoint)
    try:
        assert isinstance(engine, RemoteEngine)
        assert (engine.endpoint, engine.served_model, engine.model_name, engine.context_size) == (
            refused_endpoint, "qwen.gguf", "qwen", 2048)
    finally:
        engine.close()
    # Its fingerprint is the server's word on its model: no server, no fingerprint.
    with pytest.raises(ModelError, match=re.escape(f"the model server {refused_endpoint} is not answering")):
        fingerprint(config, checkpoint)
