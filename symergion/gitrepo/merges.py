"""Three-way merges of two commits' trees with no index or work tree of the user's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from symergion.errors import GitError
from symergion.gitrepo.commits import Commits
from symergion.gitrepo.names import REGULAR_MODES
from symergion.gitrepo.objects import Objects
from symergion.gitrepo.runner import hint_for


@dataclass(frozen=True)
class Merge:
    """A three-way merge of two commits: its tree, or the paths that conflict (tree "")."""

    tree: str
    conflicts: tuple[str, ...] = ()


class Merges(Commits, Objects):
    """Merges with ``merge-tree --write-tree``, or in a private index on a git before 2.38."""

    # Whether this git has ``merge-tree --write-tree``: asked once per repository, on first use.
    _merge_tree: bool | None = None

    def merge(self, ours: str, theirs: str, *, replaced: str = "") -> Merge:
        """Merge two commits' trees three-way (their merge base as the base), touching no index.

        Args:
            ours: one commit (a model branch's tip).
            theirs: the other (the task branch's tip).
            replaced: a path the caller overwrites in the result: a conflict there is no
                conflict (its content in the tree is then either side's or git's markers).

        Returns:
            The merged tree, or ``Merge("", paths)`` naming what conflicts; commits without a
            common ancestor conflict as a whole (``("(no common history)",)``).
        """
        if self._has_merge_tree():
            status, out, err = self._execute(["merge-tree", "--write-tree", "--name-only",
                                              "--no-messages", "-z", ours, theirs])
            if status in (0, 1):
                tree, *paths = out.decode("utf-8", "surrogateescape").split("\0")
                conflicts = tuple(dict.fromkeys(p for p in paths if p and p != replaced))
                return Merge("" if conflicts else tree, conflicts)
            if "unrelated histories" in err:
                return Merge("", ("(no common history)",))
            raise GitError(f"git merge-tree failed: {err.strip()}", hint=hint_for(["merge-tree"], err))
        return self._merge_in_private_index(ours, theirs, replaced)

    def _has_merge_tree(self) -> bool:
        """Return whether this git merges without a work tree (``merge-tree --write-tree``, 2.38+)."""
        if self._merge_tree is None:
            out = self._run(["version"]).split()
            numbers = [int(n) for n in re.findall(r"\d+", out[2] if len(out) > 2 else "")[:2]]
            self._merge_tree = numbers >= [2, 38]
        return self._merge_tree

    def _merge_in_private_index(self, ours: str, theirs: str, replaced: str) -> Merge:
        """Merge as ``merge-tree --write-tree`` does, for a git before 2.38: ``read-tree -m`` in
        a private index, then ``merge-file`` for each file both sides changed."""
        import tempfile

        base = self.merge_base(ours, theirs)
        if base is None:
            return Merge("", ("(no common history)",))
        with tempfile.TemporaryDirectory(prefix="symergion-merge-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self._run(["read-tree", "-i", "-m", "--aggressive", base, ours, theirs], env=env)
            stages: dict[str, dict[str, tuple[str, str]]] = {}
            for item in self._run(["ls-files", "-u", "-z"], env=env).split("\0"):
                meta, _, path = item.partition("\t")
                if item:
                    mode, oid, stage = meta.split()
                    stages.setdefault(path, {})[stage] = (mode, oid)
            conflicts: list[str] = []
            for path, entry in stages.items():
                merged = self._merge_file(entry, Path(scratch))
                if merged is not None:
                    self._run(["update-index", "--cacheinfo", f"{merged[0]},{merged[1]},{path}"],
                              env=env)
                elif path == replaced:
                    self._run(["update-index", "--force-remove", "--", path], env=env)
                else:
                    conflicts.append(path)
            if conflicts:
                return Merge("", tuple(conflicts))
            return Merge(self._run(["write-tree"], env=env).strip())

    def _merge_file(self, entry: dict[str, tuple[str, str]], scratch: Path
                    ) -> tuple[str, str] | None:
        """Return (mode, blob) of a file both sides changed, merged line by line; None when
        it conflicts or is not a regular file on all three sides."""
        if set(entry) != {"1", "2", "3"} or {mode for mode, _ in entry.values()} - set(REGULAR_MODES):
            return None
        if entry["2"][0] != entry["3"][0]:
            return None
        names = []
        for stage in ("2", "1", "3"):  # merge-file takes: current, base, other
            name = scratch / f"stage{stage}"
            name.write_bytes(self.read_blob_bytes(entry[stage][1]))
            names.append(str(name))
        status, out, _err = self._execute(["merge-file", "-p", *names])
        if status != 0:
            return None
        return entry["2"][0], self.write_blob(out)
