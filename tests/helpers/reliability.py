"""Reliability helpers: messy user repositories, exact state captures, and ``sync`` in a child
process that can be killed at a chosen point."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from symergion.app.demo import SOURCE
from tests.helpers.fleet import original_templates
from tests.helpers.git import git

TASK = "TestCase_capture_output"
MODELS = ("alpha", "beta")
CONFIG: dict[str, Any] = {
    "checkpoints": [{"name_or_path": f"{m}.gguf", "trait": "coding"} for m in MODELS],
    "templates": original_templates(),
}
ROOT = Path(__file__).resolve().parents[2]


# -- capturing what must not change ------------------------------------------------------------


def tree_bytes(path: Path) -> dict[str, str]:
    """Hash every file and symlink under a work tree, ``.git`` excluded, ignored files included."""
    files: dict[str, str] = {}
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if rel.parts[0] == ".git":
            continue
        if file.is_symlink():
            files[str(rel)] = "-> " + os.readlink(file)
        elif file.is_file():
            files[str(rel)] = hashlib.sha256(file.read_bytes()).hexdigest()
        elif file.is_dir():
            files[str(rel) + "/"] = "dir"
    return files


def all_refs(path: Path) -> dict[str, str]:
    """Return every ref (loose or packed) mapped to its object."""
    out = git(path, "for-each-ref", "--format=%(objectname) %(refname)")
    return {name: oid for oid, _, name in (line.partition(" ") for line in out.splitlines())}


def is_symergion_ref(ref: str, models: tuple[str, ...] = MODELS) -> bool:
    """Return whether sync may move ``ref``: a model branch or symergion's own namespace."""
    if ref.startswith("refs/symergion/"):
        return True
    return any(ref.startswith(f"refs/heads/{m}_") for m in models)


def user_refs(path: Path, models: tuple[str, ...] = MODELS) -> dict[str, str]:
    """Return the refs only the user may move (notes, tags, remotes and non-model branches)."""
    return {r: o for r, o in all_refs(path).items() if not is_symergion_ref(r, models)}


def git_dir_of(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--absolute-git-dir").strip())


def user_state(path: Path) -> dict[str, Any]:
    """Capture the user's work tree bytes, index bytes, HEAD bytes and porcelain status."""
    gd = git_dir_of(path)
    index = gd / "index"
    return {
        "files": tree_bytes(path),
        "index": index.read_bytes() if index.exists() else None,
        "HEAD": (gd / "HEAD").read_bytes(),
        "status": git(path, "status", "--porcelain=v1", "--untracked-files=all", "--ignored"),
    }


def leftovers(git_dir: Path) -> list[str]:
    """Return lock and temporary files git or symergion left in a git directory.

    symergion's own lock file (``symergion/lock``) is allowed: it exists between runs by
    design and is checked for being unheld separately.
    """
    found = []
    for file in git_dir.rglob("*"):
        rel = file.relative_to(git_dir).as_posix()
        if rel == "symergion/lock":
            continue
        name = file.name
        if name.endswith(".lock") or name.startswith(("tmp_", "incoming-")) or ".tmp" in name:
            found.append(rel)
    return sorted(found)


def symergion_commits(path: Path, base: str, branch: str) -> list[dict[str, str]]:
    """Return the trailers of every symergion commit in ``base..branch``, newest first."""
    from symergion.trailers import parse_trailers

    out = git(path, "log", "--format=%H%x00%B%x1e", f"{base}..{branch}")
    commits = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        oid, _, message = record.partition("\x00")
        trailers = parse_trailers(message)
        if "Symergion-Model" in trailers:
            commits.append({"oid": oid, "subject": message.splitlines()[0], **trailers})
    return commits


# -- repositories ----------------------------------------------------------------------------


def start_task(path: Path, branch: str = TASK, destination: str = "test_capture_output.py",
               source: str = "utils/capture_output.py", at: str = "main") -> None:
    """Start a task with plain git, as the original README does.

    When ``at`` already carries a note, the task branch starts at a fresh empty commit on top
    of it, so every task has a note of its own.
    """
    tip = git(path, "rev-parse", at).strip()
    if git(path, "notes", "list").split()[1::2].count(tip):
        tip = git(path, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", f"base of {branch}")
    git(path, "branch", branch, tip.strip())
    git(path, "notes", "add", "-m",
        f"task_branch: {branch}, source: {source}, destination: {destination}", branch)


def commit_files(path: Path, files: dict[str, tuple[str, bytes | str]], *, at: str = "main",
                 message: str = "test files") -> str:
    """Commit ``{path: (mode, content or object id)}`` on top of ``at`` with plumbing only.

    Modes: ``100644`` (content), ``120000`` (symlink target), ``160000`` (a submodule commit id).
    The user's index is never used: a private index file is.
    """
    env = {**os.environ, "GIT_INDEX_FILE": str(path.parent / "private-index")}

    def run(*args: str, data: bytes | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=path, env=env, input=data, capture_output=True,
                              check=True)
        return proc.stdout.decode().strip()

    run("read-tree", at)
    for name, (mode, content) in files.items():
        if mode == "160000":
            oid = str(content)
        else:
            data = content if isinstance(content, bytes) else content.encode()
            oid = run("hash-object", "-w", "--stdin", data=data)
        run("update-index", "--add", "--cacheinfo", f"{mode},{oid},{name}")
    tree = run("write-tree")
    os.unlink(env["GIT_INDEX_FILE"])
    return run("commit-tree", tree, "-p", at, "-m", message)


def make_messy(path: Path, head: str) -> None:
    """Give a repo staged, unstaged, untracked and ignored files and the HEAD shape ``head``.

    ``head`` is ``detached`` (HEAD at a commit), ``task`` (the task branch checked out) or
    ``model`` (a model branch checked out; needs one sync first).
    """
    if head == "detached":
        git(path, "checkout", "-q", "--detach", "main")
    elif head == "task":
        git(path, "checkout", "-q", TASK)
    elif head == "model":
        git(path, "checkout", "-q", f"alpha_{TASK}")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", ".gitignore")
    (path / "staged.txt").write_text("staged\n")
    git(path, "add", "staged.txt")
    (path / "README.md").write_text("an unstaged edit\n")
    (path / "untracked.txt").write_text("untracked\n")
    (path / "debug.log").write_text("ignored\n")
    # A partly staged file: the index and the work tree differ from HEAD and from each other.
    (path / "utils" / "capture_output.py").write_text(SOURCE + "# staged\n")
    git(path, "add", "utils/capture_output.py")
    (path / "utils" / "capture_output.py").write_text(SOURCE + "# staged\n# unstaged\n")


# -- sync in a child process, killable at a chosen point ----------------------------------------

CHILD = textwrap.dedent('''
    import os, signal, sys, time, json
    sys.path.insert(0, {root!r})
    from symergion.app import runtime
    from symergion.engine.fake import FakeEngine
    from symergion.gitrepo import GitRepo
    from tests.helpers.fleet import default_reply

    KILL_AT = os.environ.get("KILL_AT", "")
    if KILL_AT == "in_update_refs":
        os.environ["KILL_PID"] = str(os.getpid())  # read by the test's reference-transaction hook
    SLOW = float(os.environ.get("SLOW_TOKEN", "0"))
    MARK = os.environ.get("MARK_FILE", "")
    COUNT = {{"n": 0}}

    def mark(what):
        if MARK:
            with open(MARK, "a") as handle:
                handle.write(what + "\\n")

    def maybe_kill(point):
        mark(point)
        if KILL_AT == point:
            COUNT["n"] += 1
            if COUNT["n"] >= int(os.environ.get("KILL_NTH", "1")):
                os.kill(os.getpid(), signal.SIGKILL)

    class Engine(FakeEngine):
        def generate(self, prompt, **kw):
            for i, piece in enumerate(super().generate(prompt, **kw)):
                if i == 3:
                    maybe_kill("generation")
                if SLOW:
                    time.sleep(SLOW)
                yield piece

        def generate_many(self, requests, **kw):
            seen = {{}}
            for index, piece in super().generate_many(requests, **kw):
                seen[index] = seen.get(index, 0) + 1
                if seen[index] == 4:
                    maybe_kill("generation")
                if SLOW:
                    time.sleep(SLOW)
                yield index, piece

    engines = {{}}
    def load(config, c):
        if c.model_name not in engines:
            engines[c.model_name] = Engine(c.model_name, lambda p, n=c.model_name: default_reply(n, p)
                                           + ("# pad\\n" * int(os.environ.get("PAD", "0"))))
        return engines[c.model_name]
    runtime.load_engine = load
    runtime.fingerprint = lambda config, c: "fp-" + c.model_name

    def wrap(name, point):
        original = getattr(GitRepo, name)
        def wrapper(self, *a, **k):
            maybe_kill("before_" + point)
            result = original(self, *a, **k)
            maybe_kill("after_" + point)
            return result
        setattr(GitRepo, name, wrapper)
    wrap("write_blob", "write_blob")
    wrap("tree_with_file", "mktree")
    wrap("commit_tree", "commit_tree")
    wrap("update_refs", "update_refs")

    from symergion.cli.main import main
    sys.exit(main(sys.argv[1:]))
''').format(root=str(ROOT))


def run_child(*args: str | Path, env: dict[str, str] | None = None,
              background: bool = False, timeout: float = 60) -> Any:
    """Run ``symergion ARGS`` in a child Python on fake engines; see CHILD for the knobs."""
    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-c", CHILD, *[str(a) for a in args]]
    if background:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)
