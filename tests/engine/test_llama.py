"""Tests of the llama.cpp engine that load no model (tests/model/engine/test_llama.py loads one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symergion.config.sampling import Sampling
from symergion.engine.chat import render_chat_template
from symergion.engine.llama import LlamaEngine
from symergion.errors import ModelError


def test_importing_the_engine_module_does_not_import_llama_cpp() -> None:
    code = "import sys, symergion.engine.llama; sys.exit('llama_cpp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as caught:
        LlamaEngine(tmp_path / "absent.gguf", model_name="m", n_threads=1, sampling=Sampling())
    assert caught.value.hint


def test_non_gguf_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.gguf"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ModelError, match="not a GGUF file"):
        LlamaEngine(path, model_name="m", n_threads=1, sampling=Sampling())


def test_render_chat_template_adds_generation_prompt_and_thinking() -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% if enable_thinking %}<think>"
        "{% endif %}{% endif %}"
    )
    rendered = render_chat_template(template, "hi", bos_token="<s>", eos_token="</s>")
    assert rendered == "<|user|>hi<|end|><|assistant|><think>"


def test_chat_template_exception_is_a_model_error() -> None:
    template = "{{ raise_exception('only system messages') }}"
    with pytest.raises(ModelError, match="only system messages"):
        render_chat_template(template, "hi", bos_token="", eos_token="")
