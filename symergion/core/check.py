"""Check candidates before a human looks: verify, keep the best sample, prune, repair; then publish.

The pass calls ``Checker.carry_out`` for a model branch whose task template has a ``verify``
section. One prompt then becomes a small stack of commits, published with one compare-and-swap:

1. the candidate: the best of the checkpoint's ``samples`` by verification rank, with its
   ``Symergion-Verify`` trailer, the first failure lines and the other samples' scores;
2. ``Prune: removed N failing tests`` on top when ``prune`` is on and tests failed, erred,
   flickered or ran no line of the source (a file left without passing tests, or that does not
   import the module under test, is removed), with the re-run's trailer;
3. while the candidate failed and ``repair_rounds`` allow, ``Repair: ...``: the model's next
   attempt, prompted with the human's notes first and then the failures its message records,
   checked the same way.

Every commit carries the prompt's trailers (``core/chain.py``), so the next plan sees the branch
is done. Results come from the repository where it has them (a republished attempt keeps its
trailer) and from the response store by tree otherwise, so the same file gets the same trailer.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from symergion.cache import ResponseStore, response_key
from symergion.config.schema import Checkpoint, Config, GuideSpec, VerifySpec
from symergion.core import prompt as prompts
from symergion.core.chain import (
    candidate,
    prompt_chain,
    pruned_useful_message,
    repair_feedback,
    useful,
)
from symergion.core.plan import Action, TaskPlan, own_commits
from symergion.core.publish import (
    attempt_base,
    commit_message,
    figure_trailers,
    figures,
    prompt_trailers,
)
from symergion.core.report import Event, Result, Spend
from symergion.core.response import Response, cached
from symergion.core.state import RepoState, shadow_ref
from symergion.core.task import Task
from symergion.engine.base import Engine, GenerationRequest, engine_totals
from symergion.engine.jobs import Job, JobResult, run_jobs
from symergion.errors import TaskInputError
from symergion.gitrepo import ZERO_OID, GitRepo
from symergion.trailers import Repair, Trailers, body_of
from symergion.verify import guide
from symergion.verify.candidate import verify_candidate
from symergion.verify.examples import module_alias
from symergion.verify.finish import FINISHER_VERSION, Finished, Finisher
from symergion.verify.prune import UNCHECKED, prune
from symergion.verify.repair import repair_rounds
from symergion.verify.result import (
    Observation,
    TestOutcome,
    VerifyResult,
    parse_trailer,
    rank,
)
from symergion.verify.sandbox import Sandbox

# Part of the verification cache key: bump when the runner's results change meaning.
CHECK_VERSION = 3  # 3: compiled stand-ins of the source's definitions count as run
GUIDE_VERSION = guide.GUIDE_VERSION
VARIANT_TEMPERATURE = 0.8  # the variants of a greedy checkpoint's guided file
CAS_RETRIES = 3
_PRUNE_PASSES = 3  # a pruned file whose re-run fails again is pruned again, this many times at most
STATUS = {"up-to-date": "up-to-date", "keep": "kept", "skip": "skipped", "problem": "failed"}


class Pass(Protocol):
    """What a check needs of the pass that runs it (``core.execute.Reconciler`` is one).

    The pass owns the engines, the response store, the ledger and the events; the checker
    asks it for answers and re-plans, so it never imports the module that drives it.
    """

    repo: GitRepo
    config: Config
    store: ResponseStore
    cancel: threading.Event
    spend: Spend
    verify_git_seconds: float
    on_event: Callable[[Event], None]

    def cancel_check(self) -> None:
        """Raise ``Cancelled`` if the pass was asked to stop."""

    def replan(self, state: RepoState, tp: TaskPlan, coder: Checkpoint,
               action: Action) -> tuple[RepoState, Action | Result]:
        """Re-plan one branch after a lost compare-and-swap: its new action, or its result."""

    def reused(self, tp: TaskPlan, action: Action) -> Response | None:
        """Return the response of an earlier commit on the branch made from the same prompt."""

    def cache_key(self, kind: str, checkpoint: Checkpoint, text: str, **extra: Any) -> str:
        """Return the response store's key of a ``kind`` of answer by ``checkpoint`` to ``text``."""

    def fit(self, task: Task, coder: Checkpoint, prompt: prompts.Prompt
            ) -> tuple[prompts.Prompt, Engine, int, int]:
        """Return the prompt to generate from, the coder's engine, its tokens and token budget."""

    def respond(self, task: Task, coder: Checkpoint, prompt: prompts.Prompt,
                destination: str) -> Response:
        """Return the finished file for a prompt: from the store, else from the model."""

    def progress(self, task: str, model: str, count: int, began: float, budget: int = 0) -> None:
        """Send a progress event for ``count`` generated tokens."""


@dataclass
class Sample:
    """One generated file and what verifying it showed.

    ``blob`` and ``tree`` are the file and the tree it was verified in, once it was.
    """

    response: Response
    result: VerifyResult | None = None
    tree: str = ""
    blob: str = ""


@dataclass
class Stack:
    """The commits one prompt leaves on a branch, oldest first, and what they add up to."""

    commits: list[str] = field(default_factory=list)
    first_message: str = ""
    final: VerifyResult | None = None
    tokens: int = 0
    seconds: float = 0.0
    kept: int = 0
    decode_seconds: float = 0.0
    cache: str = "hit"
    stop: str = ""


class Checker:
    """Turn a branch's action into a checked stack of commits and publish it."""

    def __init__(self, reconciler: Pass) -> None:
        self.rec = reconciler
        self.repo = reconciler.repo
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self._deadline: float | None = None  # the branch's time budget ends here (monotonic)

    @property
    def sandbox(self) -> Sandbox:
        """Return the sandbox, made on first use (raises SandboxUnavailable without bwrap)."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox()
            return self._sandbox

    @staticmethod
    def applies(tp: TaskPlan) -> bool:
        """Return whether a task's candidates are checked: its template verifies, it has a source."""
        return tp.task.template.verify is not None and bool(tp.task.spec.params.get("source"))

    # -- the branch ------------------------------------------------------------------------

    def carry_out(self, state: RepoState, tp: TaskPlan, coder: Checkpoint, action: Action,
                  response: Response | None = None) -> Result:
        """Check and publish one model branch; a lost race re-plans it and tries again.

        ``response`` is the pass's answer to the task's prompt (reused or from the batch the
        pass decoded), the first sample; the others, and repair rounds, are generated here.
        """
        for _attempt in range(CAS_RETRIES):
            stack = self._stack(state, tp, coder, action, response)
            if action.branch in self.repo.checked_out_branches():
                # Checked out while the model was generating: the responses wait in the cache.
                return Result(action.task, action.model, action.branch, "kept",
                              commit=action.head, reason=action.reason)
            if not stack.commits:
                # A repair round whose answer is no valid file: the branch keeps what it has.
                return Result(action.task, action.model, action.branch, "up-to-date",
                              commit=action.head, reason="the repair round gave no valid file")
            final = stack.commits[-1]
            updates = [(f"refs/heads/{action.branch}", final, action.head or ZERO_OID),
                       (shadow_ref(tp.task.name, action.model), final, action.shadow or ZERO_OID)]
            if self.repo.update_refs(updates, f"symergion: {action.model} on {tp.task.name}"):
                subject = stack.first_message.splitlines()[0][:72]
                self.rec.on_event(Event("done", action.task, action.model, tokens=stack.tokens,
                                        seconds=stack.seconds, cache=stack.cache, detail=subject,
                                        kept=stack.kept if stack.cache == "miss" else None,
                                        decode_seconds=stack.decode_seconds))
                return Result(
                    action.task, action.model, action.branch,
                    "updated" if action.head else "created", commit=final,
                    message=body_of(stack.first_message),
                    tokens=stack.tokens, seconds=stack.seconds, cache=stack.cache,
                    kept_tokens=stack.kept if stack.cache == "miss" else None,
                    decode_seconds=stack.decode_seconds if stack.cache == "miss" else None,
                    stop=stack.stop, verify=stack.final.trailer() if stack.final else None,
                )
            state, fresh = self.rec.replan(state, tp, coder, action)
            if isinstance(fresh, Result):
                return fresh
            action, response = fresh, None
        return Result(action.task, action.model, action.branch, "failed",
                      reason="the branch kept moving while publishing; run sync again")

    def _stack(self, state: RepoState, tp: TaskPlan, coder: Checkpoint, action: Action,
               response: Response | None) -> Stack:
        """Make the commits of one prompt: candidate, prune, and repair rounds."""
        task = tp.task
        spec = task.template.verify
        source = task.spec.params.get("source")
        assert spec is not None and source is not None and tp.prompt is not None
        budget = self.rec.config.max_seconds
        self._deadline = time.monotonic() + budget if budget else None
        stack = Stack()
        if action.repair:
            # The prompt's candidate is on the branch already; go on with its recorded failure.
            assert action.head is not None
            own = own_commits(state, action.head, action.model, task.name)
            recorded = candidate(prompt_chain(own, tp.prompt.digest))
            assert recorded is not None
            last_message = recorded.message
            round_ = action.repair - 1
            parents, base = [action.head], action.head
        else:
            parents, base = attempt_base(self.repo, tp, action)
            reused = self.rec.reused(tp, action)
            if reused is None and response is not None and not response.reused:
                first: Response | None = response  # the batch's answer: sample 1
            else:
                first = None
            copied = VerifyResult.from_message(self._message(action.reuse)) if reused is not None else None
            if reused is not None and copied is not None:
                # The same file an earlier attempt made for this prompt: it keeps its results.
                message = self._with(commit_message(state, self.rec.config, tp, action, reused),
                                     [copied.excerpt()], self._copied_trailers(action.reuse, copied))
                assert reused.blob is not None
                tree = self.repo.tree_with_file(base, tp.destination, reused.blob)
                self._add(stack, tree, parents, message, action.model, reused)
                stack.final = copied
                return stack
            samples = [reused] if reused is not None else self._responses(tp, coder, tp.prompt, first)
            best, checked = self._best(tp, action, base, samples, spec, source)
            extra = [best.result.excerpt() if best.result else "", self._scores(checked, best)]
            verified = Trailers(verify=best.result.trailer() if best.result else None)
            message = self._with(commit_message(state, self.rec.config, tp, action, best.response),
                                 extra, verified.merged(self._cut(best.response)))
            commit = self._add(stack, best.tree, parents, message, action.model, best.response)
            stack.final = best.result
            commit, best, fixed = self._fix(stack, tp, action, commit, best, spec, source,
                                            tp.prompt.digest, None)
            self._prune(stack, tp, action, commit, best, spec, source, tp.prompt.digest, None)
            last_message, round_ = fixed or message, 0
        while spec.repair_rounds > round_:
            recorded_result = VerifyResult.from_message(last_message)
            if recorded_result is None or useful(recorded_result):
                break
            if stack.commits and pruned_useful_message(self._message(stack.commits[-1])):
                break  # the prune left a useful file: no round (``chain.pruned_useful``)
            if self.out_of_time():
                # The next sync plans this round again (the branch records the failure).
                self._mark_cut(stack, action.model, f"repair round {round_ + 1} left for the next sync")
                break
            round_ += 1
            # Human notes first, then the failures as the candidate's message records them.
            feedback = repair_feedback(recorded_result, tp.destination)
            prompt = prompts.render(tp.files, list(tp.prompt.initial),
                                    [*tp.prompt.feedback, feedback], tp.prompt.code_starter)
            samples = self._responses(tp, coder, prompt)
            if not any(s.has_file for s in samples):
                break  # nothing valid this time: what the branch has stays
            on = stack.commits[-1] if stack.commits else base
            before = stack.final if stack.commits else VerifyResult.from_message(self._message(on))
            best, checked = self._best(tp, action, on, samples, spec, source)
            assert best.result is not None
            # The subject names the first problem: a failing test, else what the feedback asks.
            named = [*recorded_result.excerpt().splitlines()[1:2],
                     *(line[2:] for line in feedback.splitlines() if line.startswith("- "))]
            subject = f"Repair: {named[0].strip() if named else 'the tests failed'}"[:120]
            body = "\n\n".join(p for p in [subject, feedback, best.result.excerpt(),
                                             self._scores(checked, best)] if p)
            repair = Repair(tp.prompt.digest, round_)
            trailers = prompt_trailers(tp, action, prompt.digest).merged(figure_trailers(best.response))
            trailers = trailers.merged(Trailers(repair=repair, verify=best.result.trailer()))
            message = trailers.merged(self._cut(best.response)).write(body)
            commit = self._add(stack, best.tree, [on], message, action.model, best.response)
            stack.final = best.result
            commit, best, fixed = self._fix(stack, tp, action, commit, best, spec, source,
                                            prompt.digest, repair)
            self._prune(stack, tp, action, commit, best, spec, source, prompt.digest, repair)
            last_message = self._keep_better(stack, tp, action, on, before, prompt.digest, repair) \
                or fixed or message
        return stack

    def out_of_time(self) -> bool:
        """Return whether the branch's time budget (``max_seconds``) is spent."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _cut(self, response: Response) -> Trailers:
        """Return the trailer saying a response was cut short by the time budget, if it was."""
        if not response.cut:
            return Trailers()
        return Trailers(cut=(f"max_seconds {self.rec.config.max_seconds:g}: {response.cut}",))

    def _mark_cut(self, stack: Stack, model: str, what: str) -> None:
        """Add the cut-short trailer to the stack's last commit (nothing is published yet)."""
        if not stack.commits:
            return
        last = stack.commits[-1]
        message = self._message(last)
        cut = Trailers(cut=(f"max_seconds {self.rec.config.max_seconds:g}: {what}",))
        message = Trailers.parse(message).merged(cut).write(body_of(message))
        stack.commits[-1] = self.repo.commit_tree(self.repo.tree_of(last),
                                                  self.repo.commit_parents(last), message,
                                                  author=model, email=f"{model}@symergion.invalid")
        if len(stack.commits) == 1:
            stack.first_message = message

    def _keep_better(self, stack: Stack, tp: TaskPlan, action: Action, before_commit: str,
                     before: VerifyResult | None, digest: str, repair: Repair) -> str:
        """Restore the file a repair round started from when the round's file ranks below it.

        The round's commits stay in the history for review; a commit on top brings back the
        earlier tree and its result, so the branch never gets worse by a repair. Returns that
        commit's message, or "" when the round's file is kept.
        """
        after = stack.final
        if before is None or after is None or not _recorded_rank(before) < _recorded_rank(after):
            return ""
        tree = self.repo.tree_of(before_commit)
        round_ = repair.round
        subject = f"Repair: kept the file from before round {round_}, which ranks higher"
        body = (f"{subject}\n\nRound {round_}: {after.trailer()}\n"
                f"Kept ({before_commit[:12]}): {before.trailer()}")
        trailers = prompt_trailers(tp, action, digest).merged(
            Trailers(repair=repair, verify=before.trailer()))
        message = trailers.write(body)
        self._add(stack, tree, [stack.commits[-1]], message, action.model, None)
        stack.final = before
        return message

    # -- responses -------------------------------------------------------------------------

    def _responses(self, tp: TaskPlan, coder: Checkpoint, prompt: prompts.Prompt,
                   first: Response | None = None) -> list[Response]:
        """Return the checkpoint's samples for a prompt: from the store, else generated together.

        ``first``, when given, is the first sample (the one with the checkpoint's own seed).
        """
        rec, task = self.rec, tp.task
        count = coder.samples
        if task.template.guided is not None:
            # The first sample is written by guided generation; any others complete freely.
            first = self._guided(tp, coder, prompt)
        if count == 1:
            return [first or rec.respond(task, coder, prompt, tp.destination)]
        keys = [rec.cache_key("coder", coder, prompt.text, path=tp.destination, finisher=FINISHER_VERSION,
                              **({} if i == 0 else {"sample": i})) for i in range(count)]
        records: list[Response | None] = [first] if first is not None else []
        for key in keys[len(records):]:
            records.append(cached(rec.store.get(key)))
        missing = [i for i, r in enumerate(records) if r is None]
        if missing:
            fitted, engine, prompt_tokens, budget = rec.fit(task, coder, prompt)
            finishers = {i: Finisher(tp.destination, prompt.code_starter) for i in missing}
            jobs = [Job(fitted.text, budget, fitted.stable_prefix, start=prompt.code_starter,
                        check=finishers[i].check, seed=None if i == 0 else coder.sampling.seed + i)
                    for i in missing]
            rec.on_event(Event("start", task.name, coder.model_name, budget=budget,
                               detail=f"{prompt_tokens} prompt tokens, budget {budget}, "
                                      f"{len(jobs)} samples"))
            began = time.monotonic()

            def progress(index: int, _piece: str, count: int) -> None:
                if index == 0:
                    rec.progress(task.name, coder.model_name, count, began, budget)

            results = run_jobs(engine, jobs, cancel=rec.cancel, on_piece=progress)
            rec.cancel_check()
            for i, job_result in zip(missing, results, strict=True):
                done = finishers[i].finish(job_result.text, job_result.stop)
                response = response_record(engine, done, job_result, budget, prompt.code_starter)
                rec.store.put(keys[i], response.to_record())
                records[i] = response
        return [r for r in records if r is not None]

    def _guided(self, tp: TaskPlan, coder: Checkpoint, prompt: prompts.Prompt) -> Response:
        """Return the guided file for a prompt: from the store, else written test by test."""
        rec, task = self.rec, tp.task
        spec = task.template.guided
        source = task.spec.params.get("source")
        assert spec is not None and source is not None and tp.source_code is not None
        key = rec.cache_key("coder", coder, prompt.text, path=tp.destination, finisher=FINISHER_VERSION,
                            guide=GUIDE_VERSION, guided=asdict(spec),
                            variants_at=VARIANT_TEMPERATURE)
        if (hit := cached(rec.store.get(key))) is not None:
            return hit
        if not tp.destination.endswith(".py"):
            raise TaskInputError(
                f"task {task.name}: guided generation writes Python unittest files, and "
                f"{tp.destination} is not a .py file",
                hint=f'set "guided": false in the {task.template.name} template for this task')
        fitted, engine, prompt_tokens, budget = rec.fit(task, coder, prompt)
        rec.on_event(Event("start", task.name, coder.model_name, budget=budget,
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
            rec.progress(task.name, coder.model_name, count, began, budget)

        def on_test(tried: int, planned: int) -> None:
            # The pass's time left: the tests left at this file's pace, the verifications after
            # it at the pass's pace so far, a repair round's file when one may follow; never
            # past the time budget.
            now = time.monotonic()
            per_test = (now - began) / tried
            spent = rec.spend
            per_check = spent.verify_seconds / spent.verify_runs * (verify.runs if verify else 1) \
                if spent.verify_runs else 0.0
            eta = per_test * (planned - tried) + (files_left - 1) * per_test * planned \
                + files_left * 3 * per_check
            if self._deadline is not None:
                eta = min(eta, max(0.0, self._deadline - now))
            rec.on_event(Event("progress", task.name, coder.model_name, tokens=tokens,
                               seconds=now - began, budget=budget, eta=eta))

        written = guided_file(engine, fitted, tp.source_code, source, tp.destination, budget,
                              spec, coder, cancel=rec.cancel, on_token=on_token,
                              marks=fitted.earlier_marks, out_of_time=self.out_of_time,
                              on_test=on_test)
        rec.cancel_check()
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
        rec.store.put(key, response.to_record())
        return response

    # -- verification ----------------------------------------------------------------------

    def _best(self, tp: TaskPlan, action: Action, base: str, samples: list[Response],
              spec: VerifySpec, source: str) -> tuple[Sample, list[Sample]]:
        """Verify every sample with a valid file; return the best by rank (the first on a tie)."""
        checked = [Sample(s) for s in samples]
        valid = [s for s in checked if s.response.has_file]
        if not valid:
            for response in samples:
                if response.cache == "miss":
                    self.rec.spend.discard("no valid file", int(response.tokens))
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
                self.rec.spend.discard("samples not published" if other.response.has_file
                                       else "no valid file", int(other.response.tokens))
        return best, checked

    def verify(self, action: Action, base: str, tree: str, blob: str, spec: VerifySpec,
               source: str, destination: str, label: str) -> VerifyResult:
        """Return a tree's verification: from the store when this tree was verified, else run."""
        key = response_key(kind="verify", version=CHECK_VERSION, tree=tree, spec=asdict(spec),
                           source=source, destination=destination, sandbox=self.sandbox.mode)
        entry = self.rec.store.get(key)
        if entry is not None:
            return load_result(entry)
        self.rec.cancel_check()
        self.rec.on_event(Event("check", action.task, action.model,
                                detail=f"verifying {label} ({spec.runs} run{'s' * (spec.runs > 1)})"))
        text = self.repo.read_blob_bytes(blob).decode("utf-8", "replace")
        began, git_before = time.monotonic(), self.repo.git_seconds
        result = verify_candidate(self.repo, base, spec, source, destination, content=text,
                                  sandbox=self.sandbox)
        spend = self.rec.spend
        spend.verify_runs += spec.runs
        spend.verify_seconds += time.monotonic() - began
        self.rec.verify_git_seconds += self.repo.git_seconds - git_before
        self.rec.store.put(key, dump_result(result))
        self.rec.on_event(Event("check", action.task, action.model, seconds=result.seconds,
                                detail=f"verified {label}: {result.trailer()}"))
        return result

    def _fix(self, stack: Stack, tp: TaskPlan, action: Action, commit: str, best: Sample,
             spec: VerifySpec, source: str, digest: str, repair: Repair | None) -> tuple[str, Sample, str]:
        """Add ``Repair: pinned ...`` on top when repairs without a model apply to a guided file.

        Each round re-runs the file (``verify.repair``). The commit names every change and
        carries the re-run's result, so it stands for the candidate in what follows. Returns
        the commit to build on, its sample and its message ("" when nothing changed).
        """
        result = best.result
        # A file that passes is repaired still when a test only records Python's wrong-kind error.
        if (tp.task.template.guided is None or not spec.structured or result is None
                or (result.ok and not result.records_error) or tp.source_code is None):
            return commit, best, ""

        def run(content: str) -> VerifyResult:
            blob = self.repo.write_blob(content.encode("utf-8"))
            tree = self.repo.tree_with_file(commit, tp.destination, blob)
            return self.verify(action, commit, tree, blob, spec, source, tp.destination,
                               "the repaired file")

        fixed = repair_rounds(self._text(best), result, tp.source_code, tp.destination, run)
        if not fixed.changed or fixed.rerun is None:
            return commit, best, ""
        blob = self.repo.write_blob(fixed.text.encode("utf-8"))
        tree = self.repo.tree_with_file(commit, tp.destination, blob)
        body = replace(fixed, rerun=None).commit_message().rstrip("\n")
        excerpt = fixed.rerun.excerpt()
        trailers = prompt_trailers(tp, action, digest).merged(
            Trailers(repair=repair, fix=fixed.summary(), verify=fixed.rerun.trailer()))
        message = trailers.write("\n\n".join(p for p in [body, excerpt] if p))
        fixed_commit = self._add(stack, tree, [commit], message, action.model, None)
        stack.final = fixed.rerun
        return fixed_commit, Sample(replace(best.response, text=fixed.text, blob=None),
                                    fixed.rerun, tree, blob), message

    def _prune(self, stack: Stack, tp: TaskPlan, action: Action, commit: str, best: Sample,
               spec: VerifySpec, source: str, digest: str, repair: Repair | None) -> None:
        """Add ``Prune: ...`` on top when tests should go; re-run what is left to confirm."""
        result = best.result
        if not spec.prune or not spec.structured or result is None:
            return
        text = self._text(best)
        removed: list[str] = []
        drop = ""
        rerun: VerifyResult | None = None
        current = result
        # Several tests per target: keep those that add coverage, the reviewer sees no repeats.
        guided = tp.task.template.guided
        redundant = spec.coverage and guided is not None and guided.variants > 1
        for _ in range(_PRUNE_PASSES):
            pruned = prune(text, current, tp.destination, idle=spec.coverage, redundant=redundant)
            if not pruned.changed:
                break
            removed += [f"- {r.test}: {r.reason}" for r in pruned.removed]
            if pruned.drop_reason:
                drop = pruned.drop_reason
                break
            text = pruned.text
            blob = self.repo.write_blob(text.encode("utf-8"))
            tree = self.repo.tree_with_file(commit, tp.destination, blob)
            rerun = current = self.verify(action, commit, tree, blob, spec, source, tp.destination,
                                          "the pruned file")
            if current.ok:
                break
        if not removed and not drop:
            return
        count = len(removed)
        if drop:
            # The candidate goes, not the user's file: a destination the task branch already
            # had comes back as it was there.
            existed = self.repo.tree_entry(tp.task.tip, tp.destination) is not None
            subject = (f"Prune: restored {tp.destination} as on {tp.task.name} ({drop})" if existed
                       else f"Prune: removed {tp.destination} ({drop})")
            tree = self.repo.restore_file(commit, tp.destination, tp.task.tip)
            rerun = VerifyResult(source=source)
            value = "dropped"
        else:
            subject = f"Prune: removed {count} failing test{'' if count == 1 else 's'}"
            if redundant:
                subject = (f"Prune: removed {count} test{'' if count == 1 else 's'} that failed "
                           "or added no coverage")
            elif any(f": {UNCHECKED}" in line for line in removed):
                subject = (f"Prune: removed {count} test{'' if count == 1 else 's'} that failed "
                           "or asserted nothing")
            value = str(count)
        assert rerun is not None
        body = "\n\n".join(p for p in [subject, "\n".join(removed), rerun.excerpt()] if p)
        trailers = prompt_trailers(tp, action, digest).merged(
            Trailers(repair=repair, prune=value, verify=rerun.trailer()))
        message = trailers.write(body)
        self._add(stack, tree, [commit], message, action.model, None)
        stack.final = rerun

    # -- messages and commits --------------------------------------------------------------

    def _add(self, stack: Stack, tree: str, parents: list[str], message: str, model: str,
             response: Response | None) -> str:
        commit = self.repo.commit_tree(tree, parents, message, author=model,
                                       email=f"{model}@symergion.invalid")
        stack.commits.append(commit)
        if not stack.first_message:
            stack.first_message = message
        if response is not None:
            if response.cache == "miss":
                stack.cache = "miss"
                stack.tokens += int(response.tokens)
                stack.seconds += float(response.seconds)
                kept, decoding = figures(response)
                stack.kept += kept if kept is not None else int(response.tokens)
                stack.decode_seconds += decoding or 0.0
                self.rec.spend.keep(response)
            stack.stop = stack.stop or str(response.stop)
        return commit

    def _text(self, sample: Sample) -> str:
        """Return a sample's file: the text the model wrote, or the reused blob's content."""
        if sample.response.text is not None:
            return sample.response.text
        return self.repo.read_blob_bytes(sample.blob).decode("utf-8", "replace")

    def _message(self, commit: str | None) -> str:
        return self.repo.commit_message(commit) if commit else ""

    def _copied_trailers(self, commit: str | None, copied: VerifyResult) -> Trailers:
        repair = Trailers.parse(self._message(commit)).repair
        return Trailers(repair=repair, verify=copied.trailer())

    @staticmethod
    def _with(message: str, paragraphs: list[str], trailers: Trailers) -> str:
        """Return a message with paragraphs added before its trailers, and ``trailers`` added."""
        added = "".join(f"\n\n{p}" for p in paragraphs if p)
        return Trailers.parse(message).merged(trailers).write(body_of(message) + added)

    @staticmethod
    def _scores(samples: list[Sample], best: Sample) -> str:
        """Return the body lines naming every sample's score, when there was more than one."""
        if len(samples) < 2:
            return ""
        lines = [f"Samples: {len(samples)}; published the best by verification"]
        for number, sample in enumerate(samples, start=1):
            mark = " (published)" if sample is best else ""
            score = sample.result.trailer() if sample.result is not None else "not a valid file"
            lines.append(f"  {number}: {score}{mark}")
        return "\n".join(lines)


def guided_file(engine: Engine, prompt: prompts.Prompt, source_text: str, source: str,
                destination: str, budget: int, spec: GuideSpec, coder: Checkpoint, *,
                cancel: threading.Event, on_token: Callable[[int], None],
                marks: tuple[int, ...] = (),
                out_of_time: Callable[[], bool] | None = None,
                on_test: Callable[[int, int], None] | None = None) -> guide.Guided:
    """Write a test file with ``symergion.verify.guide`` through an engine; text "" if invalid.

    Variants after the first are sampled with their own seeds, at the checkpoint's temperature
    when it samples, else at ``VARIANT_TEMPERATURE`` (greedy decoding would repeat the first).
    ``marks`` are prefixes of the prompt an earlier prompt of the pass ended its shared part
    at (a repair round's prompt is the first prompt with more feedback): their KV is kept.
    """
    count = 0

    def counted(pieces: Iterable[Any]) -> Iterator[str]:
        # The guide closes a segment's stream when the test ends; the engine's stream must
        # close then too (a worker stops generating before the next request).
        nonlocal count
        try:
            for piece in pieces:
                count += 1
                on_token(count)
                yield piece if isinstance(piece, str) else piece[1]
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    # Where the file so far ends in the prompt: every later prompt of this file shares it, and
    # the engine keeps its KV instead of evaluating the file again for each test.
    shared: list[int] = [*marks]

    def marked(text: str) -> tuple[int, ...]:
        return tuple(m for m in shared if m < len(text))

    def generate(text: str, max_tokens: int, stable_prefix: int) -> Iterator[str]:
        return counted(engine.generate(text, max_tokens=max_tokens, cancel=cancel,
                                       stable_prefix=stable_prefix, marks=marked(text)))

    temperature = None if coder.sampling.temperature > 0 else VARIANT_TEMPERATURE

    def sample(text: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterator[str]:
        request = GenerationRequest(text, max_tokens, stable_prefix, seed, temperature,
                                    marked(text))
        return counted(engine.generate_many([request], cancel=cancel))  # (index, piece) pairs

    written = guide.guided_file(
        generate, guide.GuidedTask(prompt.text, prompt.code_starter, source_text, module_alias(source),
                                   destination),
        guide.GuideOptions(budget=budget, limit=spec.targets, variants=spec.variants, sample=sample,
                           room=lambda text: engine.n_ctx - engine.count_tokens(text),
                           on_shared=shared.append, out_of_time=out_of_time, on_test=on_test))
    try:
        ast.parse(written.text)
    except SyntaxError:
        written.text = ""
    return written


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


def _recorded_rank(result: VerifyResult) -> tuple[float, int, float, int]:
    """Return a result's rank as its trailer records it (coverage in whole percent; no seconds)."""
    key = parse_trailer(result.trailer()).rank_key()
    return key[0], key[1], key[2], key[3]


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


__all__ = ["Checker", "dump_result", "load_result", "response_record"]
