"""Refs: listed in batches and moved in one compare-and-swap transaction; worktrees' branches."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from symergion.errors import GitError
from symergion.gitrepo.names import ZERO_OID
from symergion.gitrepo.runner import GitRunner, hint_for


class Refs(GitRunner):
    """Reads refs and moves them only when each still has the value it was read with."""

    def list_refs(self, *patterns: str) -> dict[str, str]:
        """Return refs matching ``patterns`` (for-each-ref prefixes) mapped to their objects."""
        out = self._run(["for-each-ref", "--format=%(objectname) %(refname)", *patterns])
        return {name: oid for oid, _, name in (line.partition(" ") for line in out.splitlines())}

    def refs_containing(self, commit: str, refs: Iterable[str]) -> set[str]:
        """Return which of ``refs`` contain ``commit`` in their history (one git call)."""
        wanted = list(refs)
        if not wanted:
            return set()
        out = self._run(["for-each-ref", "--format=%(refname)", f"--contains={commit}", *wanted])
        return set(out.split()) & set(wanted)

    def current_branch(self) -> str | None:
        """Return the branch HEAD points to, or None when detached."""
        out = self._run(["symbolic-ref", "--quiet", "--short", "HEAD"], check=False).strip()
        return out or None

    def checked_out_branches(self) -> set[str]:
        """Return the branches checked out in any worktree of this repository."""
        out = self._run(["worktree", "list", "--porcelain"], check=False)
        prefix = "branch refs/heads/"
        return {line[len(prefix):] for line in out.splitlines() if line.startswith(prefix)}

    def check_branch_name(self, name: str) -> bool:
        """Return whether git accepts ``name`` as a branch name."""
        return self._execute(["check-ref-format", "--branch", name])[0] == 0

    def update_refs(self, updates: Sequence[tuple[str, str, str]], message: str) -> bool:
        """Apply ``(ref, new, old)`` updates in one atomic transaction.

        ``new`` or ``old`` may be ZERO_OID (delete / must not exist). Returns False, changing
        nothing, when any ref no longer has its expected old value.
        """
        lines = ["start"]
        for ref, new, old in updates:
            # ``create``/``delete`` instead of a null id: git's is as long as the repository's
            # object ids (SHA-1 or SHA-256).
            if new == ZERO_OID:
                lines.append(f"delete {ref} {old}")
            elif old == ZERO_OID:
                lines.append(f"create {ref} {new}")
            else:
                lines.append(f"update {ref} {new} {old}")
        lines += ["prepare", "commit"]
        # git runs with LC_ALL=C: the messages matched below are git's English ones.
        status, _out, err = self._execute(["update-ref", "--stdin", "-m", message],
                                          input=("\n".join(lines) + "\n").encode())
        if status == 0:
            return True
        locked = re.search(r"Unable to create '([^']+)'", err)
        if locked:
            # Not a moved ref but a lock file: another git command is updating the same ref, or
            # one that crashed left its lock behind. Retrying at once cannot help.
            raise GitError(
                f"git update-ref failed: {locked.group(1)} exists",
                hint="another git command is updating this ref; if none is running, a crashed "
                f"one left the lock behind: delete {locked.group(1)}",
            )
        if "cannot create" in err:
            raise GitError(f"git update-ref failed: {err.strip().splitlines()[0]}",
                           hint="rename or delete the ref that is in the way")
        if "expected" in err or "exists" in err or "cannot lock ref" in err or "is at" in err:
            return False
        raise GitError(f"git update-ref failed: {err.strip()}", hint=hint_for(["update-ref"], err))
