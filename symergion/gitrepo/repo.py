"""`GitRepo`: one repository, with every git operation symergion needs.

Nothing here touches the user's work tree, index or HEAD: objects are written with
``hash-object``/``mktree``/``commit-tree`` and refs move in one ``update-ref --stdin``
transaction that verifies every old value, so a user commit that races in is never lost.
"""

from __future__ import annotations

from types import TracebackType

from symergion.gitrepo.merges import Merges
from symergion.gitrepo.notes import Notes
from symergion.gitrepo.refs import Refs
from symergion.gitrepo.remotes import Remotes
from symergion.gitrepo.trees import Trees


class GitRepo(Notes, Trees, Merges, Refs, Remotes):
    """A repository, driven through git's command line with GitPython's command layer.

    Close it (or use it as a context manager) when done; it holds no process between commands.
    """

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
