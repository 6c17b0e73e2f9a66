"""Git's objects: blobs and tree entries read in batches, blobs written (never the index)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from symergion.gitrepo.runner import GitRunner


@dataclass(frozen=True)
class Entry:
    """One entry of a tree listing."""

    mode: str
    kind: str
    oid: str
    size: int


class Objects(GitRunner):
    """Reads and writes git's objects by id, or by commit and path."""

    def read_blobs(self, oids: Iterable[str]) -> dict[str, str]:
        """Read many blobs' text with one ``cat-file --batch``."""
        return {oid: data.decode("utf-8", "replace") for oid, data in self.read_objects(oids).items()}

    def read_objects(self, oids: Iterable[str]) -> dict[str, bytes]:
        """Read many objects' raw content with one ``cat-file --batch``; missing ones are left out."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        raw = self._run_bytes(["cat-file", "--batch"], input="\n".join(wanted).encode() + b"\n")
        result: dict[str, bytes] = {}
        pos = 0
        for oid in wanted:
            end = raw.index(b"\n", pos)
            header = raw[pos:end].split()
            pos = end + 1
            if len(header) < 3 or header[1] == b"missing":
                continue
            size = int(header[2])
            result[oid] = raw[pos : pos + size]
            pos += size + 1
        return result

    def read_blob_bytes(self, oid: str) -> bytes:
        """Return a blob's content."""
        return self._run_bytes(["cat-file", "blob", oid])

    def read_paths(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        """Read the blobs at ``(commit, path)`` with one ``cat-file --batch``; others are left out."""
        pairs = [p for p in dict.fromkeys(wanted) if "\n" not in p[1]]
        if not pairs:
            return {}
        names = "".join(f"{commit}:{path}\n" for commit, path in pairs).encode()
        raw = self._run_bytes(["cat-file", "--batch"], input=names)
        result: dict[tuple[str, str], bytes] = {}
        pos = 0
        for pair in pairs:
            end = raw.index(b"\n", pos)
            line = raw[pos:end]
            pos = end + 1
            if line.endswith((b" missing", b" ambiguous")):
                continue
            _oid, kind, size_text = line.split()
            size = int(size_text)
            if kind == b"blob":
                result[pair] = raw[pos : pos + size]
            pos += size + 1
        return result

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its id."""
        return self._run(["hash-object", "-w", "--stdin"], input=data).strip()

    def tree_of(self, commit: str) -> str:
        """Return the tree id of a commit."""
        return self._run(["rev-parse", "--verify", f"{commit}^{{tree}}"]).strip()

    def tree_entry(self, commit: str, path: str) -> Entry | None:
        """Return the entry at ``path`` in a commit's tree, or None if there is none."""
        out = self._run(["ls-tree", "-l", "-z", "--full-tree", commit, "--", path])
        for item in out.split("\0"):
            if not item:
                continue
            meta, _, name = item.partition("\t")
            if name != path:
                continue
            mode, kind, oid, size = meta.split()
            return Entry(mode=mode, kind=kind, oid=oid, size=int(size) if size != "-" else 0)
        return None

    def tree_entries(self, commit: str, paths: Iterable[str]) -> dict[str, Entry]:
        """Return the entries of ``paths`` in a commit's tree (missing paths left out)."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            return {}
        # -t lists the trees on the way to a path too: a directory named as a path shows up.
        out = self._run(["ls-tree", "-t", "-l", "-z", "--full-tree", commit, "--", *wanted])
        found: dict[str, Entry] = {}
        for item in out.split("\0"):
            meta, _, name = item.partition("\t")
            if item and name in wanted:
                mode, kind, oid, size = meta.split()
                found[name] = Entry(mode, kind, oid, int(size) if size != "-" else 0)
        return found

    def path_parents_kinds(self, commit: str, path: str) -> list[tuple[str, Entry | None]]:
        """Return each leading directory of ``path`` with its tree entry (to spot symlinks)."""
        parts = path.split("/")
        return [("/".join(parts[:i]), self.tree_entry(commit, "/".join(parts[:i])))
                for i in range(1, len(parts))]
