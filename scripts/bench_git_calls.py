"""Count the git processes one sync pass runs (3 tasks x 2 fake models) and time the pass.

    PYTHONPATH=. python scripts/bench_git_calls.py
    # against an older checkout: git archive <commit> | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python scripts/bench_git_calls.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import symergion.gitrepo as gitrepo
from symergion.cache import ResponseStore
from symergion.config.parse import parse_config
from symergion.engine.fake import FakeEngine

try:
    from symergion.core.execute import Reconciler
except ImportError:  # a checkout from before symergion/core/
    from symergion.reconcile import Reconciler  # type: ignore[no-redef]

def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                          text=True).stdout


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    os.environ.update(GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    (tmp / "gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "u.py").write_text("def f():\n    return 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "initial")
    tasks = [f"TestCase_{i}" for i in range(3)]
    for task in tasks:
        git(repo, "branch", task)
    git(repo, "notes", "add", "-m", "\n".join(
        f"task_branch: {t}, source: u.py, destination: test_{t}.py" for t in tasks), "main")
    config = parse_config({"checkpoints": [{"name_or_path": f"{m}.gguf", "trait": "coding"}
                                           for m in ("alpha", "beta")]}, base_dir=tmp)
    engines: dict[str, FakeEngine] = {}

    def engine(checkpoint: Any) -> FakeEngine:
        reply = "\n\nclass T(unittest.TestCase):\n    pass\n"
        return engines.setdefault(checkpoint.model_name, FakeEngine(checkpoint.model_name, reply))

    def one_pass() -> tuple[int, float]:
        store = ResponseStore(tmp / "cache", 100)
        counted = gitrepo.GitRepo(repo)  # counts every git command it runs (``git_calls``)
        reconciler = Reconciler(counted, config, engines=engine,
                                fingerprint=lambda c: c.model_name, store=store)
        began = time.perf_counter()
        reconciler.sync()
        took = time.perf_counter() - began
        store.close()
        return counted.git_calls, took

    rows = {"first (6 created)": one_pass()}
    rows["no-op (6 up-to-date)"] = sorted(one_pass() for _ in range(5))[2]
    git(repo, "notes", "add", "-m", "Use setUp", "alpha_TestCase_0")
    rows["feedback (2 updated)"] = one_pass()
    for name, (count, seconds) in rows.items():
        print(f"{name:24} {count:4d} git calls  {seconds * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
