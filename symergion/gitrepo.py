"""The only module that talks to git: snapshots, notes, plumbing commits, compare-and-swap.

Nothing here touches the user's work tree, index or HEAD: objects are written with
``hash-object``/``mktree``/``commit-tree`` and refs move in one ``update-ref --stdin``
transaction that verifies every old value, so a user commit that races in is never lost.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from symergion.errors import GitError

ZERO_OID = "0" * 40
SYMERGION_REFS = "refs/symergion"
ARCHIVE_REFS = f"{SYMERGION_REFS}/archive"
SHADOW_REFS = f"{SYMERGION_REFS}/tasks"
MAX_FILE_BYTES = 1024 * 1024

# How many git commands this process is running. A stop request (SIGTERM, Ctrl-C) waits for
# them: killing git inside a ref transaction leaves ``.lock`` files that block those refs.
_running = 0


def git_running() -> bool:
    """Return whether a git command started by this process is still running."""
    return _running > 0


def _spawn(
    args: Sequence[str],
    *,
    cwd: Path,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run git once; every git call goes through here."""
    global _running
    full_env = dict(os.environ)
    # A git hook or the user's environment may point git elsewhere; this repo is the target.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        full_env.pop(var, None)
    if env:
        full_env.update(env)
    _running += 1
    try:
        return subprocess.run(["git", *args], input=input, capture_output=True, cwd=cwd,
                              env=full_env, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed", hint="install git and put it on PATH") from None
    finally:
        _running -= 1


@dataclass(frozen=True)
class Note:
    """One git note: the object it annotates, its blob and its text."""

    target: str
    blob: str
    text: str


@dataclass(frozen=True)
class Entry:
    """One entry of a tree listing."""

    mode: str
    kind: str
    oid: str
    size: int


@dataclass
class Snapshot:
    """The refs and notes symergion derives everything from, read at one moment."""

    refs: dict[str, str]
    notes_ref: str
    notes: dict[str, Note]
    note_order: dict[str, int] = field(default_factory=dict)

    def branch(self, name: str) -> str | None:
        """Return the commit a local branch points to, or None."""
        return self.refs.get(f"refs/heads/{name}")

    def branches(self) -> dict[str, str]:
        """Return local branch names mapped to their commits."""
        prefix = "refs/heads/"
        return {r[len(prefix):]: oid for r, oid in self.refs.items() if r.startswith(prefix)}


class GitRepo:
    """A repository, driven through the git command line."""

    def __init__(self, path: str | Path = ".") -> None:
        start = Path(path)
        if not start.exists():
            raise GitError(f"{start} does not exist", hint="pass an existing repository with --repo")
        self._cwd = start if start.is_dir() else start.parent
        try:
            top = self._run(["rev-parse", "--absolute-git-dir", "--git-common-dir",
                             "--is-bare-repository"], cwd=self._cwd).splitlines()
        except GitError:
            raise GitError(
                f"{start} is not inside a git repository",
                hint="run symergion inside a repository, or pass one with --repo",
            ) from None
        self.git_dir = Path(top[0])
        common = Path(top[1])
        self.common_dir = common if common.is_absolute() else (self._cwd / common).resolve()
        self.bare = top[2] == "true"

    # -- running git -------------------------------------------------------------------

    def _run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> str:
        return self._run_bytes(args, input=input, env=env, cwd=cwd, check=check).decode(
            "utf-8", "surrogateescape"
        )

    def _run_bytes(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> bytes:
        proc = _spawn(args, cwd=cwd or self._cwd, input=input, env=env)
        if check and proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip()
            raise GitError(f"git {args[0]} failed: {message}")
        return proc.stdout

    # -- reading -------------------------------------------------------------------------

    def notes_ref(self) -> str:
        """Return the notes ref in use (honours core.notesRef and GIT_NOTES_REF)."""
        return self._run(["notes", "get-ref"]).strip()

    def snapshot(self) -> Snapshot:
        """Read refs, notes and the order notes were added in, with a handful of git calls."""
        notes_ref = self.notes_ref()
        refs: dict[str, str] = {}
        out = self._run(["for-each-ref", "--format=%(objectname) %(refname)",
                         "refs/heads", SYMERGION_REFS, notes_ref])
        for line in out.splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        notes: dict[str, Note] = {}
        if notes_ref in refs:
            pairs = [line.split() for line in self._run(["notes", "list"]).splitlines()]
            texts = self.read_blobs([blob for blob, _ in pairs])
            for blob, target in pairs:
                notes[target] = Note(target=target, blob=blob, text=texts.get(blob, ""))
        snap = Snapshot(refs=refs, notes_ref=notes_ref, notes=notes)
        if notes:
            snap.note_order = self._note_order(notes_ref, notes)
        return snap

    def _note_order(self, notes_ref: str, notes: dict[str, Note]) -> dict[str, int]:
        """Rank notes by when they were last added, from the notes ref history.

        Notes whose history was rewritten or pruned rank after the known ones, by target.
        """
        out = self._run(["log", "--reverse", "--raw", "--no-renames", "--no-abbrev",
                         "--format=@%H", notes_ref], check=False)
        order: dict[str, int] = {}
        step = 0
        for line in out.splitlines():
            if line.startswith("@"):
                step += 1
            elif line.startswith(":"):
                meta, _, path = line.partition("\t")
                status = meta.split()[-1]
                target = path.replace("/", "")
                if status == "A":
                    order[target] = step
        last = step + 1
        return {t: order.get(t, last) for t in notes}

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

    def commit_message(self, oid: str) -> str:
        """Return a commit's full message."""
        return self._run(["log", "-1", "--format=%B", oid])

    def commit_parents(self, oid: str) -> list[str]:
        """Return a commit's parents."""
        return self._run(["rev-list", "--parents", "-n", "1", oid]).split()[1:]

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

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Return whether ``ancestor`` is reachable from ``descendant``."""
        args = ["merge-base", "--is-ancestor", ancestor, descendant]
        proc = _spawn(args, cwd=self._cwd)
        if proc.returncode not in (0, 1):
            raise GitError(f"git merge-base failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.returncode == 0

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

    def path_parents_kinds(self, commit: str, path: str) -> list[tuple[str, Entry | None]]:
        """Return each leading directory of ``path`` with its tree entry (to spot symlinks)."""
        parts = path.split("/")
        return [("/".join(parts[:i]), self.tree_entry(commit, "/".join(parts[:i])))
                for i in range(1, len(parts))]

    def read_blob_bytes(self, oid: str) -> bytes:
        """Return a blob's content."""
        return self._run_bytes(["cat-file", "blob", oid])

    def checked_out_branches(self) -> set[str]:
        """Return the branches checked out in any worktree of this repository."""
        out = self._run(["worktree", "list", "--porcelain"], check=False)
        prefix = "branch refs/heads/"
        return {line[len(prefix):] for line in out.splitlines() if line.startswith(prefix)}

    def check_branch_name(self, name: str) -> bool:
        """Return whether git accepts ``name`` as a branch name."""
        proc = _spawn(["check-ref-format", "--branch", name], cwd=self._cwd)
        return proc.returncode == 0

    def rev_parse(self, rev: str) -> str:
        """Resolve a revision to a commit id."""
        try:
            return self._run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).strip()
        except GitError:
            raise GitError(f"{rev!r} does not name a commit",
                           hint="pass a branch, tag or commit that exists") from None

    def current_branch(self) -> str | None:
        """Return the branch HEAD points to, or None when detached."""
        out = self._run(["symbolic-ref", "--quiet", "--short", "HEAD"], check=False).strip()
        return out or None

    # -- writing objects (never the index or work tree) ----------------------------------

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its id."""
        return self._run(["hash-object", "-w", "--stdin"], input=data).strip()

    def tree_with_file(self, base_commit: str, path: str, blob: str) -> str:
        """Return a tree equal to ``base_commit``'s with ``path`` set to ``blob`` (mode 100644)."""
        parts = path.split("/")
        return self._replace(f"{base_commit}^{{tree}}", parts, blob)

    def _replace(self, tree: str | None, parts: list[str], blob: str) -> str:
        entries: list[str] = []
        if tree is not None:
            out = self._run(["ls-tree", "-z", tree])
            entries = [e for e in out.split("\0") if e and e.partition("\t")[2] != parts[0]]
            current = [e for e in out.split("\0") if e and e.partition("\t")[2] == parts[0]]
        else:
            current = []
        if len(parts) == 1:
            entries.append(f"100644 blob {blob}\t{parts[0]}")
        else:
            sub: str | None = None
            if current:
                _mode, kind, oid = current[0].partition("\t")[0].split()
                if kind == "tree":
                    sub = oid
            entries.append(f"040000 tree {self._replace(sub, parts[1:], blob)}\t{parts[0]}")
        return self._run(["mktree", "-z"], input=("\0".join(entries) + "\0").encode()).strip()

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

    # -- moving refs -----------------------------------------------------------------------

    def update_refs(self, updates: Sequence[tuple[str, str, str]], message: str) -> bool:
        """Apply ``(ref, new, old)`` updates in one atomic transaction.

        ``new`` or ``old`` may be ZERO_OID (delete / must not exist). Returns False, changing
        nothing, when any ref no longer has its expected old value.
        """
        lines = ["start"]
        for ref, new, old in updates:
            if new == ZERO_OID:
                lines.append(f"delete {ref} {old}")
            else:
                lines.append(f"update {ref} {new} {old}")
        lines += ["prepare", "commit"]
        proc = _spawn(["update-ref", "--stdin", "-m", message],
                      input=("\n".join(lines) + "\n").encode(), cwd=self._cwd)
        if proc.returncode == 0:
            return True
        err = proc.stderr.decode("utf-8", "replace")
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
        raise GitError(f"git update-ref failed: {err.strip()}")

    # -- notes -----------------------------------------------------------------------------

    def add_note(self, target: str, text: str, *, append: bool = False) -> None:
        """Add (or append to) the note on ``target``."""
        args = ["notes", "append" if append else "add", "-F", "-", target]
        self._run(args, input=text.encode())

    def remove_note(self, target: str) -> None:
        """Remove the note on ``target``."""
        self._run(["notes", "remove", target])

    # -- remotes -----------------------------------------------------------------------------

    def fetch(self, remote: str, notes_ref: str) -> str:
        """Fetch branches and notes from ``remote``; return the fetched notes commit or ''."""
        tracking = f"refs/symergion/remote-notes/{remote}"
        # Branches and notes are fetched apart: one fetch fails as a whole when the remote has
        # no notes ref yet, which silently left the branches unfetched. A remote that cannot be
        # reached stops the pass before any model runs.
        proc = _spawn(["fetch", "--quiet", remote, f"+refs/heads/*:refs/remotes/{remote}/*"],
                      cwd=self._cwd)
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitError(f"cannot fetch from {remote}: {message[0] if message else 'failed'}",
                           hint=f"check `git remote -v` and that `git fetch {remote}` works")
        listed = self._run(["ls-remote", remote, notes_ref], check=False)
        if notes_ref in listed.split():
            self._run(["fetch", "--quiet", remote, f"+{notes_ref}:{tracking}"])
        out = self._run(["rev-parse", "--verify", "--quiet", tracking], check=False).strip()
        return out

    def merge_notes(self, other: str) -> None:
        """Merge fetched notes into the local notes ref, concatenating conflicting notes.

        The merge commit is symergion's, like its generated commits: it carries symergion's
        identity, so a CI runner without user.name/user.email can merge.
        """
        env = {"GIT_AUTHOR_NAME": "symergion", "GIT_AUTHOR_EMAIL": "symergion@symergion.invalid",
               "GIT_COMMITTER_NAME": "symergion",
               "GIT_COMMITTER_EMAIL": "symergion@symergion.invalid"}
        self._run(["notes", "merge", "--quiet", "-s", "cat_sort_uniq", other], env=env)

    def push(self, remote: str, refspecs: Sequence[str]) -> dict[str, str]:
        """Push without force; return refs git rejected, mapped to its reason."""
        if not refspecs:
            return {}
        proc = _spawn(["push", "--porcelain", remote, *refspecs], cwd=self._cwd)
        rejected: dict[str, str] = {}
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            if line.startswith("!"):
                parts = line.split("\t")
                ref = parts[1].split(":")[-1] if len(parts) > 1 else line
                rejected[ref] = parts[2] if len(parts) > 2 else "rejected"
        if proc.returncode != 0 and not rejected:
            raise GitError(f"git push to {remote} failed: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()}")
        return rejected

    def remote_branches(self, remote: str) -> dict[str, str]:
        """Return the remote-tracking branches of ``remote`` (name -> commit)."""
        prefix = f"refs/remotes/{remote}/"
        out = self._run(["for-each-ref", "--format=%(objectname) %(refname)", prefix])
        result = {}
        for line in out.splitlines():
            oid, _, ref = line.partition(" ")
            name = ref[len(prefix):]
            if name != "HEAD":
                result[name] = oid
        return result

    def remotes(self) -> list[str]:
        """Return the configured remote names."""
        return self._run(["remote"]).split()

    # -- batched reads for the core's RepoState (added for symergion.core) ------------------

    def list_refs(self, *patterns: str) -> dict[str, str]:
        """Return refs matching ``patterns`` (for-each-ref prefixes) mapped to their objects."""
        out = self._run(["for-each-ref", "--format=%(objectname) %(refname)", *patterns])
        return {name: oid for oid, _, name in (line.partition(" ") for line in out.splitlines())}

    def notes_history(self, notes_ref: str) -> list[list[tuple[str, str, str, str]]]:
        """Return the notes ref's commits, oldest first, each as (status, target, old, new) rows.

        ``old``/``new`` are the note blobs before and after; a fanout rewrite shows as a delete
        and an add of the same target within one commit.
        """
        out = self._run(["log", "--reverse", "--raw", "--no-renames", "--no-abbrev",
                         "--format=@%H", notes_ref], check=False)
        history: list[list[tuple[str, str, str, str]]] = []
        for line in out.splitlines():
            if line.startswith("@"):
                history.append([])
            elif line.startswith(":") and history:
                meta, _, path = line.partition("\t")
                fields = meta.split()
                history[-1].append((fields[-1], path.replace("/", ""), fields[2], fields[3]))
        return history

    def rev_list(self, include: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
        """Return commits reachable from ``include`` but not from ``exclude``."""
        tips = list(include)
        if not tips:
            return []
        return self._run(["rev-list", *tips, "--not", *exclude, "--"]).split()

    def refs_containing(self, commit: str, refs: Iterable[str]) -> set[str]:
        """Return which of ``refs`` contain ``commit`` in their history (one git call)."""
        wanted = list(refs)
        if not wanted:
            return set()
        out = self._run(["for-each-ref", "--format=%(refname)", f"--contains={commit}", *wanted])
        return set(out.split()) & set(wanted)

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

    def replace_note(self, target: str, text: str) -> None:
        """Overwrite the note on ``target`` in place (the notes history shows a modification)."""
        self._run(["notes", "add", "-f", "-F", "-", target], input=text.encode())
