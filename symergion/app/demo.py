"""`symergion demo`: play the whole workflow on a scratch repository, showing each git command."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from symergion.app.service import Printer
from symergion.config.load import load_config
from symergion.errors import SymergionError
from symergion.gitrepo import run_git

TASK = "TestCase_capture_output"
SOURCE = '''\
import contextlib
import io


def capture_output(func, *args, **kwargs):
    """Run func with args and return everything it printed to stdout."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        func(*args, **kwargs)
    return buffer.getvalue()
'''


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _git(repo: Path, *args: str, show: bool = True) -> str:
    if show:
        _say(f"\n$ git {shlex.join(args)}")
    proc = run_git(*args, cwd=repo)
    if proc.returncode != 0:
        raise SymergionError(f"git {args[0]} failed in the demo repository: {proc.stderr.strip()}")
    if show and proc.stdout.strip():
        _say(proc.stdout.rstrip())
    return proc.stdout


def _sync(repo: Path, config_path: Path | None, models: Path | None, printer: Printer) -> None:
    from symergion.app.service import sync_once

    _say("\n$ symergion sync")
    report = sync_once(repo, config_path, models, printer=printer)
    for result in report.results:
        if result.status != "up-to-date":
            extra = f" (cache {result.cache}, {result.tokens} tokens)" if result.cache else ""
            _say(f"  {result.status} {result.branch}{extra}")
    for problem in report.problems:
        _say(f"  problem: {problem.where}: {problem.message}")
    if report.failed:
        raise SymergionError("the demo sync reported problems (see above)")


def _show_attempt(repo: Path, branch: str) -> None:
    """Show the newest test file the branch holds; a prune may have removed it from the tip."""
    oid = _git(repo, "log", "-1", "--format=%h", "--diff-filter=AM", branch, "--",
               "test_capture_output.py", show=False).strip()
    if oid:
        _git(repo, "show", f"{oid}:test_capture_output.py")


def run_demo(
    directory: Path | None, config_path: Path | None, models: Path | None, printer: Printer
) -> Path:
    """Build a scratch repository and play start, feedback, revoke, merge and end on it.

    ``printer`` renders the passes' progress (the CLI passes its own; the demo imports no CLI).

    Returns:
        The scratch repository's path (kept for the user to explore).
    """
    config = load_config(config_path, models)
    model = config.coders[0].model_name
    branch = f"{model}_{TASK}"
    repo = Path(tempfile.mkdtemp(prefix="symergion-demo-")) if directory is None else directory
    repo.mkdir(parents=True, exist_ok=True)
    if any(repo.iterdir()):
        raise SymergionError(f"{repo} is not empty", hint="pass --dir with a new directory")
    _say(f"# A scratch repository in {repo}")
    _git(repo, "init", "-q", "-b", config.default_branch)
    _git(repo, "config", "user.name", "Demo Developer", show=False)
    _git(repo, "config", "user.email", "developer@example.invalid", show=False)
    (repo / "utils").mkdir()
    (repo / "utils" / "capture_output.py").write_text(SOURCE, encoding="utf-8")
    _git(repo, "add", "utils/capture_output.py")
    _git(repo, "commit", "-q", "-m", "Add capture_output")

    _say("\n# 1. Start a task: a branch plus a note.")
    _git(repo, "branch", TASK)
    _git(repo, "notes", "add", "-m",
         f"task_branch: {TASK}, source: utils/capture_output.py, "
         "destination: test_capture_output.py", TASK)
    _sync(repo, config_path, models, printer)
    _git(repo, "branch", "--list")
    _git(repo, "log", "--format=%an: %B", f"{TASK}..{branch}")
    _git(repo, "diff", "--stat", f"{TASK}..{branch}")
    _show_attempt(repo, branch)

    _say("\n# 2. Feedback: a note on the best branch; every model regenerates.")
    _git(repo, "notes", "add", "-m", "Use setUp method", branch)
    _sync(repo, config_path, models, printer)
    _git(repo, "log", "-1", "--format=%an: %s", branch)
    _show_attempt(repo, branch)

    _say("\n# 3. Revoke: remove the note; the earlier answer comes back from the cache.")
    target = _git(repo, "notes", "list", show=False).split()
    noted = [t for t in target[1::2] if _git(repo, "notes", "show", t, show=False).strip()
             == "Use setUp method"]
    _git(repo, "notes", "remove", noted[0])
    _sync(repo, config_path, models, printer)
    _git(repo, "log", "-1", "--format=%an: %s", branch)

    _say("\n# 4. Merge the winner and delete the task branch: the task ends.")
    _git(repo, "merge", "-q", "--no-edit", branch)
    _git(repo, "branch", "-D", TASK)
    _sync(repo, config_path, models, printer)
    _git(repo, "branch", "--list")
    _git(repo, "for-each-ref", "--format=%(refname)", "refs/symergion/archive")
    _say(f"\nDone. Explore the result: cd {repo} && git log --all --graph --oneline")
    return repo
