"""Check candidates before a human looks: verify, keep the best sample, prune, repair; then publish.

The pass calls ``Checker.carry_out`` for a model branch whose task template has a ``verify``
section. One prompt then becomes a small stack of commits (``core.publish.Stack``), which
``publish_stack`` publishes with the pass's one compare-and-swap:

1. the candidate: the best of the checkpoint's ``samples`` by verification rank, with its
   ``Symergion-Verify`` trailer, the first failure lines and the other samples' scores;
2. ``Prune: removed N failing tests`` on top when ``prune`` is on and tests failed, erred,
   flickered or ran no line of the source (a file left without passing tests, or that does not
   import the module under test, is removed), with the re-run's trailer;
3. while the candidate failed and ``repair_rounds`` allow, ``Repair: ...``: the model's next
   attempt, prompted with the human's notes first and then the failures its message records,
   checked the same way.

The samples come from the pass's ``Responder``; a ``Verifier`` (``core/verification.py``) runs
them. Every commit carries the prompt's trailers (``core/chain.py``), so the next plan sees the
branch is done. Results come from the repository where it has them (a republished attempt keeps
its trailer) and from the response store by tree otherwise, so the same file gets the same
trailer.
"""

from __future__ import annotations

import time
from dataclasses import replace

from symergion.config.schema import Checkpoint, VerifySpec
from symergion.core import prompt as prompts
from symergion.core.chain import (
    candidate,
    prompt_chain,
    pruned_useful_message,
    repair_feedback,
    useful,
)
from symergion.core.plan import Action, TaskPlan, checked, own_commits
from symergion.core.publish import (
    Stack,
    attempt_base,
    commit_message,
    figure_trailers,
    prompt_trailers,
    publish_stack,
)
from symergion.core.report import Result
from symergion.core.respond import Pass, Responder
from symergion.core.response import Response
from symergion.core.state import RepoState
from symergion.core.verification import Sample, Verifier
from symergion.trailers import Repair, Trailers, body_of
from symergion.verify.kinds import kind_of
from symergion.verify.prune import UNCHECKED, prune
from symergion.verify.repair import repair_rounds
from symergion.verify.result import VerifyResult, parse_trailer

_PRUNE_PASSES = 3  # a pruned file whose re-run fails again is pruned again, this many times at most


class Checker:
    """Turn a branch's action into a checked stack of commits and publish it."""

    def __init__(self, run: Pass, responder: Responder) -> None:
        self.run = run
        self.responder = responder
        self.repo = run.repo
        self.verifier = Verifier(run)
        self._deadline: float | None = None  # the branch's time budget ends here (monotonic)

    @staticmethod
    def applies(tp: TaskPlan) -> bool:
        """Return whether a task's candidates are checked (``plan.checked``)."""
        return checked(tp)

    # -- the branch ------------------------------------------------------------------------

    def carry_out(self, state: RepoState, tp: TaskPlan, coder: Checkpoint, action: Action,
                  response: Response | None = None) -> Result:
        """Check and publish one model branch (``publish_stack``: a lost race re-plans it).

        ``response`` is the pass's answer to the task's prompt (reused or from the batch the
        pass decoded), the first sample; the others, and repair rounds, are generated here.
        """
        def build(state: RepoState, action: Action, attempt: int) -> Stack:
            # A re-planned branch asks again: the answers it needs then come from the store.
            return self._stack(state, tp, coder, action, response if attempt == 0 else None)

        return publish_stack(self.repo, state, tp, coder, action, build, self.run.on_event)

    def _stack(self, state: RepoState, tp: TaskPlan, coder: Checkpoint, action: Action,
               response: Response | None) -> Stack:
        """Make the commits of one prompt: candidate, prune, and repair rounds."""
        task = tp.task
        spec = task.template.verify
        source = task.spec.params.get("source")
        assert spec is not None and source is not None and tp.prompt is not None
        budget = self.run.config.max_seconds
        self._deadline = time.monotonic() + budget if budget else None
        stack = Stack()
        if action.repair:
            # The prompt's candidate is on the branch already; go on with its recorded failure.
            assert action.head is not None
            own = own_commits(state, action.head, action.model, task.name)
            recorded = candidate(prompt_chain(own, tp.prompt.digest))
            assert recorded is not None
            last_message: str | None = recorded.message
            round_ = action.repair - 1
        else:
            last_message = self._candidate(stack, state, tp, coder, action, response, spec, source)
            round_ = 0
        if last_message is not None:
            self._repairs(stack, tp, coder, action, spec, source, last_message, round_)
        return stack

    def _candidate(self, stack: Stack, state: RepoState, tp: TaskPlan, coder: Checkpoint,
                   action: Action, response: Response | None, spec: VerifySpec,
                   source: str) -> str | None:
        """Add the candidate, with its pinned repairs and prune on top.

        Returns the message whose recorded failure a repair round starts from, or None when the
        candidate is an earlier attempt's file with its recorded results (nothing follows it).
        """
        assert tp.prompt is not None
        parents, base = attempt_base(self.repo, tp, action)
        reused = self.responder.reused(tp, action)
        if reused is None and response is not None and not response.reused:
            first: Response | None = response  # the batch's answer: sample 1
        else:
            first = None
        own_file = reused is not None and reused.hand is None
        copied = VerifyResult.from_message(self._message(action.reuse)) if own_file else None
        if reused is not None and copied is not None:
            # The same file an earlier attempt made for this prompt: it keeps its results.
            message = self._with(commit_message(state, self.run.config, tp, action, reused),
                                 [copied.excerpt()], self._copied_trailers(action.reuse, copied))
            assert reused.blob is not None
            tree = self.repo.tree_with_file(base, tp.destination, reused.blob)
            self._add(stack, tree, parents, message, action.model, reused)
            stack.final = copied
            return None
        samples = [reused] if reused is not None else self.responder.samples(
            tp, coder, tp.prompt, first, self._deadline)
        best, checked = self.verifier.best(tp, action, base, samples, spec, source)
        extra = [best.result.excerpt() if best.result else "", self._scores(checked, best)]
        verified = Trailers(verify=best.result.trailer() if best.result else None)
        message = self._with(commit_message(state, self.run.config, tp, action, best.response),
                             extra, verified.merged(self._cut(best.response)))
        commit = self._add(stack, best.tree, parents, message, action.model, best.response)
        stack.final = best.result
        if best.response.hand is not None:
            return None  # hand work is verified, never pruned or repaired
        commit, best, fixed = self._fix(stack, tp, action, commit, best, spec, source,
                                        tp.prompt.digest, None)
        self._prune(stack, tp, action, commit, best, spec, source, tp.prompt.digest, None)
        return fixed or message

    def _repairs(self, stack: Stack, tp: TaskPlan, coder: Checkpoint, action: Action,
                 spec: VerifySpec, source: str, last_message: str, round_: int) -> None:
        """Add repair rounds while the last candidate failed and ``repair_rounds`` allow.

        ``last_message`` records the failure the next round starts from, ``round_`` the rounds
        done; a repair round of a branch whose stack is empty builds on the branch's head.
        """
        assert tp.prompt is not None
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
            feedback = repair_feedback(recorded_result, tp.destination, kind_of(spec))
            prompt = prompts.render(tp.files, list(tp.prompt.initial),
                                    [*tp.prompt.feedback, feedback], tp.prompt.code_starter)
            samples = self.responder.samples(tp, coder, prompt, None, self._deadline)
            if not any(s.has_file for s in samples):
                break  # nothing valid this time: what the branch has stays
            on = stack.commits[-1] if stack.commits else action.head
            assert on is not None
            before = stack.final if stack.commits else VerifyResult.from_message(self._message(on))
            best, checked = self.verifier.best(tp, action, on, samples, spec, source)
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

    def out_of_time(self) -> bool:
        """Return whether the branch's time budget (``max_seconds``) is spent."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _cut(self, response: Response) -> Trailers:
        """Return the trailer saying a response was cut short by the time budget, if it was."""
        if not response.cut:
            return Trailers()
        return Trailers(cut=(f"max_seconds {self.run.config.max_seconds:g}: {response.cut}",))

    def _mark_cut(self, stack: Stack, model: str, what: str) -> None:
        """Add the cut-short trailer to the stack's last commit (nothing is published yet)."""
        if not stack.commits:
            return
        last = stack.commits[-1]
        message = self._message(last)
        cut = Trailers(cut=(f"max_seconds {self.run.config.max_seconds:g}: {what}",))
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

    def _fix(self, stack: Stack, tp: TaskPlan, action: Action, commit: str, best: Sample,
             spec: VerifySpec, source: str, digest: str, repair: Repair | None) -> tuple[str, Sample, str]:
        """Add ``Repair: pinned ...`` on top when repairs without a model apply to a guided file
        (or a file of a kind they hold for unguided: ``TestKind.repairs_unguided``).

        Each round re-runs the file (``verify.repair``). The commit names every change and
        carries the re-run's result, so it stands for the candidate in what follows. Returns
        the commit to build on, its sample and its message ("" when nothing changed).
        """
        result = best.result
        # A file that passes is repaired still when a test only records Python's wrong-kind error.
        kind = kind_of(spec)
        unguided = tp.task.template.guided is None and not kind.repairs_unguided
        if (unguided or not spec.structured or result is None
                or (result.ok and not result.records_error) or tp.source_code is None):
            return commit, best, ""

        def run(content: str) -> VerifyResult:
            blob = self.repo.write_blob(content.encode("utf-8"))
            tree = self.repo.tree_with_file(commit, tp.destination, blob)
            return self.verifier.verify(action, commit, tree, blob, spec, source, tp.destination,
                               "the repaired file")

        fixed = repair_rounds(self._text(best), result, tp.source_code, tp.destination, run,
                              raises=kind.raises)
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
            pruned = prune(text, current, tp.destination, idle=spec.coverage, redundant=redundant,
                           kind=kind_of(spec))
            if not pruned.changed:
                break
            removed += [f"- {r.test}: {r.reason}" for r in pruned.removed]
            if pruned.drop_reason:
                drop = pruned.drop_reason
                break
            text = pruned.text
            blob = self.repo.write_blob(text.encode("utf-8"))
            tree = self.repo.tree_with_file(commit, tp.destination, blob)
            rerun = current = self.verifier.verify(action, commit, tree, blob, spec, source, tp.destination,
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
        stack.add(commit, message, response)
        if response is not None and response.cache == "miss":
            self.run.spend.keep(response)
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


def _recorded_rank(result: VerifyResult) -> tuple[float, int, float, int]:
    """Return a result's rank as its trailer records it (coverage in whole percent; no seconds)."""
    key = parse_trailer(result.trailer()).rank_key()
    return key[0], key[1], key[2], key[3]


__all__ = ["Checker"]
