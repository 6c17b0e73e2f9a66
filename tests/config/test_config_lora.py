"""The `lora` and `lora_scale` checkpoint fields: parsed, validated, and part of the weights' key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from symergion.config.parse import parse_config
from symergion.errors import ConfigError


def parse(**fields: Any) -> Any:
    raw = {"checkpoints": [{"name_or_path": "base.gguf", "trait": "coding", **fields}]}
    return parse_config(raw, base_dir=Path("/models")).checkpoints[0]


def test_lora_and_scale_are_read() -> None:
    checkpoint = parse(lora="adapters/tuned.gguf", lora_scale=0.5)
    assert (checkpoint.lora, checkpoint.lora_scale) == ("adapters/tuned.gguf", 0.5)


def test_scale_defaults_to_one_and_an_integer_scale_is_a_float() -> None:
    assert parse(lora="a.gguf").lora_scale == 1.0
    scale = parse(lora="a.gguf", lora_scale=2).lora_scale
    assert scale == 2.0 and isinstance(scale, float)


def test_without_lora_the_checkpoint_has_none() -> None:
    checkpoint = parse()
    assert (checkpoint.lora, checkpoint.lora_scale) == (None, 1.0)


def test_weights_tell_a_model_with_and_without_its_adapter_apart() -> None:
    plain, tuned, half = parse(), parse(lora="a.gguf"), parse(lora="a.gguf", lora_scale=0.5)
    assert len({plain.weights, tuned.weights, half.weights}) == 3
    assert plain.weights == ("base.gguf", None, 1.0)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"lora": ""}, "lora", "expected the path of a GGUF adapter"),
    ({"lora": 3}, "lora", "expected the path of a GGUF adapter"),
    ({"lora": ["a.gguf"]}, "lora", "expected the path of a GGUF adapter"),
    ({"lora": "embedded:gemma3-270m"}, "lora", "cannot be an adapter"),
    ({"lora": "a.gguf", "lora_scale": "1"}, "lora_scale", "expected a number"),
    ({"lora": "a.gguf", "lora_scale": True}, "lora_scale", "expected a number"),
    ({"lora": "a.gguf", "lora_scale": float("nan")}, "lora_scale", "expected a number"),
    ({"lora_scale": 0.5}, "lora_scale", "lora_scale without lora"),
])
def test_bad_lora_fields_name_the_field_and_the_fix(fields: dict[str, Any], field: str,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse(**fields)
    assert f"checkpoints[0].{field}:" in caught.value.message
    assert caught.value.hint


def test_two_checkpoints_may_share_a_model_with_different_adapters() -> None:
    raw = {"checkpoints": [
        {"name_or_path": "base.gguf", "name": "base", "trait": "coding"},
        {"name_or_path": "base.gguf", "name": "tuned", "trait": "coding", "lora": "t.gguf"},
    ]}
    config = parse_config(raw, base_dir=Path("/models"))
    assert [c.lora for c in config.coders] == [None, "t.gguf"]
