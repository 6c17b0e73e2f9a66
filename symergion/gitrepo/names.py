"""The refs and object names symergion uses in a repository, shared by the package's modules."""

from __future__ import annotations

# "No object" in ``update_refs``: a ref that must not exist yet, or one to delete. It is never
# handed to git as an object id (``create``/``delete`` say it instead), so the same value works in
# SHA-1 and SHA-256 repositories. git's own null ids (in ``log --raw``) are ``is_null_oid``.
ZERO_OID = "0" * 40
# symergion reads and writes its tasks in this notes ref, whatever core.notesRef or GIT_NOTES_REF
# say: the tasks are the repository's state, and a shell variable or a config line must not make
# every task look ended (nor start a pass from another set of notes). A different configured
# ref is reported (``configured_notes_ref``), since plain ``git notes`` would write there.
NOTES_REF = "refs/notes/commits"
SYMERGION_REFS = "refs/symergion"
ARCHIVE_REFS = f"{SYMERGION_REFS}/archive"
SHADOW_REFS = f"{SYMERGION_REFS}/tasks"
REMOTE_NOTES_REFS = f"{SYMERGION_REFS}/remote-notes"
MAX_FILE_BYTES = 1024 * 1024
REGULAR_MODES = ("100644", "100755")


def is_null_oid(oid: str) -> bool:
    """Return whether ``oid`` is git's null object id (all zeros, of any hash length)."""
    return bool(oid) and set(oid) == {"0"}
