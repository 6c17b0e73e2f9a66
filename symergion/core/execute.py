"""Execute a plan: answers from the responder, then each branch's stack of commits published.

``Reconciler.sync`` is one pass: ``read_state`` -> ``plan`` -> ``execute``. Restarting after a
crash is just another pass. A lost compare-and-swap re-reads and re-plans only that branch.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from symergion.cache import ResponseStore
from symergion.config.schema import REMOTE_KIND, Checkpoint, Config
from symergion.core.plan import (
    Action,
    Plan,
    Problem,
    TaskPlan,
    branch_action,
    checked,
    plan,
    task_prompt,
)
from symergion.core.publish import STATUS, Stack, archive, commit_file, commit_message, publish_stack
from symergion.core.report import Event, Report, Result, Spend
from symergion.core.respond import Answer, FingerprintFn, Responder
from symergion.core.state import RepoState, model_branch, read_state, shadow_ref
from symergion.core.task import Task
from symergion.engine.base import Engine, EngineTotals, engine_totals
from symergion.errors import Cancelled, SymergionError, TaskInputError
from symergion.gitrepo import GitRepo

if TYPE_CHECKING:
    from symergion.core.check import Checker

__all__ = ["Event", "Problem", "Reconciler", "Report", "Result", "Task", "model_branch",
           "shadow_ref"]

EventSink = Callable[[Event], None]
EngineFactory = Callable[[Checkpoint], Engine]


class Reconciler:
    """Compute and apply the desired state of every model branch.

    Args:
        repo: the repository.
        config: the validated config.
        engines: returns a loaded engine for a checkpoint (called only on a cache miss).
        fingerprint: returns a cheap identity of a checkpoint's model file, for cache keys.
        store: the response store.
        on_event: receives progress events.
        cancel: set to stop between tokens; nothing half-made is published.
    """

    def __init__(
        self,
        repo: GitRepo,
        config: Config,
        *,
        engines: EngineFactory,
        fingerprint: FingerprintFn,
        store: ResponseStore,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.repo = repo
        self.config = config
        self.engines = engines
        self.store = store
        self.on_event = on_event or (lambda _e: None)
        self.cancel = cancel or threading.Event()
        self.responder = Responder(self, fingerprint)
        # The running pass's ledger, and what the engines and git had done when it began.
        self.spend = Spend()
        self._depth = 0
        self._engines_used: dict[int, tuple[Engine, EngineTotals]] = {}
        self._git_before = (0, 0.0)

    def read(self) -> RepoState:
        """Read the repository state one pass decides from."""
        return read_state(self.repo, self.config)

    def plan(self, state: RepoState | None = None) -> Plan:
        """Return the plan for ``state`` (read now if not given); loads no model."""
        return plan(state or self.read(), self.config)

    def sync(self) -> Report:
        """Run one reconcile pass and return what it did."""
        with self.accounting():
            state = self.read()
            return self.execute(state, plan(state, self.config))

    @contextlib.contextmanager
    def accounting(self) -> Iterator[Spend]:
        """Keep the ledger of a pass (``Report.spend``); the outermost use opens and closes it."""
        if self._depth:
            self._depth += 1
            try:
                yield self.spend
            finally:
                self._depth -= 1
            return
        self._depth = 1
        spend = self.spend = Spend()
        self._engines_used = {}
        self._git_before = (self.repo.git_calls, self.repo.git_seconds)
        if "checker" in self.__dict__:
            self.checker.verifier.verify_git_seconds = 0.0
        began = time.monotonic()
        try:
            yield spend
        finally:
            self._depth = 0
            spend.wall_seconds = time.monotonic() - began
            for engine, before in self._engines_used.values():
                done = engine_totals(engine).since(before)
                spend.prompt_tokens += done.prompt_tokens
                spend.reused_tokens += done.reused_tokens
                spend.prompt_seconds += done.prompt_seconds
                spend.decoded_tokens += done.decoded_tokens
                spend.decode_seconds += done.decode_seconds
            calls, seconds = self._git_before
            spend.git_calls = self.repo.git_calls - calls
            verifying = self.checker.verifier.verify_git_seconds if "checker" in self.__dict__ else 0.0
            spend.git_seconds = max(0.0, self.repo.git_seconds - seconds - verifying)

    @functools.cached_property
    def checker(self) -> Checker:
        """Return the pass's checker, made on first use: a pass with nothing to check (a no-op
        sync) never imports the checks' machinery (sandbox, prune, repairs, guided writing)."""
        from symergion.core.check import Checker

        return Checker(self, self.responder)

    def engine(self, checkpoint: Checkpoint) -> Engine:
        """Return a checkpoint's engine (loading it takes the pass's load time)."""
        began = time.monotonic()
        engine = self.engines(checkpoint)
        self.spend.load_seconds += time.monotonic() - began  # a loaded engine comes back at once
        if id(engine) not in self._engines_used:
            self._engines_used[id(engine)] = (engine, engine_totals(engine))
        return engine

    def cancel_check(self) -> None:
        """Raise Cancelled if a stop was requested."""
        if self.cancel.is_set():
            raise Cancelled("stopped; nothing half-made was published",
                            hint="run sync again to finish the work")

    # -- the pass ----------------------------------------------------------------------------

    def execute(self, state: RepoState, the_plan: Plan) -> Report:
        """Carry out a plan: retire, reason, generate or reuse, publish; return the report."""
        with self.accounting() as spend:
            return self._execute(state, the_plan, Report(problems=list(the_plan.problems),
                                                         spend=spend))

    def _execute(self, state: RepoState, the_plan: Plan, report: Report) -> Report:
        for problem in the_plan.problems:
            self.on_event(Event("problem", problem.where, "", detail=problem.message))
        for action in the_plan.retire:
            self._retire(state, action, report)
        ready: list[TaskPlan] = []
        for tp in the_plan.tasks:
            if tp.prompt is None:
                try:
                    tp.reasoning = self.responder.reasoning(tp)
                except Cancelled:
                    raise
                except SymergionError as exc:
                    report.problems.append(Problem(f"task {tp.task.name}", str(exc)))
                    self.on_event(Event("problem", tp.task.name, "", detail=str(exc)))
                    continue
                tp.prompt = task_prompt(tp, tp.reasoning)
                tp.actions = [branch_action(state, tp, c) for c in self.config.coders]
            ready.append(tp)
        # Coder-major order: each model is loaded once per pass even with model_cache_size 1.
        # All the branches one model must generate decode together, in one batch. Models on
        # remote endpoints generate in threads of their own, beside the local ones.
        coders = list(enumerate(self.config.coders))
        remote = [(i, c) for i, c in coders if c.kind == REMOTE_KIND]
        with ThreadPoolExecutor(max_workers=max(1, len(remote)),
                                thread_name_prefix="endpoint") as pool:
            futures: dict[int, Future[dict[str, Answer]]] = {
                i: pool.submit(self.responder.answers, coder, self._wanted(ready, i))
                for i, coder in remote}
            try:
                for index, coder in coders:
                    self.cancel_check()
                    future = futures.get(index)
                    responses = (future.result() if future is not None
                                 else self.responder.answers(coder, self._wanted(ready, index)))
                    for tp in ready:
                        self.cancel_check()
                        report.results.append(
                            self._result(state, tp, coder, tp.actions[index], responses))
            except BaseException:
                # Leaving early (a stop, or a bug): the endpoint threads stop too.
                self.cancel.set()
                raise
        rebuilt = getattr(self.store, "rebuilt", None)
        if rebuilt is not None:
            report.notices.append(f"the response cache was corrupt: moved it aside to {rebuilt} "
                                  "and started a new one (delete the old one when done)")
        unavailable = getattr(self.store, "unavailable", None)
        if unavailable is not None:
            report.notices.append(f"{unavailable}: this pass ran without caching responses "
                                  "(is the disk full? the cache is kept as it was)")
        return report

    def _wanted(self, ready: Sequence[TaskPlan], index: int) -> list[tuple[TaskPlan, Action]]:
        # A repair round starts from the failure its branch records, not from the task's prompt;
        # a checked branch with several samples decodes them all in one batch of its own, and a
        # guided file is written test by test by the checker.
        sampled = self.config.coders[index].samples > 1
        return [(tp, tp.actions[index]) for tp in ready
                if tp.actions[index].kind not in STATUS and not tp.actions[index].repair
                and not (sampled and checked(tp)) and tp.task.template.guided is None]

    def _result(self, state: RepoState, tp: TaskPlan, coder: Checkpoint, action: Action,
                responses: dict[str, Answer]) -> Result:
        try:
            return self._carry_out(state, tp, coder, action, responses.get(action.branch))
        except Cancelled:
            raise
        except SymergionError as exc:
            self.on_event(Event("problem", action.task, action.model, detail=str(exc)))
            return Result(action.task, action.model, action.branch, "failed", reason=str(exc))

    def _retire(self, state: RepoState, action: Action, report: Report) -> None:
        if action.kind == "keep":
            report.results.append(Result(action.task, action.model, action.branch, "kept",
                                         reason=action.reason))
            return
        archived = archive(self.repo, state, action)
        if archived is not None:
            report.results.append(Result(action.task, action.model, action.branch, "retired",
                                         commit=action.head or action.shadow,
                                         reason=f"archived as {archived}"))
            self.on_event(Event("done", action.task, action.model,
                                detail=f"task ended; archived {archived}"))

    def _carry_out(self, state: RepoState, tp: TaskPlan, coder: Checkpoint,
                   action: Action, response: Answer | None) -> Result:
        if action.kind in STATUS:
            commit = action.head if action.kind in ("up-to-date", "keep") else None
            return Result(action.task, action.model, action.branch, STATUS[action.kind],
                          commit=commit, reason=action.reason or None)
        if isinstance(response, SymergionError):
            raise response
        if checked(tp):
            return self.checker.carry_out(state, tp, coder, action, response)
        assert response is not None, f"no response was made for {action.branch}"
        if not response.has_file:
            if response.cache == "miss":
                self.spend.discard("no valid file", int(response.tokens))
            raise TaskInputError(
                f"task {action.task}: nothing {action.model} wrote is a valid "
                f"{tp.destination.rsplit('.', 1)[-1]} file (stop: {response.stop}); "
                "nothing was published",
                hint="give feedback, raise ntokens, or start the file with a code_starter")
        blob = response.blob
        if blob is None:
            blob = self.repo.write_blob(response.generated.encode("utf-8"))

        def one_commit(state: RepoState, action: Action, _attempt: int) -> Stack:
            # The same answer on every attempt: a re-planned branch gets it on its new tip.
            message = commit_message(state, self.config, tp, action, response)
            return Stack.single(commit_file(self.repo, tp, action, blob, message), message,
                                response)

        result = publish_stack(self.repo, state, tp, coder, action, one_commit, self.on_event)
        # A generated answer counts as kept once a published commit holds it.
        if result.status in ("created", "updated") and response.cache == "miss":
            self.spend.keep(response)
        return result
