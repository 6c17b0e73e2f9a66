"""Verify a checked branch's samples in the sandbox; the response store keeps the results.

A tree verified once keeps its result under its id: the same file on the same base, checked
the same way, is not run again. ``best`` verifies every sample of a prompt and picks the one
that ranks first.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from symergion.cache import response_key
from symergion.config.schema import VerifySpec
from symergion.core.plan import Action, TaskPlan
from symergion.core.report import Event
from symergion.core.respond import Pass
from symergion.core.response import Response
from symergion.errors import TaskInputError
from symergion.verify.candidate import verify_candidate
from symergion.verify.result import Observation, TestOutcome, VerifyResult, rank
from symergion.verify.sandbox import Sandbox

# Part of the verification cache key: bump when the runner's results change meaning.
CHECK_VERSION = 3  # 3: compiled stand-ins of the source's definitions count as run


@dataclass
class Sample:
    """One generated file and what verifying it showed.

    ``blob`` and ``tree`` are the file and the tree it was verified in, once it was.
    """

    response: Response
    result: VerifyResult | None = None
    tree: str = ""
    blob: str = ""


class Verifier:
    """Verify candidates for a pass: from the store when a tree was verified, else in the sandbox."""

    def __init__(self, run: Pass) -> None:
        self.run = run
        self.repo = run.repo
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self.verify_git_seconds = 0.0  # of the pass's git time, that spent by verifications

    @property
    def sandbox(self) -> Sandbox:
        """Return the sandbox, made on first use (raises SandboxUnavailable without bwrap)."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox()
            return self._sandbox

    def best(self, tp: TaskPlan, action: Action, base: str, samples: list[Response],
              spec: VerifySpec, source: str) -> tuple[Sample, list[Sample]]:
        """Verify every sample with a valid file; return the best by rank (the first on a tie)."""
        checked = [Sample(s) for s in samples]
        valid = [s for s in checked if s.response.has_file]
        if not valid:
            for response in samples:
                if response.cache == "miss":
                    self.run.spend.discard("no valid file", int(response.tokens))
            first = samples[0]
            raise TaskInputError(
                f"task {action.task}: nothing {action.model} wrote is a valid "
                f"{tp.destination.rsplit('.', 1)[-1]} file (stop: {first.stop}); "
                "nothing was published",
                hint="give feedback, raise ntokens, or start the file with a code_starter")
        for number, sample in enumerate(valid, start=1):
            blob = sample.response.blob
            if blob is None:
                blob = self.repo.write_blob(sample.response.generated.encode("utf-8"))
            sample.blob = blob
            sample.tree = self.repo.tree_with_file(base, tp.destination, blob)
            label = f"sample {number} of {len(valid)}" if len(valid) > 1 else "the candidate"
            sample.result = self.verify(action, base, sample.tree, blob, spec, source,
                                        tp.destination, label)
        ranked = rank((f"{i:04d}", s.result) for i, s in enumerate(valid) if s.result is not None)
        best = valid[int(ranked[0][0])]
        for other in checked:
            if other is not best and other.response.cache == "miss":
                self.run.spend.discard("samples not published" if other.response.has_file
                                       else "no valid file", int(other.response.tokens))
        return best, checked

    def verify(self, action: Action, base: str, tree: str, blob: str, spec: VerifySpec,
               source: str, destination: str, label: str) -> VerifyResult:
        """Return a tree's verification: from the store when this tree was verified, else run."""
        key = response_key(kind="verify", version=CHECK_VERSION, tree=tree, spec=asdict(spec),
                           source=source, destination=destination, sandbox=self.sandbox.mode)
        entry = self.run.store.get(key)
        if entry is not None:
            return load_result(entry)
        self.run.cancel_check()
        self.run.on_event(Event("check", action.task, action.model,
                                detail=f"verifying {label} ({spec.runs} run{'s' * (spec.runs > 1)})"))
        text = self.repo.read_blob_bytes(blob).decode("utf-8", "replace")
        began, git_before = time.monotonic(), self.repo.git_seconds
        result = verify_candidate(self.repo, base, spec, source, destination, content=text,
                                  sandbox=self.sandbox)
        spend = self.run.spend
        spend.verify_runs += spec.runs
        spend.verify_seconds += time.monotonic() - began
        self.verify_git_seconds += self.repo.git_seconds - git_before
        self.run.store.put(key, dump_result(result))
        self.run.on_event(Event("check", action.task, action.model, seconds=result.seconds,
                                detail=f"verified {label}: {result.trailer()}"))
        return result


def dump_result(result: VerifyResult) -> dict[str, Any]:
    """Return a verification result as JSON-able data (for the store)."""
    data = asdict(result)
    data["tests"] = {t: [o.outcome, o.detail, o.flaky, [asdict(s) for s in o.observed]]
                     for t, o in result.tests.items()}
    data["lines"] = {c: list(ls) for c, ls in result.lines.items()}
    data["warnings"] = list(result.warnings)
    return data


def load_result(data: dict[str, Any]) -> VerifyResult:
    """Return the verification result ``dump_result`` made."""
    fields = dict(data)
    fields["tests"] = {t: TestOutcome(o, d, f, tuple(Observation(**s) for s in seen))
                       for t, (o, d, f, seen) in data["tests"].items()}
    fields["lines"] = {c: tuple(ls) for c, ls in data["lines"].items()}
    fields["warnings"] = tuple(data["warnings"])
    return VerifyResult(**fields)


__all__ = ["CHECK_VERSION", "Sample", "Verifier", "dump_result", "load_result"]
