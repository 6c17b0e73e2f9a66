"""Trees made from a commit's tree with one path set, restored or removed, through ``mktree``."""

from __future__ import annotations

from symergion.errors import GitError
from symergion.gitrepo.names import REGULAR_MODES
from symergion.gitrepo.objects import Objects


def _normal_parts(path: str) -> list[str]:
    """Split a repository path into tree entry names, refusing names git must never store.

    Raises:
        GitError: an empty, ``.``, ``..`` or ``.git`` component, or a NUL byte.
    """
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or part.lower() == ".git" or "\0" in part:
            raise GitError(
                f"cannot write {path!r} into a tree: {part!r} is not a file or directory name",
                hint="write the destination as a plain relative path such as tests/test_x.py",
            )
    return parts


def _entry_kind(mode: str) -> str:
    return {"120000": "a symlink", "160000": "a submodule", "040000": "a directory"}.get(
        mode, f"an entry of mode {mode}")


class Trees(Objects):
    """Writes new trees one path away from a commit's; the index and work tree stay untouched."""

    def tree_with_file(self, base_commit: str, path: str, blob: str, *,
                       mode: str | None = None) -> str:
        """Return a tree equal to ``base_commit``'s with ``path`` set to ``blob``.

        Args:
            base_commit: the commit whose tree is copied.
            path: where the file goes, ``/``-separated from the top of the tree.
            blob: the file's content, already stored.
            mode: ``100644`` or ``100755``; by default the mode of the file it replaces (an
                executable stays executable), else 100644.

        Raises:
            GitError: ``path`` has an empty, ``.``, ``..`` or ``.git`` component, or it (or a
                leading directory of it) is a symlink, submodule or other non-directory there.
        """
        if mode is not None and mode not in REGULAR_MODES:
            raise ValueError(f"mode must be one of {REGULAR_MODES}, not {mode!r}")
        parts = _normal_parts(path)
        return self._replace(f"{base_commit}^{{tree}}", parts, blob, mode, path)

    def _replace(self, tree: str | None, parts: list[str], blob: str, mode: str | None,
                 path: str) -> str:
        entries: list[str] = []
        current: list[str] | None = None  # [mode, kind, oid] of the entry named parts[0]
        if tree is not None:
            for item in self._run(["ls-tree", "-z", tree]).split("\0"):
                meta, _, name = item.partition("\t")
                if name == parts[0]:
                    current = meta.split()
                elif item:
                    entries.append(item)
        if len(parts) == 1:
            if current is not None and current[0] not in REGULAR_MODES:
                raise GitError(f"cannot write {path!r}: it is {_entry_kind(current[0])} there",
                               hint="point the destination at a regular file")
            file_mode = mode or (current[0] if current is not None else "100644")
            entries.append(f"{file_mode} blob {blob}\t{parts[0]}")
        else:
            if current is not None and current[1] != "tree":
                raise GitError(f"cannot write {path!r}: {parts[0]!r} is "
                               f"{_entry_kind(current[0])}, not a directory",
                               hint="point the destination at a path through real directories")
            sub = current[2] if current is not None else None
            entries.append(f"040000 tree {self._replace(sub, parts[1:], blob, mode, path)}"
                           f"\t{parts[0]}")
        listing = ("\0".join(entries) + "\0").encode("utf-8", "surrogateescape")
        return self._run(["mktree", "-z"], input=listing).strip()

    def restore_file(self, base_commit: str, path: str, origin: str) -> str:
        """Return ``base_commit``'s tree with ``path`` as it is in ``origin`` (absent if absent)."""
        entry = self.tree_entry(origin, path)
        if entry is not None and entry.kind == "blob" and entry.mode in REGULAR_MODES:
            return self.tree_with_file(base_commit, path, entry.oid, mode=entry.mode)
        return self.tree_without_file(base_commit, path)

    def tree_without_file(self, base_commit: str, path: str) -> str:
        """Return a tree equal to ``base_commit``'s without ``path`` (directories left empty go too)."""
        return self._remove(f"{base_commit}^{{tree}}", _normal_parts(path))

    def _remove(self, tree: str, parts: list[str]) -> str:
        entries: list[str] = []
        for item in self._run(["ls-tree", "-z", tree]).split("\0"):
            meta, _, name = item.partition("\t")
            if not item:
                continue
            if name != parts[0]:
                entries.append(item)
            elif len(parts) > 1 and meta.split()[1] == "tree":
                sub = self._remove(meta.split()[2], parts[1:])
                if self._run(["ls-tree", sub]).strip():
                    entries.append(f"040000 tree {sub}\t{name}")
        listing = ("\0".join(entries) + "\0").encode("utf-8", "surrogateescape") if entries else b""
        return self._run(["mktree", "-z"], input=listing).strip()
