"""The only module that talks to git: snapshots, notes, plumbing commits, compare-and-swap.

Nothing here touches the user's work tree, index or HEAD: objects are written with
``hash-object``/``mktree``/``commit-tree`` and refs move in one ``update-ref --stdin``
transaction that verifies every old value, so a user commit that races in is never lost.

GitPython finds the repository and runs each command (``Repo.git.execute``); it is imported on
first use, so ``--help`` never pays for it. Only one-shot commands are used: GitPython's object
database keeps ``cat-file`` processes alive per repository, which leak in a long ``watch``.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from symergion.errors import GitError

if TYPE_CHECKING:
    from git.cmd import Git

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

# git's messages are matched in English below (update-ref, fetch); a translated git would turn
# a lost compare-and-swap into an error. GitPython sets the same; symergion does not rely on it.
# (LANGUAGE cannot be unset through GitPython; gettext ignores it under the C locale anyway.)
GIT_LOCALE = {"LC_ALL": "C", "LANGUAGE": "C"}

# How many git commands this process is running. A stop request (SIGTERM, Ctrl-C) waits for
# them: killing git inside a ref transaction leaves ``.lock`` files that block those refs.
_running = 0
_running_lock = threading.Lock()


def git_running() -> bool:
    """Return whether a git command started by this process is still running."""
    return _running > 0


def _count_running(step: int) -> None:
    global _running
    with _running_lock:
        _running += step


@dataclass(frozen=True)
class TransferProgress:
    """One progress line of a fetch or push, as git reports it with ``--progress``."""

    remote: str
    operation: str  # as git names it: "Receiving objects", "Writing objects", ...
    done: int
    total: int | None
    finished: bool


ProgressCallback = Callable[[TransferProgress], None]

# "Receiving objects:  45% (9/20), 1.2 MiB | 3 MiB/s" or "remote: Enumerating objects: 5, done."
# GitPython's RemoteProgress drops operations it does not know (a small fetch reports only
# "Unpacking objects"), so the lines are parsed here.
_PROGRESS_LINE = re.compile(
    r"^(?:remote: )?(?P<op>[A-Z][A-Za-z ]*?):\s+"
    r"(?:\d+% \((?P<done>\d+)/(?P<total>\d+)\)|(?P<count>\d+))(?P<rest>.*)$"
)


def parse_progress(remote: str, line: str) -> TransferProgress | None:
    """Return the progress a line of git's stderr reports, or None for any other line."""
    match = _PROGRESS_LINE.match(line.strip())
    if match is None:
        return None
    if match["count"] is not None:
        done, total = int(match["count"]), None
    else:
        done, total = int(match["done"]), int(match["total"])
    return TransferProgress(remote=remote, operation=match["op"], done=done, total=total,
                            finished=match["rest"].rstrip().endswith("done."))


def _hint(args: Sequence[str], stderr: str) -> str:
    """Return what to do about a failed git command, from what git said."""
    text = stderr.lower()
    if "permission denied" in text or "insufficient permission" in text:
        return "check that you may write to the repository's .git directory"
    if "dubious ownership" in text:
        return ("the repository belongs to another user: if you trust it, run "
                "`git config --global --add safe.directory <its path>`")
    if "no space left" in text or "disk quota" in text:
        return "free some disk space, then run symergion again"
    if ".lock" in text and "exists" in text:
        return ("another git command is working on this repository; if none is running, a "
                "crashed one left its .lock file behind: delete it")
    if "bad object" in text or "missing" in text or "corrupt" in text:
        return "the repository is missing objects or damaged: run `git fsck` to see what"
    return f"run `git {args[0]}` in the repository to see the full error; `git fsck` checks it"


def is_null_oid(oid: str) -> bool:
    """Return whether ``oid`` is git's null object id (all zeros, of any hash length)."""
    return bool(oid) and set(oid) == {"0"}


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


def _first_message(stderr: str) -> str:
    """Return the first line of git's stderr that is not progress."""
    for line in re.split(r"[\r\n]", stderr):
        if line.strip() and parse_progress("", line) is None:
            return line.strip()
    return ""


def _work_tree_above(start: Path) -> Path | None:
    """Return the nearest directory at or above ``start`` that holds a ``.git``."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _communicate_by_line(proc: subprocess.Popen[bytes], on_line: Callable[[str], None]
                         ) -> tuple[bytes, bytes]:
    """Wait for ``proc``, handing each stderr line to ``on_line`` as it comes (git ends a
    progress update with a carriage return); stdout is drained apart so neither pipe fills."""
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []
    stdout: IO[bytes] = proc.stdout
    drain = threading.Thread(target=lambda: chunks.append(stdout.read()), daemon=True)
    drain.start()
    err = bytearray()
    pending = b""
    failure: Exception | None = None

    def deliver(line: bytes) -> None:
        nonlocal failure
        # A failing callback must not stop the reading: git would block on a full pipe.
        if line and failure is None:
            try:
                on_line(line.decode("utf-8", "replace"))
            except Exception as exc:
                failure = exc

    try:
        while chunk := proc.stderr.read1(4096):  # type: ignore[attr-defined]
            err += chunk
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            for line in lines:
                deliver(line)
        deliver(pending)
    finally:
        drain.join()
        proc.stderr.close()
        proc.wait()
    if failure is not None:
        raise failure
    return b"".join(chunks), bytes(err)


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


@dataclass(frozen=True)
class Merge:
    """A three-way merge of two commits: its tree, or the paths that conflict (tree "")."""

    tree: str
    conflicts: tuple[str, ...] = ()


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
    """A repository, driven through git's command line with GitPython's command layer.

    Close it (or use it as a context manager) when done; it holds no process between commands.
    """

    def __init__(self, path: str | Path = ".") -> None:
        try:
            import git
        except ImportError as exc:  # GitPython refuses to import when it finds no git to run
            raise GitError(f"git cannot be used: {str(exc).strip().splitlines()[0]}",
                           hint="install git and put it on PATH") from None

        start = Path(path)
        if not start.exists():
            raise GitError(f"{start} does not exist", hint="pass an existing repository with --repo")
        self._cwd = (start if start.is_dir() else start.parent).absolute()
        try:
            repo = git.Repo(self._cwd, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(
                f"{start} is not inside a git repository",
                hint="run symergion inside a repository, or pass one with --repo",
            ) from None
        self._repo = repo
        self.git_dir = Path(os.path.normpath(repo.git_dir))
        self.common_dir = Path(os.path.normpath(repo.common_dir))
        self.bare = repo.bare
        # GitPython takes an exported GIT_WORK_TREE as this repository's; a hook's belongs to
        # another one, so the work tree is found from the path instead.
        self.work_tree = None if self.bare else _work_tree_above(self._cwd)
        self._git: Git = repo.git
        self._merge_tree: bool | None = None
        # Every command this object ran, and their wall time: a pass's ledger reads them.
        self.git_calls = 0
        self.git_seconds = 0.0

    def close(self) -> None:
        """Release what GitPython caches for this repository (no git process outlives a call)."""
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- running git -------------------------------------------------------------------

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(GIT_LOCALE)
        env["GIT_NOTES_REF"] = NOTES_REF
        # A git hook exports these for its own repository. GitPython starts from os.environ and
        # cannot unset a variable, so each one is pinned to this repository instead.
        if "GIT_DIR" in os.environ:
            env["GIT_DIR"] = str(self.git_dir)
        if "GIT_WORK_TREE" in os.environ and self.work_tree is not None:
            env["GIT_WORK_TREE"] = str(self.work_tree)
        if "GIT_INDEX_FILE" in os.environ:
            env["GIT_INDEX_FILE"] = str(self.git_dir / "index")
        if extra:
            env.update(extra)
        return env

    def _execute(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> tuple[int, bytes, str]:
        """Run git once and return (status, stdout bytes, stderr); every git call goes here."""
        from git.exc import GitCommandNotFound

        command = ["git", *args]
        _count_running(1)
        began = time.monotonic()
        try:
            # One process per command, waited for here: nothing is left running or unreaped.
            handle = self._git.execute(
                command, istream=subprocess.PIPE if input is not None else None,
                as_process=True, env=self._environment(env),
            )
            proc = handle.proc
            assert proc is not None  # only None once terminated
            if on_stderr_line is None:
                out, err = proc.communicate(input)
            else:
                out, err = _communicate_by_line(proc, on_stderr_line)
            return proc.returncode, out, err.decode("utf-8", "replace")
        except GitCommandNotFound:
            raise GitError("git is not installed", hint="install git and put it on PATH") from None
        except OSError as exc:  # e.g. git is there but not executable
            raise GitError(f"git {args[0]} could not run: {exc}",
                           hint="check that git on PATH is a working executable") from None
        finally:
            _count_running(-1)
            self.git_calls += 1
            self.git_seconds += time.monotonic() - began

    def _run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> str:
        return self._run_bytes(args, input=input, env=env, check=check).decode(
            "utf-8", "surrogateescape"
        )

    def _run_bytes(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> bytes:
        status, out, err = self._execute(args, input=input, env=env)
        if check and status != 0:
            raise GitError(f"git {args[0]} failed: {err.strip()}", hint=_hint(args, err))
        return out

    # -- reading -------------------------------------------------------------------------

    def notes_ref(self) -> str:
        """Return the notes ref symergion reads and writes (always ``NOTES_REF``)."""
        return self._run(["notes", "get-ref"]).strip()

    def configured_notes_ref(self) -> str:
        """Return the notes ref plain ``git notes`` uses here (GIT_NOTES_REF, core.notesRef)."""
        value = os.environ.get("GIT_NOTES_REF") or self._run(
            ["config", "--get", "core.notesRef"], check=False).strip()
        if not value:
            return NOTES_REF
        # git's expand_notes_ref: "x" and "notes/x" both mean refs/notes/x.
        if value.startswith("refs/notes/"):
            return value
        return f"refs/{value}" if value.startswith("notes/") else f"refs/notes/{value}"

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
        status, _out, err = self._execute(args)
        if status not in (0, 1):
            raise GitError(f"git merge-base failed: {err.strip()}", hint=_hint(args, err))
        return status == 0

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
        return self._execute(["check-ref-format", "--branch", name])[0] == 0

    def rev_parse(self, rev: str) -> str:
        """Resolve a revision to a commit id."""
        try:
            return self._run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).strip()
        except GitError:
            raise GitError(f"{rev!r} does not name a commit",
                           hint="pass a branch, tag or commit that exists") from None

    def tree_of(self, commit: str) -> str:
        """Return the tree id of a commit."""
        return self._run(["rev-parse", "--verify", f"{commit}^{{tree}}"]).strip()

    def current_branch(self) -> str | None:
        """Return the branch HEAD points to, or None when detached."""
        out = self._run(["symbolic-ref", "--quiet", "--short", "HEAD"], check=False).strip()
        return out or None

    # -- writing objects (never the index or work tree) ----------------------------------

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its id."""
        return self._run(["hash-object", "-w", "--stdin"], input=data).strip()

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
            raise GitError(f"git merge-tree failed: {err.strip()}", hint=_hint(["merge-tree"], err))
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
        raise GitError(f"git update-ref failed: {err.strip()}", hint=_hint(["update-ref"], err))

    # -- notes -----------------------------------------------------------------------------

    def add_note(self, target: str, text: str, *, append: bool = False) -> None:
        """Add (or append to) the note on ``target``."""
        args = ["notes", "append" if append else "add", "-F", "-", target]
        self._run(args, input=text.encode())

    def remove_note(self, target: str) -> None:
        """Remove the note on ``target``."""
        self._run(["notes", "remove", target])

    # -- remotes -----------------------------------------------------------------------------

    def fetch(self, remote: str, notes_ref: str, *, progress: ProgressCallback | None = None
              ) -> str:
        """Fetch branches and notes from ``remote``; return the fetched notes commit or ''.

        ``progress`` receives git's transfer progress as it comes.
        """
        tracking = f"{REMOTE_NOTES_REFS}/{remote}"
        # Branches and notes are fetched apart: one fetch fails as a whole when the remote has
        # no notes ref yet, which silently left the branches unfetched. A remote that cannot be
        # reached stops the pass before any model runs.
        status, err = self._transfer(
            "fetch", remote, [f"+refs/heads/*:refs/remotes/{remote}/*"], progress)
        if status != 0:
            message = _first_message(err)
            raise GitError(f"cannot fetch from {remote}: {message or 'failed'}",
                           hint=f"check `git remote -v` and that `git fetch {remote}` works")
        listed = self._run(["ls-remote", remote, notes_ref], check=False)
        if notes_ref in listed.split():
            status, err = self._transfer("fetch", remote, [f"+{notes_ref}:{tracking}"], progress)
            if status != 0:
                raise GitError(f"cannot fetch {notes_ref} from {remote}: {_first_message(err)}",
                               hint=_hint(["fetch"], err))
        out = self._run(["rev-parse", "--verify", "--quiet", tracking], check=False).strip()
        return out

    def merge_notes(self, other: str) -> None:
        """Merge fetched notes into the local notes ref, concatenating conflicting notes.

        ``union`` puts the local note, then the remote one, each with its lines in their order:
        a note with several ``task_branch:`` sections stays readable (``cat_sort_uniq`` sorted
        its lines). The merge commit is symergion's, like its generated commits: it carries
        symergion's identity, so a CI runner without user.name/user.email can merge.
        """
        env = {"GIT_AUTHOR_NAME": "symergion", "GIT_AUTHOR_EMAIL": "symergion@symergion.invalid",
               "GIT_COMMITTER_NAME": "symergion",
               "GIT_COMMITTER_EMAIL": "symergion@symergion.invalid"}
        self._run(["notes", "merge", "--quiet", "-s", "union", other], env=env)

    def push(self, remote: str, refspecs: Sequence[str], *,
             progress: ProgressCallback | None = None) -> dict[str, str]:
        """Push without force; return refs git rejected, mapped to its reason.

        ``progress`` receives git's transfer progress as it comes.
        """
        if not refspecs:
            return {}
        rejected: dict[str, str] = {}
        status, out, err = self._transfer_output("push", remote, ["--porcelain", *refspecs],
                                                 progress)
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("!"):
                parts = line.split("\t")
                ref = parts[1].split(":")[-1] if len(parts) > 1 else line
                rejected[ref] = parts[2] if len(parts) > 2 else "rejected"
        if status != 0 and not rejected:
            raise GitError(f"git push to {remote} failed: {_first_message(err) or 'failed'}",
                           hint=f"check `git remote -v` and that `git push {remote}` works")
        return rejected

    def _transfer(self, command: str, remote: str, args: Sequence[str],
                  progress: ProgressCallback | None) -> tuple[int, str]:
        status, _out, err = self._transfer_output(command, remote, args, progress)
        return status, err

    def _transfer_output(self, command: str, remote: str, args: Sequence[str],
                         progress: ProgressCallback | None) -> tuple[int, bytes, str]:
        """Run ``git fetch``/``git push``, reporting progress when asked (git's is on stderr)."""
        if progress is None:
            return self._execute([command, "--quiet", remote, *args])

        def on_line(line: str) -> None:
            update = parse_progress(remote, line)
            if update is not None:
                progress(update)

        return self._execute([command, "--progress", remote, *args], on_stderr_line=on_line)

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

    # -- history reads for harvest and stats -------------------------------------------------
    # Read-only queries over the whole history (archived branches, the notes ref's own log).

    def note_changes(self, notes_ref: str) -> list[tuple[int, str, str, str, str]]:
        """Return every change the notes ref's history made, oldest first.

        Each change is ``(step, status, target, old_blob, new_blob)``: ``step`` counts notes
        commits from 1, ``status`` is git's A/M/D, and a missing blob is git's null id
        (``is_null_oid``). Notes that a merge brought in count as changes of that merge
        (against its first parent).
        """
        out = self._run(["log", "--reverse", "--first-parent", "-m", "--raw", "--no-renames",
                         "--no-abbrev", "--format=@%H", notes_ref, "--"], check=False)
        changes: list[tuple[int, str, str, str, str]] = []
        step = 0
        for line in out.splitlines():
            if line.startswith("@"):
                step += 1
            elif line.startswith(":"):
                meta, _, path = line.partition("\t")
                fields = meta.split()
                changes.append((step, fields[4][0], path.replace("/", ""), fields[2], fields[3]))
        return changes

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

    def notes_at(self, ref: str) -> dict[str, str]:
        """Return the notes a notes commit holds (annotated object -> note blob)."""
        out = self._run(["ls-tree", "-r", "-z", ref])
        notes: dict[str, str] = {}
        for item in out.split("\0"):
            meta, _, path = item.partition("\t")
            if item and meta.split()[1] == "blob":
                notes[path.replace("/", "")] = meta.split()[2]  # fanout dirs join the id back
        return notes

    def replace_note(self, target: str, text: str) -> None:
        """Overwrite the note on ``target`` in place (the notes history shows a modification)."""
        self._run(["notes", "add", "-f", "-F", "-", target], input=text.encode())
