"""Locating models without parsing them: the fast path of cached syncs."""

from __future__ import annotations

from pathlib import Path

from symergion.models.metadata import model_fingerprint
from symergion.models.resolve import locate_model


def test_locate_does_not_read_the_file(tmp_path):
    # A path that is not a GGUF at all is located (it is only fingerprinted, never parsed).
    (tmp_path / "m.gguf").write_bytes(b"not a gguf")
    assert locate_model("m.gguf", tmp_path) == tmp_path / "m.gguf"
    assert locate_model(str(tmp_path / "m.gguf"), Path("/elsewhere")) == tmp_path / "m.gguf"
    before = model_fingerprint(tmp_path / "m.gguf")
    (tmp_path / "m.gguf").write_bytes(b"not a gguf either")
    assert model_fingerprint(tmp_path / "m.gguf") != before
