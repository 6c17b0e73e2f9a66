"""Which repository paths a task may name as its source or destination."""

from __future__ import annotations

from pathlib import PurePosixPath


def is_safe_relative_path(path: str) -> bool:
    """Return whether a repository path stays inside the work tree and outside ``.git``."""
    if not path or "\\" in path or "\x00" in path:
        return False
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", "") for part in path.split("/")):
        return False
    return not any(part.lower() == ".git" for part in pure.parts)
