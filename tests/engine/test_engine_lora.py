"""The engine applies GGUF LoRA adapters through llama.cpp's adapter API: on tiny models.

The tests on the real embedded model (a zero adapter keeps its text, a non-zero one changes it)
are in tests/model/lora/test_engine_lora.py.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest

from symergion.config.sampling import Sampling
from symergion.engine import native
from symergion.engine.llama import LlamaEngine
from symergion.errors import ModelError
from tests.helpers.lora import MakeEngine, complete, write_adapter


def test_an_adapter_for_another_size_is_refused(tiny_model: Path, wide_model: Path,
                                                tmp_path: Path, engine_on: MakeEngine) -> None:
    adapter = write_adapter(tmp_path / "wide-lora.gguf", wide_model)
    with pytest.raises(ModelError, match="incorrect shape"):
        engine_on(tiny_model, lora=adapter)


def test_an_adapter_applies_to_a_tiny_model(tiny_model: Path, tmp_path: Path,
                                            engine_on: MakeEngine) -> None:
    zero = write_adapter(tmp_path / "zero.gguf", tiny_model, zero=True)
    strong = write_adapter(tmp_path / "strong.gguf", tiny_model, strength=2.0)
    base = complete(engine_on(tiny_model), "def test")
    assert complete(engine_on(tiny_model, lora=zero), "def test") == base
    assert complete(engine_on(tiny_model, lora=strong), "def test") != base


def test_a_missing_adapter_file_is_a_model_error(tiny_model: Path, tmp_path: Path,
                                                 engine_on: MakeEngine) -> None:
    with pytest.raises(ModelError, match=r"LoRA adapter .*gone\.gguf does not exist"):
        engine_on(tiny_model, lora=tmp_path / "gone.gguf")


def test_an_engine_with_an_adapter_is_freed_by_the_garbage_collector(
        tiny_model: Path, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "a.gguf", tiny_model)
    for _ in range(3):
        engine = LlamaEngine(tiny_model, model_name="t", n_threads=1, sampling=Sampling(),
                             lora=adapter)
        assert complete(engine, "def")
        finalizer = engine._finalizer
        model = weakref.ref(engine.model)
        del engine
        gc.collect()
        assert not finalizer.alive
        assert model() is None, "the native model outlived its engine"


def test_a_llama_cpp_python_without_the_adapter_api_fails_clearly(tmp_path: Path) -> None:
    old = SimpleNamespace(__version__="0.2.0")
    with pytest.raises(ModelError, match=r"llama-cpp-python 0\.2\.0 has no LoRA adapter API") \
            as caught:
        native.lora_api(old)
    assert "pip install -U llama-cpp-python" in (caught.value.hint or "")
