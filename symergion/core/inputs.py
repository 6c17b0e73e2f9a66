"""A task's inputs at its tip: the source and destination files, checked before any prompt.

Reads only the ``RepoState`` (the files were read with it), so it is part of the pure plan.
"""

from __future__ import annotations

import fnmatch

from symergion.config.paths import is_safe_relative_path
from symergion.config.schema import Config
from symergion.core.state import RepoState
from symergion.core.task import Task
from symergion.errors import TaskInputError
from symergion.gitrepo import MAX_FILE_BYTES

# CI, hook, editor-task and git metadata paths: a file written there runs (or changes how git
# and tools run) on the next push, checkout or editor start. Directories end with "/"; they and
# the top-level files are matched from the top of the tree, case-insensitively (a checkout on a
# case-insensitive disk, and some CI services, read `.GITHUB/` as `.github/`).
PROTECTED_DESTINATIONS = (
    ".github/", ".gitlab/", ".gitea/", ".forgejo/", ".circleci/", ".buildkite/", ".woodpecker/",
    ".semaphore/", ".husky/", ".githooks/", ".vscode/", ".idea/", ".devcontainer/",
    ".gitlab-ci.yml", ".travis.yml", "azure-pipelines.yml", "Jenkinsfile", ".drone.yml",
    ".woodpecker.yml", "bitbucket-pipelines.yml", ".cirrus.yml", ".cirrus.star", "appveyor.yml",
    ".appveyor.yml", ".gitpod.yml", ".pre-commit-config.yaml", ".pre-commit-hooks.yaml",
    ".gitmodules",
)
# Files git or a shell reads in whatever directory they are in.
PROTECTED_NAMES = (".gitattributes", ".gitignore", ".lfsconfig", ".envrc")


def destination_allowed(path: str, config: Config, *, remote: bool = False) -> bool:
    """Return whether symergion may write ``path``.

    CI, hook, editor and git metadata paths need the config's ``allow_destinations``, since a
    fetched note could otherwise make a pass write a workflow that a push would run. A task
    whose note came from a remote (``sync --remote``) gets an allow-list instead: no part of
    its path may start with a dot (no dot-directory, no dot-file), whatever the denylist knows.
    """
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in config.allow_destinations):
        return True
    folded = path.casefold()
    parts = folded.split("/")
    if remote and any(part.startswith(".") for part in parts):
        return False
    if any(part in PROTECTED_NAMES for part in parts):
        return False
    return not any(folded == p.rstrip("/").casefold()
                   or (p.endswith("/") and folded.startswith(p.casefold()))
                   for p in PROTECTED_DESTINATIONS)


def same_file(source: str | None, destination: str, where: str = "") -> None:
    """Refuse a destination that is the source: the model's file would replace the code under
    test. Paths equal but for case count as one (they are one file on a case-insensitive disk).

    Raises:
        TaskInputError: the two name the same file.
    """
    if source is not None and source.casefold() == destination.casefold():
        raise TaskInputError(
            f"{where + ': ' if where else ''}the destination {destination!r} is the source "
            "itself; the model's file would replace the code under test",
            hint="name a file of its own for the result, e.g. test_<module>.py")


def task_inputs(state: RepoState, config: Config, task: Task) -> tuple[
    list[tuple[str, str]], str | None, str
]:
    """Return (files for the prompt, source code, destination path) from the task tip.

    Raises:
        TaskInputError: a path is unusable; the message says what to fix.
    """
    params = task.spec.params
    destination = params["destination"]
    where = f"task {task.name}"
    remote = task.name in state.remote_tasks
    if is_safe_relative_path(destination) and not destination_allowed(destination, config,
                                                                        remote=remote):
        if remote and destination_allowed(destination, config):
            raise TaskInputError(
                f"{where}: destination {destination!r} starts with a dot-directory or is a "
                "dot-file, and the note came from a remote",
                hint="a note fetched by `sync --remote` may only name a plain path (no part "
                     "starting with '.'); list it in \"allow_destinations\" to allow it")
        raise TaskInputError(
            f"{where}: destination {destination!r} is a CI, hook or git metadata path",
            hint="symergion does not write those unless the config lists them in "
                 "\"allow_destinations\" (a fetched note could otherwise run code in CI)")
    same_file(params.get("source"), destination, where)
    files: list[tuple[str, str]] = []
    dest = _read_text(state, task, destination, where, "destination", must_exist=False)
    if dest is not None:
        files.append((destination, dest))
    source_code: str | None = None
    if "source" in task.template.params:
        if "source" not in params:
            raise TaskInputError(
                f"{where}: the note names no source",
                hint=f"add 'source: path/to/file' to the note on {task.spec.target[:12]}",
            )
        source_code = _read_text(state, task, params["source"], where, "source", must_exist=True)
        assert source_code is not None
        files.append((params["source"], source_code))
        if task.template.guided is not None:
            # A worked example first: a small module and a test file in the guided form.
            from symergion.verify.examples import few_shot_files

            files[:0] = few_shot_files(params["source"], destination)
    return files, source_code, destination


def _read_text(
    state: RepoState, task: Task, path: str, where: str, role: str, *, must_exist: bool
) -> str | None:
    if not is_safe_relative_path(path):
        raise TaskInputError(
            f"{where}: {role} {path!r} is not a path inside the repository",
            hint="use a relative path without '..', a leading '/', or '.git'",
        )
    read = state.files[(task.tip, path)]
    if read.bad_parent is not None:
        raise TaskInputError(
            f"{where}: {role} {path!r} goes through {read.bad_parent!r}, which is not a "
            "directory", hint="symlinked or file parents are not followed; use the real path",
        )
    entry = read.entry
    if entry is None:
        if must_exist:
            raise TaskInputError(
                f"{where}: {role} {path!r} does not exist on the task branch",
                hint="commit the file to the task branch, or fix the path in the note",
            )
        return None
    if entry.mode == "120000":
        raise TaskInputError(f"{where}: {role} {path!r} is a symlink",
                             hint="point the note at the real file")
    if entry.kind == "commit":
        raise TaskInputError(f"{where}: {role} {path!r} is a submodule",
                             hint="name a file inside this repository")
    if entry.kind != "blob":
        raise TaskInputError(f"{where}: {role} {path!r} is a directory", hint="name a file")
    if entry.size > MAX_FILE_BYTES:
        raise TaskInputError(
            f"{where}: {role} {path!r} is {entry.size} bytes, over the "
            f"{MAX_FILE_BYTES}-byte limit", hint="split the file or name a smaller one",
        )
    data = read.data or b""
    if b"\0" in data:
        raise TaskInputError(f"{where}: {role} {path!r} is a binary file",
                             hint="name a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TaskInputError(f"{where}: {role} {path!r} is not UTF-8 text",
                             hint="re-encode the file as UTF-8") from None
