"""Verify one candidate: check its commit out into a throwaway directory and run its tests there."""

from __future__ import annotations

import ast
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from symergion.config.paths import is_safe_relative_path
from symergion.config.schema import VerifySpec
from symergion.errors import SymergionError
from symergion.gitrepo import GitRepo
from symergion.redact import redact
from symergion.verify.checkout import export_commit
from symergion.verify.kinds import kind_of
from symergion.verify.names import command_values, fill, imports_module, module_of
from symergion.verify.report import WITHHELD, Report
from symergion.verify.result import Observation, TestOutcome, VerifyResult, summary_counts
from symergion.verify.sandbox import Limits, Run, Sandbox
from symergion.verify.scratch import scratch_dir


class VerifyError(SymergionError):
    """A candidate cannot be verified (its test file is missing from the commit)."""


@dataclass
class _RunOutcome:
    """One run of a suite, as read from the runner's events."""

    run: Run
    tests: dict[str, TestOutcome] = field(default_factory=dict)
    load_error: str = ""
    coverage: dict[str, Any] | None = None


def verify_candidate(
    repo: GitRepo,
    commit: str,
    spec: VerifySpec,
    source: str,
    destination: str,
    *,
    content: str | None = None,
    sandbox: Sandbox | None = None,
    limits: Limits | None = None,
) -> VerifyResult:
    """Run a candidate's tests in a sandboxed checkout of its commit, ``spec.runs`` times.

    Args:
        repo: the repository holding the commit.
        commit: the candidate commit.
        spec: the template's verify section.
        source: the module under test, a repository path.
        destination: the test file, a repository path.
        content: test file text to use instead of the commit's (to confirm a pruned file).
        sandbox: where commands run; default: bubblewrap, unless ``SYMERGION_SANDBOX=none``.
        limits: memory, process and file-size limits; the time limit is ``spec.timeout``.

    Raises:
        SandboxUnavailable: bubblewrap is missing or cannot run here; the message says what to do.
        VerifyError: the commit has no test file at ``destination``.
    """
    sandbox = sandbox or Sandbox()
    limits = replace(limits or Limits(), timeout=spec.timeout)
    replacement = content
    for path in (source, destination):
        if not is_safe_relative_path(path):
            raise VerifyError(f"{path!r} is not a path inside the repository",
                              hint="name files relative to the repository root, without '..' or .git")
    if content is None:
        entry = repo.tree_entry(commit, destination)
        if entry is None or entry.kind != "blob":
            raise VerifyError(f"{commit[:12]} has no file {destination} to verify",
                              hint="verify the candidate commit the task's model branch points at")
        content = repo.read_blob_bytes(entry.oid).decode("utf-8", "replace")
    with scratch_dir("symergion-verify-") as work:
        checkout = work / "checkout"
        export_commit(repo, commit, checkout)
        if replacement is not None:
            target = checkout / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_text(replacement, encoding="utf-8")
        # The checkout's words, read before anything ran: all a report may be made of.
        report = Report(checkout, sandboxed=sandbox.sandboxed)
        outcomes = [
            _run_once(sandbox, checkout, spec, source, destination, limits, report,
                      coverage=spec.coverage and i == 0, index=i)
            for i in range(spec.runs)
        ]
    result = _merge(outcomes, spec, source)
    warnings = () if sandbox.sandboxed else (
        "generated tests ran WITHOUT a sandbox (SYMERGION_SANDBOX=none): they could read and write "
        "anything your user can",)
    return replace(result, imports_source=imports_module(content, module_of(source), destination),
                   sandboxed=sandbox.sandboxed, warnings=warnings)


def _run_once(sandbox: Sandbox, checkout: Path, spec: VerifySpec, source: str, destination: str,
              limits: Limits, report: Report, *, coverage: bool, index: int = 0) -> _RunOutcome:
    if spec.structured:
        argv = [sys.executable, sandbox.tool(kind_of(spec).runner), "--module", module_of(destination),
                "--out", sandbox.results_path(checkout), "--source", source]
        if coverage:
            argv += ["--coverage", source]
    else:
        argv = shlex.split(fill(spec.command, command_values(source, destination)))
    run = sandbox.run(argv, checkout, limits)
    prefix = sandbox.checkout_path(checkout).rstrip("/") + "/"
    outcome = _RunOutcome(run=replace(run, output=run.output.replace(prefix, "")))
    if spec.structured:
        _read_events(run.results.replace(prefix, ""), outcome, report, index)
    return outcome


def _read_events(text: str, outcome: _RunOutcome, report: Report, index: int = 0) -> None:
    """Read the runner's events; every text in them passes ``report`` before it is kept."""
    started: list[str] = []
    observed: dict[str, list[Observation]] = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if not isinstance(event, dict):
            continue
        kind, test = event.get("event"), report.test_id(str(event.get("id", "")))
        if kind == "start":
            started.append(test)
        elif kind == "result" and event.get("outcome") in ("passed", "failed", "error", "skipped"):
            detail = report.detail(str(event.get("detail", "")))
            checks, wrong_kind = event.get("checks"), event.get("wrong_kind")
            outcome.tests[test] = TestOutcome(
                str(event["outcome"]), detail, checks=checks if isinstance(checks, int) else None,
                wrong_kind=wrong_kind if isinstance(wrong_kind, int) else 0)
        elif kind == "fixture":
            outcome.tests[test] = TestOutcome("error", report.detail(str(event.get("detail", ""))))
        elif kind == "load":
            outcome.load_error = report.detail(str(event.get("detail", ""))) \
                or "the test module cannot be imported"
        elif kind == "coverage":
            outcome.coverage = event
        elif kind == "observed" and isinstance(event.get("line"), int):
            (first, first_type, first_facts), (second, second_type, second_facts) = (
                _side(event, name, report) for name in ("first", "second"))
            observed.setdefault(test, []).append(Observation(
                event["line"], report.words_only(str(event.get("method", ""))[:100]),
                first, second, first_type, second_type,
                first_facts=first_facts, second_facts=second_facts, run=index))
    for test, seen in observed.items():
        if test in outcome.tests:
            outcome.tests[test] = replace(outcome.tests[test], observed=tuple(seen))
    for test in started:
        if test not in outcome.tests:
            why = (f"timed out after {outcome.run.seconds:.0f}s" if outcome.run.timed_out
                   else f"the test process ended during this test (exit {outcome.run.exit_code})")
            outcome.tests[test] = TestOutcome("error", why)


def _side(event: dict[str, Any], name: str, report: Report
          ) -> tuple[str | None, str | None, dict[str, object]]:
    """Return one side of an observed assertion as it may be recorded: literal, type, facts.

    A value with words the checkout does not hold (a temporary path, a secret read from a file)
    is never kept as a literal, so no repair can pin it. What the runs still need of it is kept:
    a digest, to tell whether it changes between runs (compared here, never recorded), its type,
    and the head and tail of a string that are made of the checkout's words (``/tmp/``).
    """
    raw, raw_type = event.get(name), event.get(f"{name}_type")
    literal = report.literal(raw) if isinstance(raw, str) else None
    kind = report.literal(raw_type) if isinstance(raw_type, str) else None
    facts = _facts(event.get(f"{name}_facts"), report)
    if isinstance(raw, str) and literal is None:
        facts.update(_withheld(raw, report))
        recorded_type = facts.get("type")
        kind = kind or (recorded_type if isinstance(recorded_type, str) else None)
    return literal, kind, facts


def _withheld(raw: str, report: Report) -> dict[str, object]:
    """Return the comparable digest of a withheld value, and its recordable head and tail."""
    found: dict[str, object] = {
        "digest": hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:16]}
    try:
        value = ast.literal_eval(raw)
    except Exception:  # no literal, or one too deep: the digest is all there is
        return found
    if isinstance(value, str):
        masked = report.words_only(value)
        if WITHHELD in masked:
            head = masked[:masked.index(WITHHELD)]
            tail = masked[masked.rindex(WITHHELD) + len(WITHHELD):]
            for key, part in (("head", head), ("tail", tail)):
                if part and redact(part) == part:
                    found[key] = part
    return found


def _facts(raw: object, report: Report) -> dict[str, object]:
    """Keep what a value showed (its type's name, length, existence, order) as it may be recorded:
    numbers and flags, and a type name only when every word of it is known."""
    if not isinstance(raw, dict):
        return {}
    def recordable(key: object, value: object) -> bool:
        if key == "type":
            return isinstance(value, str) and report.literal(value) == value
        return key in ("len", "exists", "sorted") and isinstance(value, (bool, int))

    return {str(key): value for key, value in raw.items() if recordable(key, value)}


def _merge(outcomes: list[_RunOutcome], spec: VerifySpec, source: str) -> VerifyResult:
    """Combine runs: a test whose outcome differs between runs is flaky."""
    first = outcomes[0]
    tests: dict[str, TestOutcome] = {}
    for outcome in outcomes:
        for test, result in outcome.tests.items():
            seen = tests.get(test)
            if seen is None:
                tests[test] = result
            elif seen.outcome == result.outcome and result.observed:
                # Every run's values: one that differs between runs is no value to pin.
                tests[test] = replace(seen, observed=seen.observed + result.observed)
            elif seen.outcome != result.outcome:
                problem = seen if seen.outcome != "passed" else result
                detail = f"{result.outcome} in one run, {seen.outcome} in another: {problem.detail}"
                tests[test] = TestOutcome(problem.outcome, detail, flaky=True)
    seconds = sum(o.run.seconds for o in outcomes)
    timed_out = any(o.run.timed_out for o in outcomes)
    load_error = next((o.load_error for o in outcomes if o.load_error), "")
    steady = [o for o in tests.values() if not o.flaky]
    counts = {name: sum(1 for o in steady if o.outcome == outcome)
              for name, outcome in (("passed", "passed"), ("failed", "failed"), ("errors", "error"),
                                    ("skipped", "skipped"))}
    exit_code = first.run.exit_code
    if not spec.structured:
        counts = summary_counts(first.run.output) or {}
        exit_code = next((o.run.exit_code for o in outcomes if o.run.exit_code), exit_code)
    coverage: float | None = None
    exercising: int | None = None
    statements: int | None = None
    lines: dict[str, tuple[int, ...]] = {}
    measured = next((o.coverage for o in outcomes if o.coverage is not None), None)
    if measured is not None and "statements" in measured:
        statements, covered = int(measured["statements"]), int(measured["covered"])
        coverage = 100.0 * covered / statements if statements else 100.0
        exercised = set(measured.get("exercised_by", []))
        exercising = sum(1 for t, o in tests.items()
                         if t in exercised and o.outcome == "passed" and not o.flaky)
        raw = measured.get("lines")
        if isinstance(raw, dict):
            lines = {str(c): tuple(n for n in ls if isinstance(n, int))
                     for c, ls in raw.items() if isinstance(ls, list)}
    merged = VerifyResult(
        source=source,
        passed=counts.get("passed", 0),
        failed=counts.get("failed", 0),
        errors=counts.get("errors", 0),
        skipped=counts.get("skipped", 0),
        tests=tests,
        coverage=coverage,
        exercising=exercising,
        statements=statements,
        lines=lines,
        seconds=seconds,
        timed_out=timed_out,
        exit_code=exit_code,
        load_error=load_error,
    )
    steady_passing = [o for o in tests.values() if o.outcome == "passed" and not o.flaky]
    if not spec.structured or any(o.checks is None for o in steady_passing):
        return merged
    return replace(merged, records_error=sum(o.records_error for o in steady_passing),
                   unchecked=sum(not o.asserts for o in steady_passing),
                   value_coverage=(round(merged.tested_coverage(only="values"), 1)
                                   if statements is not None else None))
