"""Paired wall times of the no-model fast paths for two source trees: `--help` and a no-op sync.

Both trees run in one session, alternating run by run, so machine noise falls on both alike:

    git archive OLD | tar -x -C /tmp/old
    python scripts/bench_fast_paths.py /tmp/old . --repeats 15

The no-op sync runs, for each tree, on a scratch repository whose task that tree brought up to
date on the embedded model (two versions may plan a task differently, so neither syncs the
other's); each tree then syncs its own with nothing to do (no model is loaded).

Each run imports symergion from its tree alone: an editable install's import hook, which would
load the installed tree whatever ``PYTHONPATH`` says, is taken out before the CLI starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = "TestCase_capture_output"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


# Start the CLI of the tree on sys.path[0], without an editable install's finder.
_BOOT = ("import sys, runpy; sys.meta_path[:] = [f for f in sys.meta_path "
         "if '__editable__' not in getattr(f, '__module__', '')]; "
         "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'symergion'; "
         "runpy.run_module('symergion', run_name='__main__', alter_sys=True)")


def _run(root: Path, env: dict[str, str], *args: str) -> float:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _BOOT, str(root), *args], capture_output=True,
                          text=True, check=False, env=env)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"symergion {' '.join(args)} failed under {root}: {proc.stderr}")
    return seconds


def _prepare(root: Path, workdir: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """Create a repository whose task ``root``'s code brought up to date; return it and its config."""
    from symergion.app.demo import SOURCE  # the installed tree's: the same file for both
    from symergion.config.schema import EMBEDDED_MODEL
    from symergion.models.resolve import resolve_model

    model = resolve_model(EMBEDDED_MODEL, Path.cwd())
    config = workdir / "config.json"
    config.write_text(json.dumps({"checkpoints": [
        {"name_or_path": str(model), "name": "gemma3-270m", "trait": "coding"}]}))
    repo = workdir / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "utils").mkdir()
    (repo / "utils" / "capture_output.py").write_text(SOURCE)
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "init")
    _run(root, env, "ergon", "start", TASK, "--source", "utils/capture_output.py",
         "--destination", "test_capture_output.py", "--repo", str(repo), "--config", str(config),
         "--quiet")
    return repo, config


def main(argv: list[str] | None = None) -> int:
    """Print median wall times of both fast paths for each tree, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="source tree of the old code")
    parser.add_argument("after", type=Path, help="source tree of the new code")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    roots = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory(prefix="symergion-fast-") as tmp:
        workdir = Path(tmp)
        env = {**os.environ, "SYMERGION_CACHE_DIR": str(workdir / "cache"),
               "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
        prepared = {}
        for name, root in roots.items():
            (workdir / name).mkdir()
            prepared[name] = _prepare(root, workdir / name, env)
        paths = ("--help", "no-op sync")

        def cli(path: str, name: str) -> list[str]:
            repo, config = prepared[name]
            return ["--help"] if path == "--help" else ["sync", "--repo", str(repo), "--config",
                                                          str(config), "--quiet"]

        times: dict[tuple[str, str], list[float]] = {(p, r): [] for p in paths for r in roots}
        for _ in range(args.repeats):
            for path in paths:
                for name, root in roots.items():
                    times[(path, name)].append(_run(root, env, *cli(path, name)))
    print(f"{'path':<12}{'before s':>10}{'after s':>10}{'after/before':>14}   ({args.repeats} runs each)")
    for path in paths:
        before = statistics.median(times[(path, "before")])
        after = statistics.median(times[(path, "after")])
        print(f"{path:<12}{before:>10.3f}{after:>10.3f}{after / before:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
