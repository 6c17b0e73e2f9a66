"""The engine applies GGUF LoRA adapters through llama.cpp's adapter API.

A zero adapter (every lora_b zero) must leave the base model's greedy text exactly as it is, a
non-zero one must change it. These run the real embedded model; tests/engine/test_engine_lora.py
those on tiny models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.app import runtime
from symergion.config.parse import parse_config
from symergion.config.sampling import Sampling
from symergion.engine.llama import LlamaEngine
from symergion.errors import ModelError
from tests.helpers.lora import PROMPT, TOKENS, MakeEngine, complete, write_adapter

# Long enough (> MIN_STATE_TOKENS) for its KV state to be saved on disk.
STABLE = "".join(f"# line {i}: scale values by {i}\n" for i in range(12))


@pytest.fixture(scope="module")
def adapters(gemma: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A zero and a non-zero adapter for Gemma 3 270M's attention queries and up projections."""
    directory = tmp_path_factory.mktemp("adapters")
    return {
        "zero": write_adapter(directory / "zero.gguf", gemma, zero=True),
        "nonzero": write_adapter(directory / "nonzero.gguf", gemma, strength=0.05),
    }


@pytest.fixture(scope="module")
def base_text(gemma: Path) -> str:
    engine = LlamaEngine(gemma, model_name="base", n_ctx=512, n_threads=2, sampling=Sampling())
    try:
        return complete(engine)
    finally:
        engine.close()


def test_a_zero_adapter_gives_the_base_models_text_exactly(
        gemma: Path, adapters: dict[str, Path], base_text: str, engine_on: MakeEngine) -> None:
    engine = engine_on(gemma, lora=adapters["zero"])
    assert engine.stats.generated_tokens == 0
    text = complete(engine)
    assert engine.stats.generated_tokens > 0
    assert text == base_text


def test_a_nonzero_adapter_changes_the_text(gemma: Path, adapters: dict[str, Path],
                                            base_text: str, engine_on: MakeEngine) -> None:
    text = complete(engine_on(gemma, lora=adapters["nonzero"]))
    assert text and text != base_text


def test_scale_zero_switches_the_adapter_off(gemma: Path, adapters: dict[str, Path],
                                             base_text: str, engine_on: MakeEngine) -> None:
    assert complete(engine_on(gemma, lora=adapters["nonzero"], lora_scale=0.0)) == base_text


def test_an_adapter_for_another_architecture_is_refused(gemma: Path, tiny_model: Path,
                                                        tmp_path: Path,
                                                        engine_on: MakeEngine) -> None:
    adapter = write_adapter(tmp_path / "llama-lora.gguf", tiny_model)
    with pytest.raises(ModelError, match=r"cannot load the LoRA adapter .*arch mismatch") as caught:
        engine_on(gemma, lora=adapter)
    assert "symergion models list" in (caught.value.hint or "")


def test_kv_states_are_not_shared_between_with_and_without_adapter(
        gemma: Path, adapters: dict[str, Path], tmp_path: Path, engine_on: MakeEngine) -> None:
    states = tmp_path / "kv"
    prompt = STABLE + PROMPT
    base = engine_on(gemma, state_dir=states)
    complete(base, prompt, stable_prefix=len(STABLE))
    assert len(list(states.iterdir())) == 1, "the base model saved its prefix state"

    tuned = engine_on(gemma, state_dir=states, lora=adapters["nonzero"])
    cold = complete(tuned, prompt, stable_prefix=len(STABLE))
    assert tuned.stats.prefix_source == "none", "the base model's state was not used"
    assert len(list(states.iterdir())) == 2, "the adapter's states live in their own directory"

    again = engine_on(gemma, state_dir=states, lora=adapters["nonzero"])
    text = complete(again, prompt, stable_prefix=len(STABLE))
    assert again.stats.prefix_source == "disk"
    assert text == cold, "the adapter's own state gives the text of a cold run"


def test_runtime_loads_a_checkpoints_adapter(gemma: Path, adapters: dict[str, Path],
                                             base_text: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "gemma.gguf").symlink_to(gemma)
    (models / "tuned.gguf").symlink_to(adapters["nonzero"])
    config_file = models / "symergion.json"
    config_file.write_text(json.dumps({"checkpoints": [
        {"name_or_path": "gemma.gguf", "name": "gemma", "trait": "coding"},
        {"name_or_path": "gemma.gguf", "name": "gemma-tuned", "trait": "coding",
         "lora": "tuned.gguf", "lora_scale": 1.0},
    ]}))
    config = parse_config(json.loads(config_file.read_text()), base_dir=models)
    plain_cp, tuned_cp = config.checkpoints
    assert runtime.adapter_path(config, tuned_cp) == models / "tuned.gguf"
    assert runtime.adapter_path(config, plain_cp) is None
    tuned = runtime.load_engine(config, tuned_cp)
    try:
        text = "".join(tuned.generate(PROMPT, max_tokens=TOKENS))
        assert text and text != base_text
    finally:
        tuned.close()
    assert runtime.fingerprint(config, plain_cp) != runtime.fingerprint(config, tuned_cp)
