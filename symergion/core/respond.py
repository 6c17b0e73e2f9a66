"""Answer a prompt: an earlier commit's file, else the response store's, else the model's.

One chain serves every path of the pass: the ``Responder`` reuses the file an earlier commit
on the branch made for the same prompt; else it reads the response store; else it fits the
prompt into the model's context and generates, and stores what it finished. Plain generation
asks for a batch of branches at once (``answers``); a checked branch asks for its samples
(``samples``), written test by test when its template is guided. Reasoners answer through the
same store and engines (``reasoning``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any, Protocol

from symergion.cache import ResponseStore, response_key
from symergion.config.schema import Checkpoint, Config
from symergion.core import prompt as prompts
from symergion.core.compact import LEVELS
from symergion.core.guided import VARIANT_TEMPERATURE, guided_file
from symergion.core.plan import Action, TaskPlan, code_starter
from symergion.core.report import Event, Spend
from symergion.core.response import Response, cached
from symergion.core.task import Task
from symergion.engine.base import Engine, engine_totals, max_new_tokens
from symergion.engine.jobs import Job, JobResult, run_jobs
from symergion.errors import Cancelled, SymergionError, TaskInputError
from symergion.gitrepo import GitRepo
from symergion.trailers import Trailers, Trimmed
from symergion.verify import guide
from symergion.verify.finish import FINISHER_VERSION, Finished, Finisher

GUIDE_VERSION = guide.GUIDE_VERSION
STOPPED = "stopped before the response was finished; nothing was published"

FingerprintFn = Callable[[Checkpoint], str]
# A branch's response, or why it has none.
Answer = Response | SymergionError


class Pass(Protocol):
    """What answering and checking need of the pass that runs them (``core.execute.Reconciler``).

    The pass owns the repository, the config, the response store, the ledger and the events,
    and loads the engines (its ledger counts their work); a responder and a checker use them
    and never import the module that drives them.
    """

    repo: GitRepo
    config: Config
    store: ResponseStore
    cancel: threading.Event
    spend: Spend
    on_event: Callable[[Event], None]

    def engine(self, checkpoint: Checkpoint) -> Engine:
        """Return a checkpoint's engine (loading it takes the pass's load time)."""

    def cancel_check(self) -> None:
        """Raise ``Cancelled`` if the pass was asked to stop."""


class Responder:
    """Answer prompts for a pass: earlier commit, then store, then fit, then the engine.

    Args:
        run: the pass whose store, engines, ledger and events the answers use.
        fingerprint: returns a cheap identity of a checkpoint's model file, for cache keys.
    """

    def __init__(self, run: Pass, fingerprint: FingerprintFn) -> None:
        self.run = run
        self.fingerprint = fingerprint
        self._fingerprints: dict[tuple[str, str | None, float], str] = {}

    # -- the chain -----------------------------------------------------------------------------

    def reused(self, tp: TaskPlan, action: Action) -> Response | None:
        """Return the response of an earlier commit on the branch made from the same prompt."""
        if action.kind != "publish" or action.reuse is None:
            return None
        repo = self.run.repo
        entry = repo.tree_entry(action.reuse, tp.destination)
        if entry is None or entry.kind != "blob":
            return None
        if action.hand is not None:
            # The file as the user left it on top of that answer: it comes back with the prompt.
            hand = repo.tree_entry(action.hand, tp.destination)
            if hand is not None and hand.kind == "blob" and hand.oid != entry.oid:
                return Response(blob=hand.oid, hand=action.hand)
        trailers = Trailers.parse(repo.commit_message(action.reuse))
        trimmed = trailers.trimmed or Trimmed(0, 0)
        return Response(blob=entry.oid,
                        tokens=trailers.tokens if trailers.tokens is not None else 0,
                        seconds=trailers.seconds if trailers.seconds is not None else 0.0,
                        cache="hit", stop=trailers.stop if trailers.stop is not None else "eos",
                        trimmed_chars=trimmed.chars, trimmed_lines=trimmed.lines)

    def answers(self, coder: Checkpoint,
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
            ntokens=self.run.config.ntokens,
            **extra,
        )

    # -- reasoning -------------------------------------------------------------------------------

    def reasoning(self, tp: TaskPlan) -> list[str]:
        """Run every reasoner on the base prompt (store first); return the reasoning rows."""
        initial = [prompts.call_to_action(tp.task.template.call_to_action, tp.source_code),
                   *tp.task.spec.rows]
        base = prompts.render(tp.files, initial, [], code_starter(tp.task.template, tp.task.spec))
        rows: list[str] = []
        for reasoner in self.run.config.reasoners:
            rows += prompts.reasoning_rows(self._reason(tp.task, reasoner, base.text))
        return rows

    def _reason(self, task: Task, reasoner: Checkpoint, text: str) -> str:
        key = self.cache_key("reasoning", reasoner, text,
                             start=list(reasoner.reasoning_start_tokens),
                             stop=list(reasoner.reasoning_stop_tokens),
                             markers=reasoner.reasoning_markers)
        entry = self.run.store.get(key)
        if entry is not None:
            self.run.on_event(Event("done", task.name, reasoner.model_name, cache="hit",
                                    detail="reasoning"))
            return str(entry["text"])
        engine = self.run.engine(reasoner)
        chat = engine.chat_prompt(text)
        start_marker, stop_marker = self._markers(engine, reasoner)
        budget = max_new_tokens(engine.n_ctx, engine.count_tokens(chat), self.run.config.ntokens)
        self.run.on_event(Event("start", task.name, reasoner.model_name, detail="reasoning"))
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
        self.run.store.put(key, {"text": reasoning, "tokens": len(out), "seconds": seconds})
        self.run.on_event(Event("done", task.name, reasoner.model_name, tokens=len(out),
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
        gen = engine.generate(text, max_tokens=budget, cancel=self.run.cancel, stable_prefix=stable)
        try:
            for piece in gen:
                if self.run.cancel.is_set():
                    raise Cancelled(STOPPED, hint="run sync again to finish the work")
                yield piece
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if self.run.cancel.is_set():
            raise Cancelled(STOPPED, hint="run sync again to finish the work")

    def progress(self, task: str, model: str, count: int, began: float, budget: int = 0) -> None:
        """Send a progress event every 16 generated tokens."""
        if count % 16 == 0:
            self.run.on_event(Event("progress", task, model, tokens=count,
                                    seconds=time.monotonic() - began, budget=budget))

    # -- coders' responses ----------------------------------------------------------------------

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
        engine = self.run.engine(coder)
        fitted = prompts.fit(prompt, engine.count_tokens, engine.n_ctx, self.run.config.ntokens)
        if fitted is None:
            raise TaskInputError(
                f"task {task.name}: the prompt is {engine.count_tokens(prompt.text)} tokens, which "
                f"fills the {engine.n_ctx}-token context of {coder.model_name}, even with the "
                f"source's bodies and long literals elided",
                hint="shorten the source file, or raise context_size for this checkpoint",
            )
        if fitted.level:
            self.run.on_event(Event(
                "compacted", task.name, coder.model_name,
                detail=f"the prompt is {fitted.full_tokens} tokens; the model reads the source "
                       f"compacted to level {fitted.level} of {LEVELS - 1} ({fitted.tokens} tokens)"))
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
                if (hit := cached(self.run.store.get(keys[i]))) is not None:
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
            self.run.on_event(Event("start", task.name, coder.model_name,
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

        results = run_jobs(engine, jobs, cancel=self.run.cancel, on_piece=on_piece)
        if self.run.cancel.is_set():
            raise Cancelled(STOPPED, hint="run sync again to finish the work")
        for result, (i, finisher, budget) in zip(results, owners, strict=True):
            done = finisher.finish(result.text, result.stop)
            response = response_record(engine, done, result, budget, asks[i][1].code_starter)
            self.run.store.put(keys[i], response.to_record())
            answers[i] = response

    # -- a checked branch's samples ----------------------------------------------------------

    def samples(self, tp: TaskPlan, coder: Checkpoint, prompt: prompts.Prompt,
                first: Response | None = None, deadline: float | None = None) -> list[Response]:
        """Return the checkpoint's samples for a prompt: from the store, else generated together.

        ``first``, when given, is the first sample (the one with the checkpoint's own seed).
        ``deadline`` is when the branch's time budget ends (monotonic), for a guided file.
        """
        run, task = self.run, tp.task
        count = coder.samples
        if task.template.guided is not None:
            # The first sample is written by guided generation; any others complete freely.
            first = self.guided(tp, coder, prompt, deadline)
        if count == 1:
            return [first or self.respond(task, coder, prompt, tp.destination)]
        keys = [self.cache_key("coder", coder, prompt.text, path=tp.destination,
                               finisher=FINISHER_VERSION, **({} if i == 0 else {"sample": i}))
                for i in range(count)]
        records: list[Response | None] = [first] if first is not None else []
        for key in keys[len(records):]:
            records.append(cached(run.store.get(key)))
        missing = [i for i, r in enumerate(records) if r is None]
        if missing:
            fitted, engine, prompt_tokens, budget = self.fit(task, coder, prompt)
            finishers = {i: Finisher(tp.destination, prompt.code_starter) for i in missing}
            jobs = [Job(fitted.text, budget, fitted.stable_prefix, start=prompt.code_starter,
                        check=finishers[i].check, seed=None if i == 0 else coder.sampling.seed + i)
                    for i in missing]
            run.on_event(Event("start", task.name, coder.model_name, budget=budget,
                               detail=f"{prompt_tokens} prompt tokens, budget {budget}, "
                                      f"{len(jobs)} samples"))
            began = time.monotonic()

            def progress(index: int, _piece: str, count: int) -> None:
                if index == 0:
                    self.progress(task.name, coder.model_name, count, began, budget)

            results = run_jobs(engine, jobs, cancel=run.cancel, on_piece=progress)
            run.cancel_check()
            for i, job_result in zip(missing, results, strict=True):
                done = finishers[i].finish(job_result.text, job_result.stop)
                response = response_record(engine, done, job_result, budget, prompt.code_starter)
                run.store.put(keys[i], response.to_record())
                records[i] = response
        return [r for r in records if r is not None]

    def guided(self, tp: TaskPlan, coder: Checkpoint, prompt: prompts.Prompt,
               deadline: float | None = None) -> Response:
        """Return the guided file for a prompt: from the store, else written test by test.

        ``deadline`` is when the branch's time budget ends (monotonic): the file stops there,
        with the tests written so far, and is not stored.
        """
        run, task = self.run, tp.task
        spec = task.template.guided
        source = task.spec.params.get("source")
        assert spec is not None and source is not None and tp.source_code is not None
        key = self.cache_key("coder", coder, prompt.text, path=tp.destination,
                             finisher=FINISHER_VERSION, guide=GUIDE_VERSION, guided=asdict(spec),
                             variants_at=VARIANT_TEMPERATURE)
        if (hit := cached(run.store.get(key))) is not None:
            return hit
        if not tp.destination.endswith(".py"):
            raise TaskInputError(
                f"task {task.name}: guided generation writes Python unittest files, and "
                f"{tp.destination} is not a .py file",
                hint=f'set "guided": false in the {task.template.name} template for this task')
        fitted, engine, prompt_tokens, budget = self.fit(task, coder, prompt)
        run.on_event(Event("start", task.name, coder.model_name, budget=budget,
                           detail=f"{prompt_tokens} prompt tokens, budget {budget}, guided"))
        began = time.monotonic()
        before = engine_totals(engine)
        verify = task.template.verify
        # A first prompt's file may be followed by a repair round: a whole file again.
        first = tp.prompt is None or len(prompt.feedback) <= len(tp.prompt.feedback)
        files_left = 2 if first and verify is not None and verify.repair_rounds else 1
        tokens = 0

        def on_token(count: int) -> None:
            nonlocal tokens
            tokens = count
            self.progress(task.name, coder.model_name, count, began, budget)

        def on_test(tried: int, planned: int) -> None:
            # The pass's time left: the tests left at this file's pace, the verifications after
            # it at the pass's pace so far, a repair round's file when one may follow; never
            # past the time budget.
            now = time.monotonic()
            per_test = (now - began) / tried
            spent = run.spend
            per_check = spent.verify_seconds / spent.verify_runs * (verify.runs if verify else 1) \
                if spent.verify_runs else 0.0
            eta = per_test * (planned - tried) + (files_left - 1) * per_test * planned \
                + files_left * 3 * per_check
            if deadline is not None:
                eta = min(eta, max(0.0, deadline - now))
            run.on_event(Event("progress", task.name, coder.model_name, tokens=tokens,
                               seconds=now - began, budget=budget, eta=eta))

        def out_of_time() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        written = guided_file(engine, fitted, tp.source_code, source, tp.destination, budget,
                              spec, coder, cancel=run.cancel, on_token=on_token,
                              marks=fitted.earlier_marks, out_of_time=out_of_time,
                              on_test=on_test)
        run.cancel_check()
        spent = engine_totals(engine).since(before)
        discarded = dict(written.discarded)
        if not written.text:
            discarded = {"no valid file": written.tokens}
        response = Response(text=written.text, tokens=written.tokens, budget=budget,
                            seconds=round(time.monotonic() - began, 3), stop="guided",
                            trimmed_chars=0, trimmed_lines=0, parses=bool(written.text),
                            kept_tokens=written.kept_tokens if written.text else 0,
                            discarded=discarded, decode_seconds=round(spent.decode_seconds, 3),
                            cache="miss")
        if written.cut:
            # Not stored: a pass with more time writes the whole file for this prompt.
            done = len(written.tested) + len(written.variants)
            return replace(response, cut=f"the guided file stopped after {done} tests")
        run.store.put(key, response.to_record())
        return response


def response_record(engine: Engine, done: Finished, result: JobResult, budget: int,
                    code_starter: str) -> Response:
    """Return the response of one finished generation in this pass, with its honest figures.

    ``tokens`` are all the tokens decoded; ``kept_tokens`` those of the finished text (the
    code starter, which the model did not write, aside); ``decode_seconds`` the time spent
    decoding them (in a batch, the time of the steps this sequence took part in).
    """
    kept = 0
    if done.text:
        kept = max(0, engine.count_tokens(done.text) - engine.count_tokens(code_starter))
        kept = min(kept, result.tokens)
    discarded = {("trimmed" if done.text else "no valid file"): result.tokens - kept}
    return Response(text=done.text, tokens=result.tokens, budget=budget,
                    seconds=round(result.seconds, 3), stop=done.stop,
                    trimmed_chars=done.trimmed_chars, trimmed_lines=done.trimmed_lines,
                    parses=done.parses, kept_tokens=kept,
                    discarded={k: v for k, v in discarded.items() if v > 0},
                    decode_seconds=round(result.stats.generation_seconds, 3), cache="miss")


__all__ = ["GUIDE_VERSION", "Answer", "Pass", "Responder", "response_record"]
