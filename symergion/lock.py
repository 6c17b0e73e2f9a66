"""The single-instance lock: one sync or watch per repository, released when its process dies."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from symergion.errors import LockedError


@contextmanager
def repo_lock(common_dir: Path) -> Iterator[None]:
    """Hold ``<git common dir>/symergion/lock`` for the duration of the block.

    ``flock`` locks belong to the open file, so the kernel releases them when the process
    exits, however it exits: a killed holder never leaves a stale lock behind.

    Raises:
        LockedError: another live process holds the lock; the message names its pid.
    """
    directory = common_dir / "symergion"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(
                f"another symergion (pid {holder}) is already working on this repository",
                hint="wait for it to finish, or stop it (e.g. kill " + holder + ")",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
