"""Fixtures for the fine-tune recipe end to end: a tiny Llama built here, llama.cpp.

The end-to-end tests (marked ``finetune``) need torch, transformers, peft, trl and datasets
(``--group finetune``) and a llama.cpp checkout in ``SYMERGION_LLAMA_CPP`` for its converters;
``nox -s finetune`` provides both. tests/conftest.py marks every test here ``finetune`` and
leaves them out unless ``-m`` names the marker.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.helpers.finetune import PROMPT, completion

ENV_LLAMA_CPP = "SYMERGION_LLAMA_CPP"


def build_tiny_llama(directory: Path) -> Path:
    """Save a tiny random Llama with a SentencePiece tokenizer trained here (no Hub access)."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    directory.mkdir(parents=True)
    lines = [line for i in range(64)
             for line in (PROMPT + completion(i) + completion(i, good=False)).splitlines() if line]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=384, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(directory)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama checkpoint directory, built once per session."""
    return build_tiny_llama(tmp_path_factory.mktemp("base") / "Tiny-Llama")


@pytest.fixture(scope="session")
def llama_cpp_checkout() -> Path:
    """The llama.cpp checkout whose converters the recipe runs (``SYMERGION_LLAMA_CPP``)."""
    value = os.environ.get(ENV_LLAMA_CPP)
    if not value or not (Path(value) / "convert_lora_to_gguf.py").is_file():
        pytest.fail(f"set {ENV_LLAMA_CPP} to a llama.cpp checkout (nox -s finetune unpacks the "
                    "llama-cpp-python sdist's vendor/llama.cpp and sets it)")
    return Path(value)
