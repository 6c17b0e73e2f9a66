"""Temporary directories that name their owner, so ones left by a killed process can be removed.

A verification writes a checkout and a scratch directory under the temporary directory and
removes them when it ends. ``kill -9`` (or a power cut) ends it before that; the next run
removes what such a process left: directories whose name carries a process id and start time
that no running process has any more. A directory of a live process, of another user or of
another name is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_NAME = re.compile(r"(symergion-[a-z]+-)(\d+)\.(\d+)-")


def _start_time(pid: int) -> int | None:
    """Return a process's start time in clock ticks since boot (None when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, started: int) -> bool:
    if not Path("/proc/self/stat").exists():  # no procfs: the pid alone decides
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _start_time(pid) == started


def remove_stale(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove directories named ``<prefix><pid>.<start>-*`` whose process has ended; return them."""
    parent = parent or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or match.group(1) != prefix:
            continue
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.geteuid():
                continue
            if _alive(int(match.group(2)), int(match.group(3))):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """Yield a new temporary directory named after this process; remove stale ones first."""
    remove_stale(prefix)
    owner = f"{prefix}{os.getpid()}.{_start_time(os.getpid()) or 0}-"
    with tempfile.TemporaryDirectory(prefix=owner) as path:
        yield Path(path)
