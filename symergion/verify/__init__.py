"""Verification of candidates: run their tests in a sandbox, record the result, keep what passes.

The API the reconcile pass uses:

- ``verify_candidate(repo, commit, spec, source, destination) -> VerifyResult`` runs a candidate's
  tests in a throwaway checkout under bubblewrap;
- ``VerifyResult.trailer()`` / ``message_lines()`` write the result into a commit message and
  ``VerifyResult.from_message()`` reads it back; ``rank()`` orders a task's candidates;
- ``prune(text, result, destination)`` removes failing, erring and flaky tests (with
  ``redundant=True`` also passing tests that add no coverage), and ``prune_candidate(...)`` also
  re-runs the pruned file to confirm it;
- ``repair(text, result, source_text, destination)`` qualifies names of the module under test,
  completes and pins failing equality assertions to observed values (``pin``), gives arguments
  Python rejected a value of the right kind (``rekind``), cuts a test at its failing statement or
  expects the exception the module raised (``truncate``); ``repair_candidate(...)`` re-runs it;
- ``render_code_starter(code_starter, source, destination)`` fills a code starter's placeholders;
  ``examples.few_shot_files`` and ``examples.test_case_starter`` make the TestCase few-shot prompt;
- ``guide.guided_file(generate, GuidedTask(prompt_text, code_starter, source_text, alias,
  destination), GuideOptions(budget=...))`` writes a TestCase file one public name of the module
  at a time (``openers.targets``), binding each required parameter to a named variable before
  the call; with ``GuideOptions(variants=k, sample=...)`` it adds sampled tests per target.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symergion.verify.candidate import VerifyError, verify_candidate
    from symergion.verify.names import imports_module, module_of, render_code_starter
    from symergion.verify.pin import Pin
    from symergion.verify.prune import PruneResult, Removed, prune, prune_candidate
    from symergion.verify.repair import RepairResult, repair, repair_candidate
    from symergion.verify.result import TRAILER, TestOutcome, VerifyResult, rank
    from symergion.verify.sandbox import Limits, Sandbox, SandboxUnavailable

# Where each name of the API lives. They load on first use: a pass with nothing to check (a
# no-op sync) reads names and results only, and need not import the sandbox, prune and repairs.
_HOMES = {
    "VerifyError": "candidate", "verify_candidate": "candidate",
    "imports_module": "names", "module_of": "names", "render_code_starter": "names",
    "Pin": "pin",
    "PruneResult": "prune", "Removed": "prune", "prune": "prune", "prune_candidate": "prune",
    "RepairResult": "repair", "repair": "repair", "repair_candidate": "repair",
    "TRAILER": "result", "TestOutcome": "result", "VerifyResult": "result", "rank": "result",
    "Limits": "sandbox", "Sandbox": "sandbox", "SandboxUnavailable": "sandbox",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "TRAILER",
    "Limits",
    "Pin",
    "PruneResult",
    "Removed",
    "RepairResult",
    "Sandbox",
    "SandboxUnavailable",
    "TestOutcome",
    "VerifyError",
    "VerifyResult",
    "imports_module",
    "module_of",
    "prune",
    "prune_candidate",
    "rank",
    "render_code_starter",
    "repair",
    "repair_candidate",
    "verify_candidate",
]
