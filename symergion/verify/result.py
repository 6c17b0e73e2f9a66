"""A candidate's verification result: outcomes per test, coverage, and its trailer form.

The repository is the only state, so a result is written into the candidate's commit message
and read back from it::

    Symergion-Verify: 6 passed, 2 failed, 0 errors; coverage 41% of utils/x.py; 1.3s

with optional segments (``1 skipped``, ``1 flaky``, ``5 passing exercise utils/x.py``,
``imports utils.x``, ``timed out``, ``exit 1``, ``unsandboxed``) and the first failure lines in
the body, under ``Verify failures:``. Where the runner counted each test's checks, three more:
``2 record an error`` (passing tests whose only checks caught an exception Python raised for a
value of the wrong kind), ``1 assert nothing`` (passing tests that called no assertion), and
``values cover 23%`` (what the passing tests that check values cover: the ranking's first key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from symergion.trailers import VERIFY, Trailers
from symergion.verify.names import module_of

TRAILER = VERIFY  # the trailer's name, as symergion.verify exports it
FAILURES_HEADING = "Verify failures:"
OUTCOMES = ("passed", "failed", "error", "skipped")
_EXCERPT_TESTS = 5
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class Observation:
    """The values a failing equality assertion compared (repr, or None when not a literal).

    For a value that is no literal, its type as ``module.qualname`` (else None).
    """

    line: int
    method: str
    first: str | None
    second: str | None
    first_type: str | None = None
    second_type: str | None = None
    # What each value showed besides itself (type, len, exists, sorted: the runner's ``facts``).
    first_facts: dict[str, object] = field(default_factory=dict, compare=False)
    second_facts: dict[str, object] = field(default_factory=dict, compare=False)
    run: int = 0  # which of the verification's runs observed it


@dataclass(frozen=True)
class TestOutcome:
    """One test's outcome and, for a problem, the lines that say what went wrong."""

    __test__ = False  # a name test runners would otherwise try to collect

    outcome: str
    detail: str = ""
    flaky: bool = False
    observed: tuple[Observation, ...] = field(default=(), compare=False)
    # Assertion methods the test called (None: not counted), and how many of them only caught an
    # exception Python raised for a value of the wrong kind (TypeError, AttributeError).
    checks: int | None = field(default=None, compare=False)
    wrong_kind: int = field(default=0, compare=False)

    @property
    def asserts(self) -> bool:
        """Return whether the test checked anything (True when its checks were not counted)."""
        return self.checks is None or self.checks > 0

    @property
    def records_error(self) -> bool:
        """Return whether every check of the test caught a wrong-kind error Python raised."""
        return self.checks is not None and 0 < self.checks <= self.wrong_kind

    @property
    def checks_values(self) -> bool:
        """Return whether the test checks something beyond a wrong-kind error."""
        return self.asserts and not self.records_error


@dataclass(frozen=True)
class VerifyResult:
    """What running a candidate's tests showed."""

    source: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    tests: dict[str, TestOutcome] = field(default_factory=dict)
    coverage: float | None = None
    exercising: int | None = None
    imports_source: bool = False
    seconds: float = 0.0
    timed_out: bool = False
    exit_code: int | None = None
    sandboxed: bool = True
    load_error: str = ""
    warnings: tuple[str, ...] = ()
    statements: int | None = None
    # Lines of the source each coverage context ran: a test id, or "" for import time.
    lines: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    # Passing tests whose only checks are wrong-kind errors, passing tests without a check, and
    # the coverage of passing tests that check values (None: the checks were not counted).
    records_error: int | None = None
    unchecked: int | None = None
    value_coverage: float | None = None

    @property
    def flaky(self) -> tuple[str, ...]:
        """Return the tests whose outcome changed between runs."""
        return tuple(t for t, o in self.tests.items() if o.flaky)

    @property
    def ok(self) -> bool:
        """Return whether tests ran and none failed, erred, hung or flickered."""
        if self.timed_out or self.load_error or self.failed or self.errors or self.flaky:
            return False
        return self.passed > 0 or (self.exit_code == 0 and not self.tests)

    @property
    def passing_exercising(self) -> int:
        """Return how many passing tests exercise the source (the first ranking criterion).

        With coverage, a test counts when it ran a line of the source; without it, every passing
        test counts when the suite imports the module under test.
        """
        if self.exercising is not None:
            return self.exercising
        return self.passed if self.imports_source else 0

    def tested_coverage(self, *, strict: bool = False, only: str = "") -> float:
        """Return the percentage of the source's statements that passing tests account for.

        Only steady passing tests that ran a line of the source count. Lines run at import time
        count only when at least one such test exists (importing alone covers every ``def``);
        ``strict`` leaves them out altogether. ``only="asserting"`` counts the tests that called
        an assertion, ``only="values"`` those that check more than a wrong-kind error. 0.0
        without per-test coverage.
        """
        if not self.statements:
            return 0.0
        passing = [t for t, o in self.tests.items()
                   if o.outcome == "passed" and not o.flaky and self.lines.get(t)
                   and (only != "asserting" or o.asserts) and (only != "values" or o.checks_values)]
        if not passing:
            return 0.0
        covered = {line for t in passing for line in self.lines[t]}
        if not strict:
            covered.update(self.lines.get("", ()))
        return 100.0 * len(covered) / self.statements

    def rank_key(self) -> tuple[float, int, float, int, float]:
        """Return a key that sorts better candidates first (use with ``sorted``).

        What the tests that check values cover comes first: a file of wrong-kind errors ranks
        below one whose tests pin what the code returns.
        """
        problems = self.failed + self.errors + len(self.flaky) + (1 if self.timed_out else 0)
        return (-(self.value_coverage or 0.0), -self.passing_exercising, -(self.coverage or 0.0),
                problems, self.seconds)

    def trailer(self) -> str:
        """Return the value of the ``Symergion-Verify`` trailer."""
        counts = f"{self.passed} passed, {self.failed} failed, {self.errors} errors"
        if self.skipped:
            counts += f", {self.skipped} skipped"
        if self.flaky:
            counts += f", {len(self.flaky)} flaky"
        parts = [counts]
        if self.coverage is not None:
            parts.append(f"coverage {_percent(self.coverage)}% of {self.source}")
        if self.exercising is not None:
            parts.append(f"{self.exercising} passing exercise {self.source}")
        parts.append(("imports " if self.imports_source else "does not import ") + module_of(self.source))
        parts.append(f"{self.seconds:.1f}s")
        if self.timed_out:
            parts.append("timed out")
        if self.exit_code is not None and not self.tests:
            parts.append(f"exit {self.exit_code}")
        if not self.sandboxed:
            parts.append("unsandboxed")
        if self.records_error:
            parts.append(f"{self.records_error} record{'s' if self.records_error == 1 else ''} an error")
        if self.unchecked:
            parts.append(f"{self.unchecked} assert{'s' if self.unchecked == 1 else ''} nothing")
        if self.value_coverage is not None:
            parts.append(f"values cover {_percent(self.value_coverage)}%")
        return "; ".join(parts)

    def excerpt(self) -> str:
        """Return the body lines naming the first problems, or '' when there are none."""
        lines = []
        if self.load_error:
            lines.append(f"  LOAD {problem_line(self.load_error)}")
        problems = [(t, o) for t, o in self.tests.items() if o.outcome in ("failed", "error") or o.flaky]
        for test, outcome in problems[:_EXCERPT_TESTS]:
            label = "FLAKY" if outcome.flaky else ("FAIL" if outcome.outcome == "failed" else "ERROR")
            lines.append(f"  {label} {test}: {problem_line(outcome.detail)}".rstrip())
        if len(problems) > _EXCERPT_TESTS:
            lines.append(f"  ... and {len(problems) - _EXCERPT_TESTS} more")
        return "\n".join([FAILURES_HEADING, *lines]) if lines else ""

    def message_lines(self) -> str:
        """Return the excerpt and the trailer, ready to append to a commit message."""
        excerpt = self.excerpt()
        trailer = Trailers(verify=self.trailer()).block()
        return f"{excerpt}\n\n{trailer}" if excerpt else trailer

    @classmethod
    def from_message(cls, message: str) -> VerifyResult | None:
        """Read a result back from a commit message; None when it carries no verify trailer."""
        value = Trailers.parse(message).verify
        if value is None:
            return None
        result = parse_trailer(value)
        tests: dict[str, TestOutcome] = {}
        in_block = False
        for line in message.splitlines():
            if line == FAILURES_HEADING:
                in_block = True
                continue
            match = re.fullmatch(r"  (FAIL|ERROR|FLAKY|LOAD) (.*)", line) if in_block else None
            if match is None:
                in_block = in_block and line.startswith("  ")
                continue
            label, rest = match.groups()
            if label == "LOAD":
                result = replace(result, load_error=rest)
                continue
            test, _, detail = rest.partition(": ")
            outcome = "error" if label == "ERROR" else "failed"
            tests[test] = TestOutcome(outcome, detail, flaky=label == "FLAKY")
        return replace(result, tests=tests)


def parse_trailer(value: str) -> VerifyResult:
    """Parse a ``Symergion-Verify`` trailer value (the counts of the excerpt's tests are kept)."""
    fields: dict[str, object] = {"source": "", "sandboxed": True}
    for part in (p.strip() for p in value.split(";")):
        if match := re.fullmatch(r"coverage (\d+(?:\.\d+)?)% of (.+)", part):
            fields["coverage"] = float(match.group(1))
            fields["source"] = match.group(2)
        elif match := re.fullmatch(r"(\d+) passing exercise (.+)", part):
            fields["exercising"] = int(match.group(1))
            fields["source"] = match.group(2)
        elif match := re.fullmatch(r"(does not import|imports) (.+)", part):
            fields["imports_source"] = match.group(1) == "imports"
            if not fields["source"]:
                fields["source"] = match.group(2).replace(".", "/") + ".py"
        elif match := re.fullmatch(r"(\d+) records? an error", part):
            fields["records_error"] = int(match.group(1))
        elif match := re.fullmatch(r"(\d+) asserts? nothing", part):
            fields["unchecked"] = int(match.group(1))
        elif match := re.fullmatch(r"values cover (\d+(?:\.\d+)?)%", part):
            fields["value_coverage"] = float(match.group(1))
        elif match := re.fullmatch(r"(\d+(?:\.\d+)?)s", part):
            fields["seconds"] = float(match.group(1))
        elif match := re.fullmatch(r"exit (-?\d+)", part):
            fields["exit_code"] = int(match.group(1))
        elif part == "timed out":
            fields["timed_out"] = True
        elif part == "unsandboxed":
            fields["sandboxed"] = False
        else:
            for number, word in re.findall(r"(\d+) (passed|failed|errors|skipped|flaky)", part):
                if word != "flaky":  # the flaky tests themselves are named in the excerpt
                    fields[word] = int(number)
    return VerifyResult(**fields)  # type: ignore[arg-type]


def summary_counts(output: str) -> dict[str, int] | None:
    """Read pass/fail counts from a unittest or pytest summary line in a command's output."""
    counts: dict[str, int] | None = None
    ran = re.findall(r"^Ran (\d+) tests? in ", output, flags=re.M)
    if ran:
        total = int(ran[-1])
        status = re.findall(r"^(OK|FAILED)(?: \((.*)\))?$", output, flags=re.M)
        detail = dict(re.findall(r"(\w+)=(\d+)", status[-1][1])) if status else {}
        failed = int(detail.get("failures", 0)) + int(detail.get("unexpected successes", 0))
        errors, skipped = int(detail.get("errors", 0)), int(detail.get("skipped", 0))
        counts = {"passed": max(0, total - failed - errors - skipped), "failed": failed,
                  "errors": errors, "skipped": skipped}
    pytest_lines = re.findall(r"^=+ (.*\d+ (?:passed|failed|error).*) in [\d.]+s.*=+$", output, flags=re.M)
    if pytest_lines:
        found = dict((w, int(n)) for n, w in re.findall(r"(\d+) (passed|failed|errors?|skipped)",
                                                         pytest_lines[-1]))
        counts = {"passed": found.get("passed", 0), "failed": found.get("failed", 0),
                  "errors": found.get("error", 0) + found.get("errors", 0),
                  "skipped": found.get("skipped", 0)}
    return counts


def rank(results: Iterable[tuple[str, VerifyResult]]) -> list[tuple[str, VerifyResult]]:
    """Return (name, result) pairs best first: passing tests that exercise the source, then coverage."""
    return sorted(results, key=lambda item: (item[1].rank_key(), item[0]))


def _percent(value: float) -> str:
    return f"{value:.0f}"


def problem_line(detail: str) -> str:
    """Return the line that names the problem: the exception line of a traceback, else the first."""
    lines = [line.strip() for line in detail.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    chosen = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    for line in reversed(lines):
        if re.match(r"[\w.]+(Error|Exception|Failure|Exit|Interrupt)\b", line):
            chosen = line
            break
    # Where in the checkout it failed: the last frame with a relative path (candidate.py strips
    # the checkout's prefix), so the interpreter's own library is left out.
    frames = [(path, number) for path, number in re.findall(r'File "([^"]+)", line (\d+)', detail)
              if not path.startswith(("/", "<"))]
    if frames:
        path, number = frames[-1]
        chosen = f"{chosen} ({path}:{number})" if len(chosen) < _DETAIL_CHARS else chosen
    return chosen[:_DETAIL_CHARS]
