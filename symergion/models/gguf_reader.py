"""Open a GGUF file with a reader fast enough for large vocabularies.

``FastGGUFReader`` overrides two private methods of ``gguf.GGUFReader``, ``_get`` and
``_get_field_parts``: pyproject.toml bounds ``gguf`` to the series tested, and
tests/models/test_gguf_reader.py fails by name when a new reader changes them.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.errors import ModelError

if TYPE_CHECKING:
    import gguf


def unreadable_error(path: Path, exc: OSError) -> ModelError:
    """Return the error for a model file the OS refuses to read."""
    return ModelError(f"cannot read model file {path}: {exc.strerror or exc}",
                      hint="check that the file exists and that its permissions allow reading")


# Exceptions the gguf reader raises on a damaged file: it indexes a memory map with offsets
# taken from the file itself.
_CORRUPT = (ValueError, IndexError, KeyError, OverflowError, struct.error, TypeError)


def open_reader(path: Path) -> gguf.GGUFReader:
    """Open ``path`` with the fast reader; a damaged file raises a ModelError that says so."""
    try:
        return fast_reader_class()(path, "r")
    except _CORRUPT as exc:
        raise ModelError(
            f"{path} cannot be read as GGUF: it is truncated or corrupt ({exc})",
            hint="fetch or copy the file again; if it is new, re-run the conversion",
        ) from None
    except OSError as exc:
        raise unreadable_error(path, exc) from None


@functools.cache
def fast_reader_class() -> type[gguf.GGUFReader]:
    """Return a GGUFReader that parses metadata arrays in bulk."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    class FastGGUFReader(GGUFReader):
        """GGUFReader that reads metadata arrays in bulk instead of item by item.

        The stock reader builds one numpy view per array item, which takes ~10 s for a
        262k-token vocab; this reads a scalar array as one view and walks a string array
        with ``struct``. Fields keep the stock shape, so ``ReaderField.contents()`` works.
        """

        def _get(self, offset: int, dtype: Any, count: int = 1,
                 override_order: Any = None) -> Any:
            # Slicing a plain ndarray is several times cheaper than slicing a np.memmap.
            plain = self.__dict__.get("_plain")
            if plain is None:
                plain = self.__dict__["_plain"] = self.data.view(np.ndarray)
            count = int(count)
            itemsize = np.dtype(dtype).itemsize
            arr = plain[offset:offset + itemsize * count].view(dtype=dtype)[:count]
            order = self.byte_order if override_order is None else override_order
            return arr.view(arr.dtype.newbyteorder(order))

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            if len(raw_itype) != 1 or len(alen) != 1:
                raise ValueError(f"array header at offset {orig_offs} is cut off")
            itype = GGUFValueType(raw_itype[0])
            count = int(alen[0])
            offs = orig_offs + 12
            types = [GGUFValueType.ARRAY, itype]
            nptype = self.gguf_scalar_to_np.get(itype)
            if nptype is not None:
                values = self._get(offs, nptype, count)
                if len(values) != count:
                    raise ValueError(f"array at offset {orig_offs} is cut off")
                return 12 + int(values.nbytes), [raw_itype, alen, values], [2], types
            if itype != GGUFValueType.STRING:
                return super()._get_field_parts(orig_offs, raw_type)
            plain = self.__dict__["_plain"]
            view = memoryview(plain)
            unpack = struct.Struct("<Q").unpack_from
            parts: list[Any] = [raw_itype, alen]
            for _ in range(count):
                (length,) = unpack(view, offs)
                parts.append(plain[offs + 8:offs + 8 + length])
                offs += 8 + length
            if offs > len(plain):
                raise ValueError(f"string array at offset {orig_offs} is cut off")
            return offs - orig_offs, parts, list(range(2, len(parts))), types

    return FastGGUFReader
