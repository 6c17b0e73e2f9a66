"""The only package that runs git: snapshots, notes, plumbing commits, compare-and-swap.

`GitRepo` (``repo.py``) is one object made of a part per concern: the runner of the git
process (``runner.py``), objects, commits, trees, merges, refs, notes and remotes. Callers
import from here: most need only `GitRepo` and the ref names, and the parts are its pieces.
"""

from __future__ import annotations

from symergion.gitrepo.merges import Merge
from symergion.gitrepo.names import (
    ARCHIVE_REFS,
    MAX_FILE_BYTES,
    NOTES_REF,
    REMOTE_NOTES_REFS,
    SHADOW_REFS,
    SYMERGION_REFS,
    ZERO_OID,
    is_null_oid,
)
from symergion.gitrepo.notes import Note, Snapshot
from symergion.gitrepo.objects import Entry
from symergion.gitrepo.remotes import ProgressCallback, TransferProgress, parse_progress
from symergion.gitrepo.repo import GitRepo
from symergion.gitrepo.runner import git_running, run_git

__all__ = [
    "ARCHIVE_REFS",
    "MAX_FILE_BYTES",
    "NOTES_REF",
    "REMOTE_NOTES_REFS",
    "SHADOW_REFS",
    "SYMERGION_REFS",
    "ZERO_OID",
    "Entry",
    "GitRepo",
    "Merge",
    "Note",
    "ProgressCallback",
    "Snapshot",
    "TransferProgress",
    "git_running",
    "is_null_oid",
    "parse_progress",
    "run_git",
]
