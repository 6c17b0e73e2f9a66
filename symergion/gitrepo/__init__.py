"""The only package that runs git; its modules are re-exported here for the callers."""

from __future__ import annotations

from symergion.gitrepo.runner import (
    ARCHIVE_REFS,
    MAX_FILE_BYTES,
    NOTES_REF,
    REMOTE_NOTES_REFS,
    SHADOW_REFS,
    SYMERGION_REFS,
    ZERO_OID,
    Entry,
    GitRepo,
    Merge,
    Note,
    ProgressCallback,
    Snapshot,
    TransferProgress,
    git_running,
    is_null_oid,
    parse_progress,
)

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
]
