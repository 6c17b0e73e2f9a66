"""Deterministic repairs of a verified test file: qualify names, pin expected values.

Repairs that need no model:

- **qualify names**: a bare name the test file uses but never defines or imports, that is a
  top-level name of the module under test, becomes ``<module alias>.<name>`` (or is imported
  from the module when the file has no alias for it);
- **pin** and **complete** (``verify.pin``): a failing equality assertion gets the value the
  code returned as its expected value, one with only an actual side gets one to pin; a value
  that differs between runs is checked by what every run agrees on;
- **re-kind** (``verify.rekind``): an argument Python rejected gets a value of the kind the code
  uses, before the error is expected;
- **truncate** (``verify.truncate``): when nothing else applies, a failing test is cut before
  its failing statement, or expects the exception the module raised.

``repair`` edits text; ``repair_candidate`` re-runs the repaired file in the sandbox, pins the
assertions that fail next, and repeats for a few rounds.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.names import module_of
from symergion.verify.pin import Pin, Stabilized, complete_assertions, pin_values
from symergion.verify.prune import Removed
from symergion.verify.rekind import Rekinded, rekind_arguments
from symergion.verify.result import VerifyResult
from symergion.verify.sandbox import Limits, Sandbox
from symergion.verify.syntax import Edits, bound_names, module_refs, top_level_names
from symergion.verify.truncate import truncate_tests

DEFAULT_ROUNDS = 6


@dataclass(frozen=True)
class RepairResult:
    """The repaired file, what changed, and the re-run that checked it."""

    text: str
    destination: str
    pinned: tuple[Pin, ...] = ()
    qualified: tuple[str, ...] = ()
    dropped_args: tuple[int, ...] = ()  # lines where a misplaced expected value was removed
    completed: tuple[int, ...] = ()  # lines where a one-argument assertion got an expected value
    truncated: tuple[str, ...] = ()  # tests cut before their first failing statement
    raising: tuple[str, ...] = ()  # tests whose first call now expects the exception it raised
    stabilized: tuple[Stabilized, ...] = ()  # unstable values checked by what every run agrees on
    dropped: tuple[Removed, ...] = ()  # tests with a value no check holds for
    rekinded: tuple[Rekinded, ...] = ()  # wrong-kind arguments given a value of the right kind
    rerun: VerifyResult | None = field(default=None, compare=False)
    # (line, lines added) of each edit that moved the lines after it, in this step's text.
    shifts: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        """Return whether the file was edited."""
        return bool(self.pinned or self.qualified or self.dropped_args or self.completed or self.truncated
                    or self.raising or self.stabilized or self.dropped or self.rekinded)

    def summary(self) -> str:
        """Return what changed in a few words: ``pinned 2 assertions, expected 1 exception``."""
        counts = [("pinned", len(self.pinned), "assertion"), ("qualified", len(self.qualified), "name"),
                  ("completed", len(self.completed), "assertion"),
                  ("dropped", len(self.dropped_args), "misplaced argument"),
                  ("cut", len(self.truncated), "test"), ("expected", len(self.raising), "exception"),
                  ("checked", sum(not s.said or not s.said[0].startswith("not deterministic")
                                  for s in self.stabilized), "unstable value"),
                  ("dropped", len(self.dropped), "unstable test"),
                  ("gave", len(self.rekinded), "value of the right kind")]
        said = [f"{verb} {n} {noun}{'' if n == 1 else 's'}" for verb, n, noun in counts if n]
        return ", ".join(said).replace("values of the right kind", "values of the right kinds") or "no change"

    def commit_message(self) -> str:
        """Return the message of the commit that carries the repaired file."""
        parts = [f"Repair: {self.summary()}"]
        if self.pinned:
            lines = ["Pinned to the values the code returned (review: they record what the code does, "
                     "not what it should do):"]
            lines += [f"- {p.test} (line {p.line}): expected {p.before} -> {p.after}" for p in self.pinned]
            parts.append("\n".join(lines))
        if self.qualified:
            parts.append("Qualified with the module under test: " + ", ".join(self.qualified))
        if self.dropped_args:
            parts.append("Removed a third argument that was no message at line(s) "
                         + ", ".join(str(n) for n in self.dropped_args))
        if self.completed:
            parts.append("Gave an equality assertion that had only one argument an expected value "
                         "to pin, at line(s) " + ", ".join(str(n) for n in self.completed))
        if self.truncated:
            parts.append("Cut before the first statement that failed (the statements before it pass): "
                         + ", ".join(self.truncated))
        if self.raising:
            parts.append("Expect the exception the module raised (review: recorded, not specified): "
                         + ", ".join(self.raising))
        if self.stabilized:
            lines = ["Values that differ between runs, checked by what every run agrees on instead:"]
            lines += [f"- {s.test} (line {s.line}): seen {', '.join(s.seen)}; "
                      f"checked: {', '.join(s.said) if s.said else 'the other checks'}"
                      for s in self.stabilized]
            parts.append("\n".join(lines))
        if self.dropped:
            lines = ["Dropped, no check holds in every run:"]
            lines += [f"- {d.test}: {d.reason}" for d in self.dropped]
            parts.append("\n".join(lines))
        if self.rekinded:
            lines = ["Python raised for a value of the wrong kind; given one of the kind the code uses:"]
            lines += [f"- {r.test}: {r.name} = {r.before} -> {r.after}" for r in self.rekinded]
            parts.append("\n".join(lines))
        if self.rerun is not None:
            parts.append(self.rerun.message_lines())
        return "\n\n".join(parts) + "\n"


def qualify_names(test_source: str, source_text: str, module: str, destination: str
                  ) -> tuple[str, tuple[str, ...], int | None]:
    """Qualify bare names of the module under test that the test file never defines or imports.

    Returns the new text, the names qualified, and the number of the line inserted to import
    them (None when the file's own alias of the module was used, which moves no line).
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, (), None
    refs = module_refs(tree, module, destination)
    if refs.star:
        return test_source, (), None
    defined = bound_names(tree) | set(dir(builtins))
    wanted = top_level_names(source_text) - defined
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and n.id in wanted]
    if not uses:
        return test_source, (), None
    names = tuple(sorted({n.id for n in uses}))
    edits = Edits(test_source)
    if refs.aliases:
        alias = refs.aliases[0]
        for use in uses:
            start, end = edits.span(use)
            edits.replace(start, end, f"{alias}.{use.id}")
        return edits.apply(), names, None
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    after = (imports[-1].end_lineno or imports[-1].lineno) if imports else 0
    line = f"from {module} import {', '.join(names)}\n"
    at = edits.starts[min(after, len(edits.lines))]
    if at == len(test_source) and test_source and not test_source.endswith("\n"):
        line = "\n" + line
    edits.replace(at, at, line)
    return edits.apply(), names, after + 1


def repair(
    test_source: str, result: VerifyResult, source_text: str, destination: str,
    *, skip: frozenset[tuple[str, int]] = frozenset(), retried: frozenset[str] = frozenset(),
    raises: str = "self.assertRaises",
) -> RepairResult:
    """Apply the repairs once to a verified test file's text (no run).

    Args:
        test_source: the test file as verified.
        result: its verification result (observed values come from the built-in runner).
        source_text: the module under test's code (its top-level names).
        destination: the test file's repository path.
        skip: (test id, line) pairs pinned before: failing again, their value is unstable.
        retried: tests already given a value of the right kind once (the next wrong-kind error
            they raise is expected, as the last resort).
        raises: how an expected exception is written (``TestKind.raises``).
    """
    module = module_of(result.source)
    names = frozenset(top_level_names(source_text))
    step = pin_values(test_source, result, module, destination, module_names=names, skip=skip)
    pins, dropped = step.pins, step.dropped_args
    completed_text, completed = complete_assertions(step.text, module, destination, module_names=names)
    text, qualified, inserted = qualify_names(completed_text, source_text, module, destination)
    if not (pins or dropped or completed or qualified or step.stabilized or step.dropped):
        # Only when nothing else applies: the lines of the traceback are those of this text.
        text, rekinded = rekind_arguments(text, result, source_text, destination, retried=retried)
        if rekinded:
            return RepairResult(text, destination, rekinded=rekinded)
        text, truncated, raising = truncate_tests(text, result, result.source, destination,
                                                  module_names=names, raises=raises)
        return RepairResult(text, destination, truncated=truncated, raising=raising)
    shifts = step.shifts
    if inserted is not None:  # keep the pins' lines those of the new text
        pins = tuple(replace(p, line=p.line + 1) if p.line >= inserted else p for p in pins)
        dropped = tuple(n + 1 if n >= inserted else n for n in dropped)
        completed = tuple(n + 1 if n >= inserted else n for n in completed)
        shifts += ((inserted, 1),)
    return RepairResult(text, destination, pins, qualified, dropped, completed,
                        stabilized=step.stabilized, dropped=step.dropped, shifts=shifts)


def repair_candidate(
    repo: GitRepo,
    commit: str,
    spec: VerifySpec,
    source: str,
    destination: str,
    result: VerifyResult,
    *,
    rounds: int = DEFAULT_ROUNDS,
    sandbox: Sandbox | None = None,
    limits: Limits | None = None,
) -> RepairResult:
    """Repair a verified candidate, re-running it after each round until nothing more applies.

    A test stops at its first failing assertion, so pinning one shows the next: each round pins
    what the previous run observed. The caller commits ``text`` with ``commit_message()``.

    Args:
        repo: the repository holding the commit.
        commit: the candidate commit (its source file is read from it).
        spec: the template's verify section.
        source: the module under test, a repository path.
        destination: the test file, a repository path.
        result: the candidate's first verification.
        rounds: at most this many repair-and-run rounds.
        sandbox: where the re-runs happen; default: bubblewrap.
        limits: memory, process and file-size limits.
    """
    entry = repo.tree_entry(commit, destination)
    text = repo.read_blob_bytes(entry.oid).decode("utf-8", "replace") if entry else ""
    source_entry = repo.tree_entry(commit, source)
    source_text = repo.read_blob_bytes(source_entry.oid).decode("utf-8", "replace") if source_entry else ""

    def run(content: str) -> VerifyResult:
        return verify_candidate(repo, commit, spec, source, destination, content=content,
                                sandbox=sandbox, limits=limits)

    return repair_rounds(text, result, source_text, destination, run, rounds=rounds)


def repair_rounds(
    text: str,
    result: VerifyResult,
    source_text: str,
    destination: str,
    run: Callable[[str], VerifyResult],
    *,
    rounds: int = DEFAULT_ROUNDS,
    raises: str = "self.assertRaises",
) -> RepairResult:
    """Repair a test file and re-run it with ``run`` after each round, until nothing applies.

    Args:
        text: the test file as verified.
        result: its verification.
        source_text: the module under test's code.
        destination: the test file's repository path.
        run: verifies a new text of the test file.
        rounds: at most this many repair-and-run rounds.
        raises: how an expected exception is written (``TestKind.raises``).
    """
    total = RepairResult(text, destination)
    pinned_at: set[tuple[str, int]] = set()
    retried: set[str] = set()
    current = result
    for _ in range(rounds):
        step = repair(total.text, current, source_text, destination, skip=frozenset(pinned_at),
                      retried=frozenset(retried), raises=raises)
        if not step.changed:
            break
        # A pin's line in the text the next run reports: edits above it moved it.
        pinned_at = {(test, line + sum(delta for at, delta in step.shifts if line >= at))
                     for test, line in pinned_at}
        pinned_at.update((p.test, p.line) for p in step.pinned)
        retried.update(r.test for r in step.rekinded)
        current = run(step.text)
        total = replace(total, text=step.text, pinned=total.pinned + step.pinned,
                        qualified=tuple(sorted({*total.qualified, *step.qualified})),
                        dropped_args=total.dropped_args + step.dropped_args,
                        completed=total.completed + step.completed,
                        truncated=total.truncated + step.truncated,
                        raising=total.raising + step.raising,
                        stabilized=total.stabilized + step.stabilized,
                        dropped=total.dropped + step.dropped,
                        rekinded=total.rekinded + step.rekinded, rerun=current)
    return total
