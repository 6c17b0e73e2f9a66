"""The response store: finished files and reasoning, keyed by everything that made them.

It is a cache, never state: deleting it costs time, never correctness. A key covers the model
file's fingerprint, the exact prompt, sampling, context and budget settings and the finisher
version, so a changed model, prompt or setting can never be served a stale response. A store
that cannot be opened because it is corrupt is moved aside and rebuilt; one that another
process holds locked is waited for, never moved aside; on a full disk the pass goes on without
caching (the store is healthy, and its answers wait for checked-out branches).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from symergion.errors import CacheError


def response_key(**parts: Any) -> str:
    """Return a stable key for the given parts (order-independent, JSON-canonical)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseStore:
    """A bounded persistent mapping from response keys to JSON-able records.

    Args:
        directory: where the store lives.
        max_entries: the config's ``response_cache_size``; the oldest entries are evicted.
    """

    def __init__(self, directory: Path, max_entries: int, *, timeout: float = 60.0) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self.timeout = timeout
        self._cache: Any = None
        self.rebuilt: Path | None = None  # where a corrupt store was moved aside, if it was
        self.unavailable: str | None = None  # why this pass stopped caching (a full disk)

    def open(self) -> None:
        """Open the store now, so that an unusable cache directory stops a pass before any work.

        Raises:
            CacheError: the directory cannot be created or written.
        """
        self._open()

    def _open(self) -> Any:
        if self._cache is not None or self.unavailable is not None:
            return self._cache
        import diskcache

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache directory {self.directory}: {exc.strerror}",
                hint="make it writable, or point SYMERGION_CACHE_DIR at a writable directory",
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise CacheError(
                f"the cache directory {self.directory} is not writable",
                hint="fix its permissions, or point SYMERGION_CACHE_DIR elsewhere",
            )
        cache_class: Any = diskcache.Cache  # its stubs say int; sqlite takes a float timeout
        try:
            self._cache = cache_class(
                str(self.directory), eviction_policy="least-recently-stored", size_limit=2**34,
                timeout=self.timeout,
            )
            self._cache.get("__probe__")
        except sqlite3.OperationalError as exc:
            self._cache = None
            if _busy(exc):
                raise self._locked() from None
            if _unwritable(exc):
                return self._disable(exc)
            self._cache = self._rebuild(diskcache)
        except (sqlite3.DatabaseError, OSError) as exc:
            if _unwritable(exc):
                return self._disable(exc)
            self._cache = self._rebuild(diskcache)
        return self._cache

    def _disable(self, exc: BaseException) -> None:
        # A full disk is not corruption: moving the store aside would lose the answers waiting
        # for checked-out branches. The pass goes on without caching; the next one retries.
        if self._cache is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                self._cache.close()
        self._cache = None
        self.unavailable = f"the response cache at {self.directory} cannot be written ({exc})"

    def _locked(self) -> CacheError:
        # Another process (a second symergion, a backup tool) holds the database: the store is
        # fine, so it is waited for (sqlite's busy timeout) and never moved aside.
        return CacheError(
            f"the response cache at {self.directory} stayed locked by another process for "
            f"{self.timeout:.0f}s", hint="wait for the other process to finish, then sync again")

    def _rebuild(self, diskcache: Any) -> Any:
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{int(time.time())}")
        try:
            self.directory.rename(aside)
            self.directory.mkdir(parents=True)
            self.rebuilt = aside
            return diskcache.Cache(
                str(self.directory), eviction_policy="least-recently-stored", size_limit=2**34
            )
        except (OSError, sqlite3.DatabaseError) as exc:
            raise CacheError(
                f"the cache at {self.directory} is corrupt and could not be rebuilt: {exc}",
                hint=f"delete {self.directory}; it is only a cache",
            ) from None

    @property
    def moved_aside(self) -> list[Path]:
        """Return earlier corrupt stores that were moved aside."""
        return sorted(self.directory.parent.glob(f"{self.directory.name}.corrupt-*"))

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the record for ``key``, or None."""
        cache = self._open()
        if cache is None:
            return None
        try:
            value = cache.get(key)
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise self._locked() from None
            if _unwritable(exc):
                self._disable(exc)
                return None
            self._cache = self._rebuild(__import__("diskcache"))
            return None
        except sqlite3.DatabaseError:
            self._cache = self._rebuild(__import__("diskcache"))
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` and evict the oldest records beyond ``max_entries``."""
        cache = self._open()
        if cache is None:
            return
        try:
            cache.set(key, record)
            while len(cache) > self.max_entries:
                try:
                    # With "least-recently-stored" eviction the first item is the oldest stored.
                    oldest, _ = cache.peekitem(last=False)
                except KeyError:
                    break
                cache.delete(oldest)
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise self._locked() from None
            if not _unwritable(exc):
                raise
            self._disable(exc)
        except OSError as exc:  # a large value is a file of its own
            if not _unwritable(exc):
                raise
            self._disable(exc)

    def __len__(self) -> int:
        cache = self._open()
        return len(cache) if cache is not None else 0

    def close(self) -> None:
        """Close the store."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None


def _unwritable(exc: BaseException) -> bool:
    """Return whether a store operation failed for want of space or a failing disk: the store
    is not corrupt then (sqlite reports a full disk as "database or disk is full", or as a
    "disk I/O error" when it cannot grow its journal)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
    text = str(exc).lower()
    return "full" in text or "disk i/o error" in text


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Return whether sqlite failed because another connection holds a lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text
