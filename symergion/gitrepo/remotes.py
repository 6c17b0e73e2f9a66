"""Remotes: fetch and push without force, with git's transfer progress; fetched notes merged."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from symergion.errors import GitError
from symergion.gitrepo.names import REMOTE_NOTES_REFS
from symergion.gitrepo.runner import GitRunner, hint_for


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


def _first_message(stderr: str) -> str:
    """Return the first line of git's stderr that is not progress."""
    for line in re.split(r"[\r\n]", stderr):
        if line.strip() and parse_progress("", line) is None:
            return line.strip()
    return ""


class Remotes(GitRunner):
    """Exchanges branches and notes with other clones; never force-pushes."""

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
                               hint=hint_for(["fetch"], err))
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
