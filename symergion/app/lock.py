"""The single-instance lock: one sync or watch per repository, released when its process dies."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from symergion.errors import GitError, LockedError


def _unusable(path: Path, exc: OSError) -> GitError:
    """Return the error for a lock file that cannot be made: what stopped it, and the fix."""
    if exc.errno == errno.EROFS:
        hint = ("the repository is on a read-only file system: run symergion in a writable "
                "clone (`git clone` it elsewhere), or remount it read-write")
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"the disk holding {path.parent} is full: free some space, then run it again"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = (f"you may not write to {path.parent}: run symergion as the repository's owner, "
                "or fix the permissions of its .git directory")
    else:
        hint = f"check that {path.parent} is a writable directory"
    return GitError(f"cannot create the lock file {path}: {exc.strerror or exc}", hint=hint)


@contextmanager
def repo_lock(common_dir: Path) -> Iterator[None]:
    """Hold ``<git common dir>/symergion/lock`` for the duration of the block.

    ``flock`` locks belong to the open file, so the kernel releases them when the process
    exits, however it exits: a killed holder never leaves a stale lock behind.

    Raises:
        LockedError: another live process holds the lock; the message names its pid.
    """
    directory = common_dir / "symergion"
    path = directory / "lock"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unusable(path, exc) from None
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
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise _unusable(path, exc) from None
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
