"""A prompt's chain on a model branch: its candidate, prune and repair commits, read from trailers.

With a template that verifies, one prompt can leave several commits of symergion's on a model
branch, newest last::

    candidate (Symergion-Prompt: P, Symergion-Verify: ...)
    Prune: removed 2 failing tests (Symergion-Prune: 2)
    Repair: FAIL test_x.T.test_b: ... (Symergion-Repair: P 1, Symergion-Prompt: P1)
    Prune: removed 1 failing test

With a guided template, repairs that need no model (pinned assertions, expected exceptions)
come right after a candidate as ``Repair: pinned 2 assertions`` (``Symergion-Fix``); that
commit stands for the candidate it repairs, its result deciding whether a model repair is due.

All of them belong to the prompt ``P`` the human's notes make, so the plan knows from the
repository alone whether a branch is done, and a re-run reproduces every repair prompt from
the failures recorded in the candidate's message. Pure functions: no git, no engine.
"""

from __future__ import annotations

from symergion.config.schema import VerifySpec
from symergion.core.state import Commit
from symergion.trailers import Trailers
from symergion.verify.kinds import UNITTEST, TestKind
from symergion.verify.names import module_of
from symergion.verify.result import VerifyResult, problem_line

REPAIR_LINES = 6
REPAIR_OPENING = "The tests in "  # how a repair round's feedback paragraph begins
_LINE_CHARS = 200


def base_digest(commit: Commit) -> str | None:
    """Return the digest of the prompt a commit belongs to: its own, or the one it repairs."""
    repair = commit.trailers.repair
    return repair.digest if repair is not None else commit.trailers.prompt


def repair_round(commit: Commit) -> int:
    """Return the repair round a commit answers (0 for the notes' own prompt)."""
    repair = commit.trailers.repair
    return repair.round if repair is not None else 0


def prompt_chain(own: list[Commit], digest: str) -> list[Commit]:
    """Return the newest commits of ``own`` (newest first) that belong to ``digest``."""
    chain: list[Commit] = []
    for commit in own:
        if base_digest(commit) != digest:
            break
        chain.append(commit)
    return chain


def candidate(chain: list[Commit]) -> Commit | None:
    """Return the newest commit of a chain that a model wrote (not a prune of one)."""
    return next((c for c in chain if c.trailers.prune is None), None)


def next_repair(chain: list[Commit], spec: VerifySpec | None) -> int | None:
    """Return the repair round a prompt's chain still needs, or None when it is done.

    A chain needs a repair when its latest candidate's recorded verification failed, or passed
    without a test that exercises the source (an empty suite, or tests that call nothing), and
    fewer than ``repair_rounds`` repairs were made for this prompt. A candidate without a result
    (made before the template verified) needs none, and neither does one whose prune left a
    useful file (``pruned_useful``), nor a file a revoke brought back from a hand commit.
    """
    if spec is None or spec.repair_rounds <= 0 or not chain:
        return None
    latest = candidate(chain)
    if latest is None or latest.trailers.hand is not None:  # hand work is never repaired
        return None
    result = VerifyResult.from_message(latest.message)
    done = repair_round(latest)
    if result is None or useful(result) or done >= spec.repair_rounds or pruned_useful(chain[0]):
        return None
    return done + 1


def pruned_useful(newest: Commit) -> bool:
    """Return whether a chain's newest commit is a prune that left a useful file.

    The model repair round rewrites the whole file to fix tests the prune already took out: on
    the acceptance sets of docs/quality.md it never added coverage to a pruned file that passed
    and ran module code, at 42-56% of a pass's tokens. It stays due where the prune left nothing
    useful (every test failed, or the file was dropped).
    """
    return _pruned_useful(newest.trailers, newest.message)


def pruned_useful_message(message: str) -> bool:
    """Return whether a commit message is a prune's whose recorded result is useful."""
    return _pruned_useful(Trailers.parse(message), message)


def _pruned_useful(trailers: Trailers, message: str) -> bool:
    if trailers.prune is None:
        return False
    result = VerifyResult.from_message(message)
    return result is not None and useful(result)


def useful(result: VerifyResult) -> bool:
    """Return whether a verified candidate passed with at least one test that exercises the source."""
    return result.ok and result.passing_exercising > 0


def repair_feedback(result: VerifyResult, destination: str, kind: TestKind = UNITTEST) -> str:
    """Return the feedback a failed verification gives the model's next attempt.

    Only what the commit message records is used (the counts, whether it imports the module,
    the first failure lines), so a later pass or another clone rebuilds the same text.
    """
    module = module_of(result.source) if result.source else ""
    lines = [f"{REPAIR_OPENING}{destination} were run: {result.passed} passed, {result.failed} failed, "
             f"{result.errors} errors. Fix the tests so that they pass:"]
    if result.load_error:
        lines.append(f"- it cannot be imported: {problem_line(result.load_error)}"[:_LINE_CHARS])
    for test, outcome in list(result.tests.items())[:REPAIR_LINES]:
        label = "is flaky" if outcome.flaky else ("fails" if outcome.outcome == "failed" else "errs")
        lines.append(f"- {test} {label}: {outcome.detail}"[:_LINE_CHARS])
    if not (result.passed or result.failed or result.errors or result.load_error):
        lines.append(f"- it has no tests: {kind.no_tests} that call {module or 'the code'} and check "
                     "what it returns")
    if result.timed_out:
        lines.append("- the tests ran out of time: do not wait, loop forever or read input")
    if module and not result.imports_source:
        lines.append(f"- import {module} and call its functions")
    elif module and result.passing_exercising == 0 and result.passed:
        lines.append(f"- the passing tests do not call {module}: call its functions and check "
                     "what they return")
    return "\n".join(lines)


def repair_paragraph(body: str) -> str | None:
    """Return the failures a repair round's prompt ended with, read from the round's commit body.

    ``Checker`` writes ``repair_feedback``'s text as its own paragraph of the ``Repair:`` commit;
    None for a body without one (a prune or a fix on top of the round answers the same prompt).
    """
    return next((p for p in body.split("\n\n") if p.startswith(REPAIR_OPENING)), None)

