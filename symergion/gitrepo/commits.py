"""Commits: written with ``commit-tree``, and read along their ancestry (logs, bases, reach)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from symergion.errors import GitError
from symergion.gitrepo.runner import GitRunner, hint_for


class Commits(GitRunner):
    """Writes commit objects and reads commits' messages, parents and ancestry."""

    def commit_tree(
        self, tree: str, parents: Sequence[str], message: str, *, author: str, email: str
    ) -> str:
        """Create a commit object authored by ``author`` and return its id."""
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": email,
        }
        # -F - keeps the message byte-exact (no shell quoting, no comment stripping).
        return self._run([*args, "-F", "-"], input=message.encode(), env=env).strip()

    def commit_message(self, oid: str) -> str:
        """Return a commit's full message."""
        return self._run(["log", "-1", "--format=%B", oid])

    def commit_parents(self, oid: str) -> list[str]:
        """Return a commit's parents."""
        return self._run(["rev-list", "--parents", "-n", "1", oid]).split()[1:]

    def rev_parse(self, rev: str) -> str:
        """Resolve a revision to a commit id."""
        try:
            return self._run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).strip()
        except GitError:
            raise GitError(f"{rev!r} does not name a commit",
                           hint="pass a branch, tag or commit that exists") from None

    def first_parent_log(self, tip: str, limit: int = 200) -> list[tuple[str, str]]:
        """Return (commit, message) pairs along the first-parent chain, newest first."""
        out = self._run(["log", "--first-parent", f"-n{limit}", "--format=%H%x00%B%x1e", tip])
        pairs = []
        for record in out.split("\x1e"):
            record = record.lstrip("\n")
            if record:
                oid, _, message = record.partition("\x00")
                pairs.append((oid, message))
        return pairs

    def log_records(
        self, tip: str, exclude: Sequence[str] = (), *, limit: int = 0
    ) -> list[tuple[str, list[str], int, str]]:
        """Return ``(commit, parents, committer time, message)`` along the first-parent chain.

        Newest first; commits reachable from any of ``exclude`` are left out.
        """
        args = ["log", "--first-parent", "--format=%H%x00%P%x00%ct%x00%B%x1e"]
        if limit:
            args.append(f"-n{limit}")
        out = self._run([*args, tip, *(f"^{e}" for e in exclude), "--"])
        records = []
        for record in out.split("\x1e"):
            record = record.lstrip("\n")
            if record:
                oid, parents, stamp, message = record.split("\x00", 3)
                records.append((oid, parents.split(), int(stamp), message))
        return records

    def commit_time(self, oid: str) -> int:
        """Return a commit's committer time (seconds since the epoch)."""
        return int(self._run(["log", "-1", "--format=%ct", oid, "--"]).strip())

    def changed_lines(self, old: str, new: str) -> int:
        """Return the lines added plus deleted between two commits' trees (binary files: 0)."""
        out = self._run(["diff", "--numstat", "--no-renames", old, new, "--"])
        total = 0
        for line in out.splitlines():
            added, deleted, _path = line.split("\t", 2)
            if added != "-":
                total += int(added) + int(deleted)
        return total

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Return whether ``ancestor`` is reachable from ``descendant``."""
        args = ["merge-base", "--is-ancestor", ancestor, descendant]
        status, _out, err = self._execute(args)
        if status not in (0, 1):
            raise GitError(f"git merge-base failed: {err.strip()}", hint=hint_for(args, err))
        return status == 0

    def merge_base(self, first: str, second: str) -> str | None:
        """Return the best common ancestor of two commits, or None when they share none."""
        out = self._run(["merge-base", first, second], check=False).strip()
        return out or None

    def reachable(self, tips: Iterable[str], exclude: str) -> set[str]:
        """Return the commits reachable from ``tips`` but not from ``exclude``."""
        wanted = list(dict.fromkeys(tips))
        if not wanted:
            return set()
        return set(self._run(["rev-list", "--stdin", f"^{exclude}"],
                             input="\n".join(wanted).encode() + b"\n").split())

    def rev_list(self, include: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
        """Return commits reachable from ``include`` but not from ``exclude``."""
        tips = list(include)
        if not tips:
            return []
        return self._run(["rev-list", *tips, "--not", *exclude, "--"]).split()
