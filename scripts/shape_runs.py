"""Measure how long runs of same-shape statements are in real Python code.

The degenerate-generation limits of ``symergion/verify/shape.py`` must sit above what real code
does. This reads every ``.py`` file below the given folders with ``ShapeRuns`` (limits off),
keeps each file's longest run by scope (inside a function body, or at module/class level) and
period (1: one shape; 2, 3: a block of two or three shapes), and prints percentiles of those
per-file maxima, the longest files, and whether the current limits would stop any of them.

    PYTHONPATH=. python scripts/shape_runs.py --stdlib-tests --stdlib tests --json runs.json \\
        --site-packages _pytest,hypothesis,click,rich,typer,git,huggingface_hub,numpy,pandas,jinja2,gguf

The standard library is the running interpreter's; the packages are those installed beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from symergion.verify.shape import FUNCTION_LIMITS, PERIODS, TOP_LIMITS, Limits, ShapeRuns

# Where a run is (a function body, or module/class level) and whether it counts.
SCOPES = ("function", "top", "function-counting", "top-counting")
_NONE = dict.fromkeys(PERIODS, 10**9)
_NO_LIMITS = Limits(_NONE, _NONE)

LIMITS = {"function": FUNCTION_LIMITS.shape, "top": TOP_LIMITS.shape,
          "function-counting": FUNCTION_LIMITS.counting, "top-counting": TOP_LIMITS.counting}


def file_maxima(text: str) -> dict[str, dict[int, tuple[int, int]]]:
    """Return, by scope and period, the file's longest run: (statements, first line 1-based)."""
    runs = ShapeRuns(_NO_LIMITS, _NO_LIMITS)
    best = {scope: dict.fromkeys(PERIODS, (0, 0)) for scope in SCOPES}
    for line in text.splitlines():
        runs.feed(line)
        for period in PERIODS:
            for counting in (False, True):
                run = runs.current(period, counting)
                if run is None:
                    continue
                scope = ("top" if run.top else "function") + ("-counting" if counting else "")
                if run.statements > best[scope][period][0]:
                    best[scope][period] = (run.statements, run.start_line + 1)
    return best


def python_files(folders: list[Path], exclude: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield the ``.py`` files below ``folders`` (skipping folders named in ``exclude``)."""
    for folder in folders:
        if folder.is_file():
            yield folder
            continue
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in exclude)
            for name in sorted(files):
                if name.endswith(".py"):
                    yield Path(root) / name


def percentile(values: list[int], q: float) -> int:
    """The nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def measure(groups: dict[str, list[Path]], exclude: frozenset[str] = frozenset()
            ) -> dict[str, Any]:
    """Measure each group of folders; return the distributions and the longest runs."""
    report: dict[str, Any] = {"limits": {k: v for k, v in LIMITS.items()},
                              "groups": {}}
    for group, folders in groups.items():
        rows = []
        for path in python_files(folders, exclude):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            rows.append((str(path), file_maxima(text)))
        summary: dict[str, Any] = {"files": len(rows)}
        for scope in SCOPES:
            limits = LIMITS[scope]
            for period in PERIODS:
                values = [best[scope][period][0] for _, best in rows]
                longest = sorted(((best[scope][period], path) for path, best in rows),
                                 reverse=True)[:5]
                summary[f"{scope}/{period}"] = {
                    "p50": percentile(values, 50), "p90": percentile(values, 90),
                    "p99": percentile(values, 99), "p99.9": percentile(values, 99.9),
                    "max": max(values, default=0),
                    "over_limit": sum(v > limits.get(period, v) for v in values),
                    "longest": [f"{path}:{line} ({count})" for (count, line), path in longest],
                }
        report["groups"][group] = summary
    return report


def main(argv: list[str] | None = None) -> int:
    """Print the distribution of per-file longest same-shape runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="more folders, one group each")
    parser.add_argument("--stdlib-tests", action="store_true",
                        help="add the running Python's Lib/test")
    parser.add_argument("--stdlib", action="store_true",
                        help="add the running Python's Lib, without test/ and site-packages/")
    parser.add_argument("--site-packages", default="",
                        help="comma-separated installed packages, measured as one group")
    parser.add_argument("--exclude", action="append", default=[],
                        help="skip folders of this name (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    groups: dict[str, list[Path]] = {}
    if args.stdlib_tests:
        import test

        groups["Lib/test"] = [Path(test.__file__).parent]
    exclude = set(args.exclude)
    if args.stdlib:
        lib = Path(os.__file__).parent
        groups["Lib"] = [lib / name for name in sorted(os.listdir(lib))
                         if name not in ("test", "site-packages")]
    packages = [name.strip() for name in args.site_packages.split(",") if name.strip()]
    if packages:
        purelib = Path(sysconfig.get_path("purelib"))
        groups[f"site-packages ({len(packages)} packages)"] = [purelib / name for name in packages]
    for folder in args.folders:
        groups[str(folder)] = [folder]
    if not groups:
        parser.error("give folders, --stdlib-tests, --stdlib or --site-packages")
    report = measure(groups, frozenset(exclude))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"limits: {LIMITS} (python {sys.version.split()[0]}; none: no limit)")
    print(f"{'group':<40}{'scope/period':>14}{'p50':>5}{'p90':>5}{'p99':>5}{'p99.9':>7}"
          f"{'max':>6}{'over':>6}")
    for group, summary in report["groups"].items():
        name = group if len(group) <= 38 else "..." + group[-35:]
        for scope in SCOPES:
            for period in PERIODS:
                row = summary[f"{scope}/{period}"]
                print(f"{name + ' (' + str(summary['files']) + ')':<40}{scope + '/' + str(period):>14}"
                      f"{row['p50']:>5}{row['p90']:>5}{row['p99']:>5}{row['p99.9']:>7}"
                      f"{row['max']:>6}{row['over_limit']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
