"""Time ``Finisher.check`` per piece over a long generation, as the decode loop calls it.

A real Python file is fed in four-character pieces (about one token each); every call gets the
whole text so far, as ``run_jobs`` passes it. Prints the median and 99th percentile of a call
and the total, for files of growing length, so that a cost growing with the text shows.

    PYTHONPATH=. python scripts/finish_cost.py
    PYTHONPATH=/path/to/older/checkout python scripts/finish_cost.py   # before a change
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from pathlib import Path

from symergion.verify.finish import Finisher


def cost(text: str, repeats: int) -> tuple[float, float, float]:
    """Return (median, p99, total) seconds of the check calls over ``text``, best total of runs."""
    best: list[float] = []
    for _ in range(repeats):
        finisher = Finisher("test_cost.py", "")
        calls = []
        so_far = ""
        for i in range(0, len(text), 4):
            so_far += text[i : i + 4]
            began = time.perf_counter()
            finisher.check(so_far)
            calls.append(time.perf_counter() - began)
        if not best or sum(calls) < sum(best):
            best = calls
    ordered = sorted(best)
    return statistics.median(best), ordered[int(len(ordered) * 0.99)], sum(best)


def main(argv: list[str] | None = None) -> int:
    """Print the cost of the checks for the first 250, 500, 1000 and 2000 lines of a file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(sysconfig.get_path("stdlib")) / "test" / "test_descr.py"
    parser.add_argument("--file", type=Path, default=default, help="a long Python file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    lines = args.file.read_text(encoding="utf-8").splitlines(keepends=True)
    print(f"{args.file} ({len(lines)} lines), best of {args.repeats}")
    print(f"{'lines':>6}{'calls':>8}{'median us':>11}{'p99 us':>9}{'total ms':>10}")
    for count in (250, 500, 1000, 2000):
        if count > len(lines):
            break
        text = "".join(lines[:count])
        median, p99, total = cost(text, args.repeats)
        print(f"{count:>6}{(len(text) + 3) // 4:>8}{median * 1e6:>11.1f}{p99 * 1e6:>9.1f}"
              f"{total * 1e3:>10.1f}")
    try:
        from symergion.verify.shape import ShapeRuns
    except ImportError:  # a checkout from before the shape reader
        return 0
    runs = []
    for _ in range(args.repeats):
        reader = ShapeRuns()
        began = time.perf_counter()
        for line in lines:
            reader.feed(line.rstrip("\n"))
        runs.append(time.perf_counter() - began)
    print(f"shape reader: {statistics.median(runs) / len(lines) * 1e6:.1f} us per line "
          f"(median of {args.repeats} passes over {len(lines)} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
