"""The example configs in configs/ load and mean what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.config.load import load_config
from symergion.config.schema import DEFAULT_CONFIG, EMBEDDED_MODEL
from tests.helpers.gguf import ROOT

CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("name", ["default", "original-example", "tiny"])
def test_example_config_validates(name: str) -> None:
    config = load_config(CONFIGS / f"{name}.json")
    assert config.coders
    assert config.models_dir == CONFIGS


def test_default_json_is_the_built_in_default() -> None:
    assert json.loads((CONFIGS / "default.json").read_text()) == DEFAULT_CONFIG


def test_original_example_keeps_the_original_models_and_branch_names() -> None:
    config = load_config(CONFIGS / "original-example.json")
    assert [(c.model_name, c.trait) for c in config.checkpoints] == [
        ("Qwen3-4B-Base", "coding"), ("granite-3.3-2b-base", "coding"),
        ("Qwen3-1.7B", "reasoning")]
    assert all(c.name_or_path.endswith("-Q4_K_M.gguf") for c in config.checkpoints)
    (reasoner,) = config.reasoners
    assert reasoner.reasoning_start_tokens == (151667, 198)
    assert reasoner.reasoning_stop_tokens == (151668,)
    assert config.idle_cores == 4


def test_tiny_config_runs_the_embedded_coder_and_small_hub_models() -> None:
    config = load_config(CONFIGS / "tiny.json")
    assert config.checkpoints[0].name_or_path == EMBEDDED_MODEL
    assert all(c.name_or_path.startswith(("embedded:", "hf://")) for c in config.checkpoints)
    assert all((c.context_size or 0) <= 4096 for c in config.checkpoints)
    (reasoner,) = config.reasoners
    assert (reasoner.reasoning_start_tokens, reasoner.reasoning_stop_tokens) == (
        (151667, 198), (151668,))


def test_every_json_in_configs_is_tested() -> None:
    assert sorted(p.stem for p in Path(CONFIGS).glob("*.json")) == [
        "default", "original-example", "tiny"]
