"""The ``endpoint`` field of a checkpoint: parsing, normalising, and the errors that name the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from symergion.config.parse import parse_config
from symergion.errors import ConfigError


def parse(*checkpoints: dict[str, Any]) -> Any:
    return parse_config({"checkpoints": list(checkpoints)}, base_dir=Path("/models"))


@pytest.mark.parametrize(("given", "normal"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://box.lan:8080/", "http://box.lan:8080"),
    ("http://box.lan:8080/v1", "http://box.lan:8080"),
    ("https://gpu.example/llama/v1/", "https://gpu.example/llama"),
    ("http://[::1]:9000", "http://[::1]:9000"),
])
def test_endpoint_is_normalised(given: str, normal: str) -> None:
    (checkpoint,) = parse({"endpoint": given, "name": "coder", "trait": "coding"}).checkpoints
    assert checkpoint.endpoint == normal
    assert checkpoint.served_model is None
    assert checkpoint.name_or_path == normal
    assert checkpoint.model_name == "coder"


def test_name_or_path_beside_an_endpoint_names_the_served_model() -> None:
    config = parse(
        {"endpoint": "http://a:8080", "name_or_path": "models/Qwen3-4B-Q4_K_M.gguf", "trait": "coding"},
        {"endpoint": "http://b:8080", "name_or_path": "models/Qwen3-4B-Q4_K_M.gguf", "trait": "coding",
         "name": "qwen-b", "sampling": {"temperature": 0.2}},
    )
    first, second = config.checkpoints
    assert first.served_model == "models/Qwen3-4B-Q4_K_M.gguf"
    assert first.model_name == "Qwen3-4B-Q4_K_M"
    # Engine pools and caches key on name_or_path: one per endpoint and model.
    assert first.name_or_path != second.name_or_path
    assert second.sampling.temperature == 0.2


def test_local_and_remote_checkpoints_mix() -> None:
    config = parse({"name_or_path": "local.gguf", "trait": "coding"},
                   {"endpoint": "http://127.0.0.1:8080", "name": "remote", "trait": "coding"})
    assert [c.endpoint for c in config.coders] == [None, "http://127.0.0.1:8080"]


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("127.0.0.1:8080", "expected http://HOST:PORT"),
    ("ftp://host:21", "expected http://HOST:PORT"),
    ("http://host:99999", "not a URL"),
    ("http://host:8080?key=1", "a query, fragment or user name"),
    ("http://user:pw@host:8080", "a query, fragment or user name"),
    ("", "expected a non-empty string"),
])
def test_bad_endpoints_name_the_field_and_the_fix(endpoint: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"endpoint": endpoint, "name": "x", "trait": "coding"})
    assert "checkpoints[0].endpoint" in str(err.value)
    assert problem in str(err.value)
    assert err.value.hint


def test_an_endpoint_alone_needs_a_name() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"endpoint": "http://127.0.0.1:8080", "trait": "coding"})
    assert "checkpoints[0].name" in str(err.value)
    assert '"name"' in str(err.value.hint)
