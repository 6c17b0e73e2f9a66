"""On-disk store of llama.cpp KV states for token prefixes, bounded in bytes, least recently used.

Each entry is one file ``<n_tokens>-<sha256 of the tokens>.kv`` in a directory named after the
model fingerprint, so a lookup needs no index: list the directory, hash the prompt's prefixes of
the stored lengths, and take the longest match. Entries are written to a temporary file and
renamed, so a reader never sees a partial entry; a damaged entry fails its checksum and is
deleted. The store is a cache: every failure to read or write it costs time, never correctness,
so I/O errors are swallowed and reported as a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import tempfile
import time
import zlib
from array import array
from collections.abc import Container, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shorter prefixes are cheaper to evaluate than to save and load.
MIN_STATE_TOKENS = 32
MAGIC = b"SYMKV01\n"
# magic, token count, payload length, CRC-32 of tokens + payload
_HEADER = struct.Struct("<8sIQI")
_ENTRY = re.compile(r"^(\d{8})-([0-9a-f]{64})\.kv$")
_TMP_PREFIX = ".tmp-"
# A temporary file older than this was left by a killed writer.
_STALE_TMP_SECONDS = 3600.0
_FINGERPRINT_SAMPLE = 1024 * 1024


@dataclass(frozen=True)
class StateEntry:
    """A stored KV state: the token prefix it covers and llama.cpp's sequence state bytes."""

    n_tokens: int
    data: bytearray
    path: Path


def model_fingerprint(model_path: Path, context: str = "", adapter: Path | None = None) -> str:
    """Return a short id for a GGUF file and the context settings its states depend on.

    The GGUF header (metadata and tensor layout) and the tail of the weights identify the file
    without reading all of it; ``context`` adds whatever else makes a state incompatible
    (llama.cpp version, context length, KV cache type, adapter scale). A LoRA ``adapter``
    changes every state, so its file is part of the id too.
    """
    digest = hashlib.sha256()
    _sample_file(digest, model_path, context)
    if adapter is not None:
        _sample_file(digest, adapter, "adapter")
    return digest.hexdigest()[:32]


def _sample_file(digest: hashlib._Hash, path: Path, label: str) -> None:
    size = path.stat().st_size
    digest.update(f"{size}\0{label}\0".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_FINGERPRINT_SAMPLE))
        if size > _FINGERPRINT_SAMPLE:
            handle.seek(max(_FINGERPRINT_SAMPLE, size - _FINGERPRINT_SAMPLE))
            digest.update(handle.read(_FINGERPRINT_SAMPLE))


def tokens_digest(tokens: Sequence[int]) -> str:
    """Return the sha256 hex digest of a token sequence."""
    return hashlib.sha256(_token_bytes(tokens)).hexdigest()


def _token_bytes(tokens: Sequence[int]) -> bytes:
    return array("i", tokens).tobytes()


class StateStore:
    """KV prefix states of one model on disk, sharing a byte budget with the other models."""

    def __init__(self, root: Path, namespace: str, *, max_bytes: int) -> None:
        self.root = root
        self.directory = root / namespace
        self.max_bytes = max_bytes

    def _path(self, tokens: Sequence[int]) -> Path:
        return self.directory / f"{len(tokens):08d}-{tokens_digest(tokens)}.kv"

    def contains(self, tokens: Sequence[int]) -> bool:
        """Return whether a state for exactly these tokens is stored."""
        return self._path(tokens).is_file()

    def find(
        self,
        tokens: Sequence[int],
        *,
        min_tokens: int = 1,
        lengths: Container[int] | None = None,
    ) -> StateEntry | None:
        """Return the stored state of the longest prefix of ``tokens``.

        Args:
            tokens: the prompt's tokens.
            min_tokens: ignore shorter prefixes.
            lengths: if given, only prefixes of these lengths qualify.
        """
        stored: dict[int, list[str]] = {}
        try:
            names = os.listdir(self.directory)
        except OSError:
            return None
        for name in names:
            match = _ENTRY.match(name)
            if match is None:
                continue
            n = int(match.group(1))
            if min_tokens <= n <= len(tokens) and (lengths is None or n in lengths):
                stored.setdefault(n, []).append(match.group(2))
        for n in sorted(stored, reverse=True):
            prefix = tokens[:n]
            if tokens_digest(prefix) not in stored[n]:
                continue
            path = self._path(prefix)
            data = self._read(path, prefix)
            if data is None:
                continue
            # The file's mtime is its last use: eviction drops the oldest first.
            with contextlib.suppress(OSError):
                os.utime(path)
            return StateEntry(n_tokens=n, data=data, path=path)
        return None

    def _read(self, path: Path, tokens: Sequence[int]) -> bytearray | None:
        try:
            raw = bytearray(path.read_bytes())
        except OSError:
            return None
        expected = _token_bytes(tokens)
        start = _HEADER.size + len(expected)
        if len(raw) >= _HEADER.size:
            magic, n_tokens, length, crc = _HEADER.unpack_from(raw)
            body = memoryview(raw)[_HEADER.size :]
            if (
                magic == MAGIC
                and n_tokens == len(tokens)
                and len(raw) == start + length
                and bytes(body[: len(expected)]) == expected
                and zlib.crc32(body) == crc
            ):
                del body
                del raw[:start]
                return raw
            del body
        self.discard(path)
        return None

    def put(self, tokens: Sequence[int], data: bytes | bytearray | memoryview) -> bool:
        """Store the state for ``tokens`` atomically, then evict down to the byte budget."""
        token_bytes = _token_bytes(tokens)
        size = _HEADER.size + len(token_bytes) + len(data)
        if not tokens or size > self.max_bytes:
            return False
        crc = zlib.crc32(data, zlib.crc32(token_bytes))
        header = _HEADER.pack(MAGIC, len(tokens), len(data), crc)
        target = self._path(tokens)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(header)
                    handle.write(token_bytes)
                    handle.write(data)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return False
        self.evict(keep=target)
        return True

    def discard(self, path: Path) -> None:
        """Delete one entry (it is corrupt or llama.cpp refused it)."""
        with contextlib.suppress(OSError):
            path.unlink()

    def total_bytes(self) -> int:
        """Return the bytes used by all entries under the store's root."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        found: list[tuple[float, int, Path]] = []
        now = time.time()
        try:
            directories = [d for d in self.root.iterdir() if d.is_dir()]
        except OSError:
            return found
        for directory in directories:
            try:
                children = list(directory.iterdir())
            except OSError:
                continue
            for path in children:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if _ENTRY.match(path.name):
                    found.append((stat.st_mtime, stat.st_size, path))
                elif path.name.startswith(_TMP_PREFIX) and now - stat.st_mtime > _STALE_TMP_SECONDS:
                    self.discard(path)
        return found

    def evict(self, *, keep: Path | None = None) -> None:
        """Delete the least recently used entries until the store fits its byte budget."""
        entries = sorted(self._entries(), key=lambda entry: entry[0])
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            self.discard(path)
            total -= size


def find_prefix(store: StateStore, ids: Sequence[int], starts: Sequence[int], stable: int,
                cached: int) -> StateEntry | None:
    """Return the longest stored state of ``ids`` that ends at a batch start within ``stable``.

    Only a state longer than the ``cached`` tokens the KV cache already holds is worth loading;
    a state ends at a batch start because it was saved from a cold evaluation in those batches.
    """
    usable = {s for s in starts if MIN_STATE_TOKENS <= s <= stable and s > cached}
    if not usable:
        return None
    return store.find(ids[: max(usable)], min_tokens=min(usable), lengths=usable)
