"""Execute a plan: responses from the store, else the engine; then publish each branch.

``Reconciler.sync`` is one pass: ``read_state`` -> ``plan`` -> ``execute``. Restarting after a
crash is just another pass. A lost compare-and-swap re-reads and re-plans only that branch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from symergion.cache import ResponseStore, response_key
from symergion.config.schema import REMOTE_KIND, Checkpoint, Config
from symergion.core import prompt as prompts
from symergion.core.check import Checker, response_record
from symergion.core.compact import LEVELS
from symergion.core.plan import (
    Action,
    Plan,
    Problem,
    TaskPlan,
    branch_action,
    code_starter,
    plan,
    task_prompt,
)
from symergion.core.publish import archive, commit_message, figures, publish
from symergion.core.report import Event, Report, Result, Spend
from symergion.core.response import Response, cached
from symergion.core.state import (
    RepoState,
    model_branch,
    read_state,
    refresh_branch,
    shadow_ref,
)
from symergion.core.task import Task
from symergion.engine.base import Engine, EngineTotals, engine_totals, max_new_tokens
from symergion.engine.jobs import Job, run_jobs
from symergion.errors import Cancelled, SymergionError, TaskInputError
from symergion.gitrepo import GitRepo
from symergion.trailers import Trailers, Trimmed, body_of
from symergion.verify.finish import FINISHER_VERSION, Finisher

__all__ = ["Event", "Problem", "Reconciler", "Report", "Result", "Task", "model_branch",
           "shadow_ref"]

CAS_RETRIES = 3
STOPPED = "stopped before the response was finished; nothing was published"


EventSink = Callable[[Event], None]
EngineFactory = Callable[[Checkpoint], Engine]
FingerprintFn = Callable[[Checkpoint], str]
STATUS = {"up-to-date": "up-to-date", "keep": "kept", "skip": "skipped", "problem": "failed"}
# A branch's response, or why it has none.
Answer = Response | SymergionError


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
        self.fingerprint = fingerprint
        self.store = store
        self.on_event = on_event or (lambda _e: None)
        self.cancel = cancel or threading.Event()
        self._fingerprints: dict[tuple[str, str | None, float], str] = {}
        self.checker = Checker(self)
        # The running pass's ledger, and what the engines and git had done when it began.
        self.spend = Spend()
        self._depth = 0
        self._engines_used: dict[int, tuple[Engine, EngineTotals]] = {}
        self._git_before = (0, 0.0)
        self.verify_git_seconds = 0.0

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
        self.verify_git_seconds = 0.0
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
            spend.git_seconds = max(0.0, self.repo.git_seconds - seconds - self.verify_git_seconds)

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
                    tp.reasoning = self._reasoning(tp)
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
                i: pool.submit(self._responses, coder, self._wanted(ready, i))
                for i, coder in remote}
            try:
                for index, coder in coders:
                    self.cancel_check()
                    future = futures.get(index)
                    responses = (future.result() if future is not None
                                 else self._responses(coder, self._wanted(ready, index)))
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
                and not (sampled and self.checker.applies(tp)) and tp.task.template.guided is None]

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
        if self.checker.applies(tp):
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
        if action.branch in self.repo.checked_out_branches():
            # Checked out while the model was generating: the response waits in the cache.
            return Result(action.task, action.model, action.branch, "kept",
                          commit=action.head, reason=action.reason)
        blob = response.blob
        if blob is None:
            blob = self.repo.write_blob(response.generated.encode("utf-8"))
        for _attempt in range(CAS_RETRIES):
            message = commit_message(state, self.config, tp, action, response)
            commit = publish(self.repo, tp, action, blob, message)
            if commit is not None:
                kept, decoding = figures(response)
                if response.cache == "miss":
                    self.spend.keep(response)
                self.on_event(Event("done", action.task, action.model,
                                    tokens=int(response.tokens),
                                    seconds=float(response.seconds), cache=response.cache,
                                    detail=message.splitlines()[0][:72], kept=kept,
                                    decode_seconds=decoding or 0.0))
                return Result(
                    action.task, action.model, action.branch,
                    "updated" if action.head else "created", commit=commit,
                    message=body_of(message),
                    tokens=int(response.tokens), seconds=float(response.seconds),
                    cache=str(response.cache), stop=str(response.stop),
                    kept_tokens=kept, decode_seconds=decoding,
                )
            state, fresh = self.replan(state, tp, coder, action)
            if isinstance(fresh, Result):
                return fresh
            action = fresh
        return Result(action.task, action.model, action.branch, "failed",
                      reason="the branch kept moving while publishing; run sync again")

    def replan(self, state: RepoState, tp: TaskPlan, coder: Checkpoint,
               action: Action) -> tuple[RepoState, Action | Result]:
        """Re-plan one branch after a lost compare-and-swap: its new action, or its result.

        Someone moved the branch while we worked: a user commit is built upon, never
        overwritten; a deleted branch is not recreated.
        """
        state = refresh_branch(self.repo, state, action.task, tp.task.spec.target,
                               action.model, tp.task.tip)
        fresh = branch_action(state, tp, coder)
        if fresh.kind in ("generate", "publish"):
            return state, fresh
        reason = fresh.reason
        if fresh.kind == "skip":
            reason = "the branch was deleted while generating; not recreated"
        return state, Result(action.task, action.model, action.branch, STATUS[fresh.kind],
                             commit=fresh.head, reason=reason or None)

    def reused(self, tp: TaskPlan, action: Action) -> Response | None:
        """Return the response of an earlier commit on the branch made from the same prompt."""
        if action.kind != "publish" or action.reuse is None:
            return None
        entry = self.repo.tree_entry(action.reuse, tp.destination)
        if entry is None or entry.kind != "blob":
            return None
        trailers = Trailers.parse(self.repo.commit_message(action.reuse))
        trimmed = trailers.trimmed or Trimmed(0, 0)
        return Response(blob=entry.oid,
                        tokens=trailers.tokens if trailers.tokens is not None else 0,
                        seconds=trailers.seconds if trailers.seconds is not None else 0.0,
                        cache="hit", stop=trailers.stop if trailers.stop is not None else "eos",
                        trimmed_chars=trimmed.chars, trimmed_lines=trimmed.lines)

    # -- responses ---------------------------------------------------------------------------

    def _model_fingerprint(self, checkpoint: Checkpoint) -> str:
        # Keyed by the weights: one model file may serve checkpoints with different adapters.
        key = checkpoint.weights
        if key not in self._fingerprints:
            self._fingerprints[key] = self.fingerprint(checkpoint)
        return self._fingerprints[key]

    def cache_key(self, kind: str, checkpoint: Checkpoint, text: str, **extra: Any) -> str:
        """Return the response store's key of a ``kind`` of answer by ``checkpoint`` to ``text``."""
        return response_key(
            kind=kind,
            model=self._model_fingerprint(checkpoint),
            prompt=text,
            sampling=checkpoint.sampling.as_dict(),
            context_size=checkpoint.context_size,
            ntokens=self.config.ntokens,
            **extra,
        )

    def _reasoning(self, tp: TaskPlan) -> list[str]:
        """Run every reasoner on the base prompt (store first); return the reasoning rows."""
        initial = [prompts.call_to_action(tp.task.template.call_to_action, tp.source_code),
                   *tp.task.spec.rows]
        base = prompts.render(tp.files, initial, [], code_starter(tp.task.template, tp.task.spec))
        rows: list[str] = []
        for reasoner in self.config.reasoners:
            rows += prompts.reasoning_rows(self._reason(tp.task, reasoner, base.text))
        return rows

    def _reason(self, task: Task, reasoner: Checkpoint, text: str) -> str:
        key = self.cache_key("reasoning", reasoner, text,
                             start=list(reasoner.reasoning_start_tokens),
                             stop=list(reasoner.reasoning_stop_tokens),
                             markers=reasoner.reasoning_markers)
        entry = self.store.get(key)
        if entry is not None:
            self.on_event(Event("done", task.name, reasoner.model_name, cache="hit",
                                detail="reasoning"))
            return str(entry["text"])
        engine = self.engine(reasoner)
        chat = engine.chat_prompt(text)
        start_marker, stop_marker = self._markers(engine, reasoner)
        budget = max_new_tokens(engine.n_ctx, engine.count_tokens(chat), self.config.ntokens)
        self.on_event(Event("start", task.name, reasoner.model_name, detail="reasoning"))
        out: list[str] = []
        began = time.monotonic()
        for count, piece in enumerate(self._tokens(engine, chat, budget, 0), start=1):
            out.append(piece)
            self.progress(task.name, reasoner.model_name, count, began, budget)
            if stop_marker and piece and stop_marker[-1] in piece and stop_marker in "".join(out):
                break
        reasoning = "".join(out)
        if start_marker and start_marker in reasoning:
            reasoning = reasoning.split(start_marker, 1)[1]
        if stop_marker and stop_marker in reasoning:
            reasoning = reasoning.split(stop_marker, 1)[0]
        reasoning = reasoning.strip()
        seconds = time.monotonic() - began
        self.store.put(key, {"text": reasoning, "tokens": len(out), "seconds": seconds})
        self.on_event(Event("done", task.name, reasoner.model_name, tokens=len(out),
                            seconds=seconds, cache="miss", detail="reasoning"))
        return reasoning

    @staticmethod
    def _markers(engine: Engine, reasoner: Checkpoint) -> tuple[str, str]:
        if reasoner.reasoning_markers:
            return reasoner.reasoning_markers
        start = engine.token_text(list(reasoner.reasoning_start_tokens)).strip()
        stop = engine.token_text(list(reasoner.reasoning_stop_tokens)).strip()
        return start, stop

    def _tokens(self, engine: Engine, text: str, budget: int, stable: int) -> Iterator[str]:
        gen = engine.generate(text, max_tokens=budget, cancel=self.cancel, stable_prefix=stable)
        try:
            for piece in gen:
                if self.cancel.is_set():
                    raise Cancelled(STOPPED, hint="run sync again to finish the work")
                yield piece
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if self.cancel.is_set():
            raise Cancelled(STOPPED, hint="run sync again to finish the work")

    def progress(self, task: str, model: str, count: int, began: float, budget: int = 0) -> None:
        """Send a progress event every 16 generated tokens."""
        if count % 16 == 0:
            self.on_event(Event("progress", task, model, tokens=count,
                                seconds=time.monotonic() - began, budget=budget))

    def _responses(self, coder: Checkpoint,
                   wanted: Sequence[tuple[TaskPlan, Action]]) -> dict[str, Answer]:
        """Return a response, or the error that stopped it, for each branch in ``wanted``.

        A branch reuses its earlier commit's answer, else the store's; the rest are generated
        together in one batch of ``coder``'s engine.
        """
        out: dict[str, Answer] = {}
        asks: list[tuple[str, Task, prompts.Prompt, str]] = []
        for tp, action in wanted:
            assert tp.prompt is not None
            try:
                reused = self.reused(tp, action)
            except SymergionError as exc:
                out[action.branch] = exc
                continue
            if reused is not None:
                out[action.branch] = reused
            else:
                asks.append((action.branch, tp.task, tp.prompt, tp.destination))
        answers = self._respond_many(coder, [ask[1:] for ask in asks])
        out.update((branch, answer) for (branch, *_), answer in zip(asks, answers, strict=True))
        return out

    def fit(self, task: Task, coder: Checkpoint, prompt: prompts.Prompt
            ) -> tuple[prompts.Prompt, Engine, int, int]:
        """Return the prompt to generate from, the coder's engine, its tokens and token budget.

        The prompt is the plan's when its budget reaches the config's ``ntokens``; else its
        source is compacted (``prompts.fit``) until the budget does. The compacted prompt is
        only what the model reads: cache keys and the ``Symergion-Prompt`` trailer stay the
        plan's.

        Raises:
            TaskInputError: the prompt fills the model's context even at the last level.
        """
        engine = self.engine(coder)
        fitted = prompts.fit(prompt, engine.count_tokens, engine.n_ctx, self.config.ntokens)
        if fitted is None:
            raise TaskInputError(
                f"task {task.name}: the prompt is {engine.count_tokens(prompt.text)} tokens, which "
                f"fills the {engine.n_ctx}-token context of {coder.model_name}, even with the "
                f"source's bodies and long literals elided",
                hint="shorten the source file, or raise context_size for this checkpoint",
            )
        if fitted.level:
            self.on_event(Event("compacted", task.name, coder.model_name,
                                detail=f"the prompt is {fitted.full_tokens} tokens; the model reads "
                                       f"the source compacted to level {fitted.level} of {LEVELS - 1} "
                                       f"({fitted.tokens} tokens)"))
        return fitted.prompt, engine, fitted.tokens, fitted.budget

    def respond(
        self, task: Task, coder: Checkpoint, prompt: prompts.Prompt, destination: str
    ) -> Response:
        """Return the finished file for a prompt: from the store, else from the model."""
        (answer,) = self._respond_many(coder, [(task, prompt, destination)])
        if isinstance(answer, SymergionError):
            raise answer
        return answer

    def _respond_many(
        self, coder: Checkpoint, asks: Sequence[tuple[Task, prompts.Prompt, str]]
    ) -> list[Answer]:
        """Answer each (task, prompt, destination) from the store, or generate them together."""
        answers: list[Answer | None] = [None] * len(asks)
        keys = [""] * len(asks)
        jobs: list[Job] = []
        owners: list[tuple[int, Finisher, int]] = []  # ask index, finisher, budget
        engine: Engine | None = None
        for i, (task, prompt, destination) in enumerate(asks):
            try:
                keys[i] = self.cache_key("coder", coder, prompt.text, path=destination,
                                         finisher=FINISHER_VERSION)
                if (hit := cached(self.store.get(keys[i]))) is not None:
                    answers[i] = hit
                    continue
                fitted, engine, prompt_tokens, budget = self.fit(task, coder, prompt)
            except Cancelled:
                raise
            except SymergionError as exc:
                answers[i] = exc
                continue
            finisher = Finisher(destination, prompt.code_starter)
            jobs.append(Job(fitted.text, budget, fitted.stable_prefix, start=prompt.code_starter,
                            check=finisher.check))
            owners.append((i, finisher, budget))
            self.on_event(Event("start", task.name, coder.model_name,
                                detail=f"{prompt_tokens} prompt tokens, budget {budget}",
                                budget=budget))
        if jobs:
            assert engine is not None
            try:
                self._generate(engine, coder, asks, keys, jobs, owners, answers)
            except Cancelled:
                raise
            except SymergionError as exc:
                for i, _finisher, _budget in owners:
                    if answers[i] is None:
                        answers[i] = exc
        return [answer if answer is not None else TaskInputError("no answer") for answer in answers]

    def _generate(self, engine: Engine, coder: Checkpoint,
                  asks: Sequence[tuple[Task, prompts.Prompt, str]], keys: list[str],
                  jobs: list[Job], owners: list[tuple[int, Finisher, int]],
                  answers: list[Answer | None]) -> None:
        """Run ``jobs`` in one batch; finish, store and record each answer."""
        began = time.monotonic()

        def on_piece(job: int, _piece: str, count: int) -> None:
            i, _finisher, budget = owners[job]
            self.progress(asks[i][0].name, coder.model_name, count, began, budget)

        results = run_jobs(engine, jobs, cancel=self.cancel, on_piece=on_piece)
        if self.cancel.is_set():
            raise Cancelled(STOPPED, hint="run sync again to finish the work")
        for result, (i, finisher, budget) in zip(results, owners, strict=True):
            done = finisher.finish(result.text, result.stop)
            response = response_record(engine, done, result, budget, asks[i][1].code_starter)
            self.store.put(keys[i], response.to_record())
            answers[i] = response
