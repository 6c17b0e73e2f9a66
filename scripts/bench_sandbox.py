"""Time what the sandbox costs per verification run: an empty command, and a small real suite.

    PYTHONPATH=. python scripts/bench_sandbox.py --runs 21
    # against an older checkout: git archive <commit> | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python scripts/bench_sandbox.py --runs 21

Prints JSON: the median, the quartiles and every time in seconds of ``python -c pass`` under
``Sandbox.run`` and of ``verify_candidate`` on a two-test unittest file (checkout, one run,
result), for bubblewrap and for ``SYMERGION_SANDBOX=none`` as the baseline without isolation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify import verify_candidate
from symergion.verify.sandbox import Limits, Sandbox

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
SUITE = ("import unittest\n\nfrom utils import calc\n\n\nclass TestCalc(unittest.TestCase):\n"
         "    def test_add(self):\n        self.assertEqual(calc.add(1, 2), 3)\n\n"
         "    def test_sub(self):\n        self.assertEqual(calc.sub(3, 1), 1)\n")


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True,
                          env={"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                               "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
                               "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com",
                               "PATH": "/usr/bin:/bin"}).stdout


def timed(fn: Callable[[], object], runs: int) -> dict[str, object]:
    fn()  # warm the page cache and the bwrap probe
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4)
    return {"median": round(statistics.median(times), 4), "q1": round(quartiles[0], 4),
            "q3": round(quartiles[2], 4), "times": [round(t, 4) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    figures: dict[str, object] = {"runs": args.runs, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        repo = Path(tmp) / "repo"
        (repo / "utils").mkdir(parents=True)
        (repo / "utils" / "__init__.py").write_text("")
        (repo / "utils" / "calc.py").write_text(CALC)
        (repo / "test_calc.py").write_text(SUITE)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", ".")
        git(repo, "commit", "-qm", "suite")
        commit = git(repo, "rev-parse", "HEAD").strip()
        checkout = Path(tmp) / "checkout"
        checkout.mkdir()
        for mode in ("bwrap", "none"):
            sandbox = Sandbox(mode=mode)
            figures[f"{mode}_empty_command"] = timed(
                lambda s=sandbox: s.run([sys.executable, "-c", "pass"], checkout, Limits(timeout=60)),
                args.runs)
            figures[f"{mode}_verify_candidate"] = timed(
                lambda s=sandbox: verify_candidate(GitRepo(repo), commit, VerifySpec(), "utils/calc.py",
                                                   "test_calc.py", sandbox=s),
                args.runs)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
