"""Run git: one process per command, in the repository's environment, counted and timed.

`GitRunner` finds the repository with GitPython and runs each command through its command layer
(``Repo.git.execute``); GitPython is imported on first use, so ``--help`` never pays for it. Only
one-shot commands are used: GitPython's object database keeps ``cat-file`` processes alive per
repository, which leak in a long ``watch``. `run_git` runs git where no repository is driven:
``git --version``, and the porcelain commands that build a scratch repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from symergion.errors import GitError
from symergion.gitrepo.names import NOTES_REF

if TYPE_CHECKING:
    from git.cmd import Git

# git's messages are matched in English (update-ref in refs.py, fetch in remotes.py); a translated
# git would turn a lost compare-and-swap into an error. GitPython sets the same; symergion does not
# rely on it.
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


def hint_for(args: Sequence[str], stderr: str) -> str:
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


def run_git(*args: str, cwd: Path | None = None, timeout: float | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run one git command in ``cwd`` and return what it did, whatever its status.

    This is for what `GitRepo` never does: ``git --version``, which must work without a
    repository (and report a missing git), and the porcelain commands (``init``, ``add``,
    ``commit``, ``merge``) that build a scratch repository and change its work tree, as the demo
    and the benchmarks do. It runs in the caller's environment and locale, as a user would.

    Raises:
        OSError: git cannot be started (not installed, not executable).
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
    """
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=timeout)


class GitRunner:
    """A repository found by GitPython, and the one place where its git commands run.

    Close it when done; it holds no process between commands.
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
        # Every command this object ran, and their wall time: a pass's ledger reads them.
        self.git_calls = 0
        self.git_seconds = 0.0

    def close(self) -> None:
        """Release what GitPython caches for this repository (no git process outlives a call)."""
        self._repo.close()

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
        """Run git once and return (status, stdout bytes, stderr); every call of a repository goes here."""
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
            raise GitError(f"git {args[0]} failed: {err.strip()}", hint=hint_for(args, err))
        return out
