"""A throwaway checkout: a commit's tree written into a new directory, from git's object store.

The tree is read with ``cat-file --batch`` (one call per directory level), so the user's work
tree, index and worktree list are never involved, and the files are exactly the commit's:
no ``.gitattributes`` export rules, no hooks, no filters. Submodules are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from symergion.errors import GitError
from symergion.gitrepo import GitRepo

_FILE_MODES = {b"100644": 0o644, b"100755": 0o755}
_SYMLINK, _TREE, _SUBMODULE = b"120000", b"40000", b"160000"


def export_commit(repo: GitRepo, commit: str, target: Path) -> None:
    """Write ``commit``'s files into the empty or missing directory ``target``."""
    oid = repo.rev_parse(commit)
    header = repo.read_objects([oid]).get(oid, b"")
    if not header.startswith(b"tree "):
        raise GitError(f"commit {oid} cannot be read", hint="run `git fsck`; the repository may be damaged")
    tree = header[5 : header.index(b"\n")].decode()
    width = len(tree) // 2  # bytes of a binary object id: 20 for SHA-1, 32 for SHA-256
    target.mkdir(parents=True, exist_ok=True)
    level: list[tuple[str, Path]] = [(tree, target)]
    while level:
        raw = repo.read_objects(oid for oid, _ in level)
        files: list[tuple[str, Path, int]] = []
        links: list[tuple[str, Path]] = []
        next_level: list[tuple[str, Path]] = []
        for oid, directory in level:
            if oid not in raw:
                raise GitError(f"tree {oid} of {commit} is missing from the repository",
                               hint="run `git fsck`; the repository may be shallow or damaged")
            for mode, name, child in _entries(raw[oid], width):
                if name in (".", "..") or "/" in name or name == ".git":
                    continue  # git refuses such trees too; never write outside the checkout
                path = directory / name
                if mode == _TREE:
                    path.mkdir()
                    next_level.append((child, path))
                elif mode == _SYMLINK:
                    links.append((child, path))
                elif mode in _FILE_MODES:
                    files.append((child, path, _FILE_MODES[mode]))
                # _SUBMODULE: a commit of another repository, not in this object store
        blobs = repo.read_objects([oid for oid, _, _ in files] + [oid for oid, _ in links])
        for oid, path, perms in files:
            path.write_bytes(blobs[oid])
            os.chmod(path, perms)
        for oid, path in links:
            os.symlink(blobs[oid], path)
        level = next_level


def _entries(data: bytes, width: int) -> list[tuple[bytes, str, str]]:
    """Parse a raw tree object into (mode, name, object id) entries."""
    entries = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space]
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        oid = data[nul + 1 : nul + 1 + width].hex()
        entries.append((mode, name, oid))
        pos = nul + 1 + width
    return entries
