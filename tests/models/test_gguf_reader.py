"""FastGGUFReader against the installed gguf: the private methods it overrides must still exist.

pyproject.toml bounds gguf because these are not gguf's public API; when a new gguf changes them,
these tests fail by name instead of metadata reads going wrong or slow.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import gguf
import pytest

from symergion.models.gguf_reader import fast_reader_class

UPDATE = ("update FastGGUFReader in symergion/models/gguf_reader.py to the new reader, then the "
          "gguf bound in pyproject.toml")


def overridden() -> list[str]:
    """Return the private methods of gguf's reader that FastGGUFReader replaces."""
    own = vars(fast_reader_class())
    return sorted(name for name, value in own.items()
                  if name.startswith("_") and not name.startswith("__") and callable(value))


def test_the_fast_reader_overrides_the_two_methods_it_was_written_for() -> None:
    assert overridden() == ["_get", "_get_field_parts"]


@pytest.mark.parametrize("name", overridden())
def test_gguf_reader_still_has_each_overridden_method_with_its_signature(name: str) -> None:
    stock = getattr(gguf.GGUFReader, name, None)
    assert callable(stock), f"gguf {version('gguf')}: GGUFReader has no {name} any more; {UPDATE}"
    ours = list(inspect.signature(getattr(fast_reader_class(), name)).parameters)
    theirs = list(inspect.signature(stock).parameters)
    assert ours == theirs, (
        f"gguf {version('gguf')}: GGUFReader.{name} takes {theirs}, FastGGUFReader's takes {ours}; "
        f"{UPDATE}")


def test_gguf_reader_still_maps_scalar_types_to_numpy() -> None:
    # The bulk array read looks up each item type here.
    table = getattr(gguf.GGUFReader, "gguf_scalar_to_np", None)
    assert isinstance(table, dict) and gguf.GGUFValueType.UINT32 in table, (
        f"gguf {version('gguf')}: GGUFReader.gguf_scalar_to_np is gone or changed; {UPDATE}")


def test_the_stock_reader_still_parses_fields_through_the_overridden_method(
        thinking_gguf: Path) -> None:
    calls: list[int] = []

    class Counting(fast_reader_class()):  # type: ignore[misc]
        def _get_field_parts(self, orig_offs: int, raw_type: int) -> object:
            calls.append(raw_type)
            return super()._get_field_parts(orig_offs, raw_type)

    reader = Counting(thinking_gguf)
    # Every key/value pair goes through the hook, the token array among them.
    assert len(calls) == reader.fields["GGUF.kv_count"].contents(), (
        f"gguf {version('gguf')}: GGUFReader no longer reads fields through _get_field_parts, "
        f"so FastGGUFReader's bulk read is unused; {UPDATE}")
    assert gguf.GGUFValueType.ARRAY in calls
