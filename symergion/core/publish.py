"""Publish: commit with plumbing, then move a branch to its stack's top by compare-and-swap.

What one prompt leaves on a branch is a ``Stack`` of commits: plain generation is one commit
(``commit_file``), a checked candidate is the candidate with its repairs and prunes on top.
``publish_stack`` is the one compare-and-swap of generated work: a ref that moved since the
state was read makes ``update_refs`` change nothing, and that branch alone is re-read,
re-planned and built again. Nothing here touches the user's work tree, index or HEAD.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from symergion.config.schema import Checkpoint, Config
from symergion.core.plan import Action, TaskPlan, branch_action, message_body
from symergion.core.report import Event, Result
from symergion.core.response import Response
from symergion.core.state import RepoState, refresh_branch, shadow_ref
from symergion.errors import GitError
from symergion.gitrepo import ARCHIVE_REFS, ZERO_OID, GitRepo
from symergion.trailers import Decode, NoteRef, Reasoning, Trailers, Trimmed, body_of
from symergion.verify.result import VerifyResult

CAS_RETRIES = 3
# The result status of an action that makes no commit.
STATUS = {"up-to-date": "up-to-date", "keep": "kept", "skip": "skipped", "problem": "failed"}


def commit_message(
    state: RepoState, config: Config, tp: TaskPlan, action: Action, response: Response
) -> str:
    """Return the commit message: what changed, the reasoning when new here, the trailers."""
    assert tp.prompt is not None
    body = message_body(state, config, tp, action.previous).strip()
    if response.hand is not None:
        body += f"\nKeeps the hand edit of {response.hand[:12]}"
    previous = action.previous.trailers.reasoning if action.previous is not None else None
    reasoning = None
    if config.reasoners and (previous is None or previous.digest != tp.base_digest):
        # The reasoning lives in the repository, at the end of the body as in the original's
        # initial prompt: a later pass (or a clone without the cache) rebuilds the same prompt
        # from it instead of running the reasoner again.
        rows = tp.reasoning or []
        body = "\n".join([body, *rows])
        reasoning = Reasoning(tp.base_digest, len(rows))
    # A task started again under its old name begins on the same tip with the same prompt:
    # without Symergion-Restart its first commit could be byte-identical (same second, or fixed
    # dates) to an archived one, and that commit's notes, the ended task's feedback, would apply.
    ended = ended_attempts(state, action)
    trailers = prompt_trailers(tp, action, tp.prompt.digest).merged(figure_trailers(response))
    return trailers.merged(Trailers(reasoning=reasoning, restart=ended or None,
                                    hand=response.hand)).write(body)


def figures(response: Response) -> tuple[int | None, float | None]:
    """Return a response's kept tokens and decoding seconds; None where it does not record them."""
    kept, decoding = response.kept_tokens, response.decode_seconds
    return (int(kept) if kept is not None else None,
            float(decoding) if decoding is not None else None)


def prompt_trailers(tp: TaskPlan, action: Action, digest: str) -> Trailers:
    """Return the trailers that say which prompt a commit answers, with which feedback."""
    return Trailers(model=action.model, task=action.task, prompt=digest, notes=notes_trailer(tp))


def figure_trailers(response: Response) -> Trailers:
    """Return the trailers with a response's figures.

    ``Symergion-Tokens`` counts every token decoded and ``Symergion-Seconds`` the whole
    generation (prompts included); ``Symergion-Decode`` splits them honestly: the tokens a
    commit keeps, and the decoding rate over the decoding time alone.
    """
    tokens = int(response.tokens)
    kept, decoding = figures(response)
    decode = None
    if kept is not None and decoding is not None:
        decode = Decode(tokens, kept, decoding, tokens / decoding if decoding > 0 else 0.0)
    return Trailers(tokens=tokens, seconds=float(response.seconds), cache=str(response.cache),
                    stop=str(response.stop),
                    trimmed=Trimmed(int(response.trimmed_chars), int(response.trimmed_lines)),
                    decode=decode)


def ended_attempts(state: RepoState, action: Action) -> int:
    """Return how many ended attempts of this model at this task are archived, for a new
    branch; 0 when the branch exists (its commits descend from this attempt's first)."""
    if action.head is not None or action.previous is not None:
        return 0
    prefix = f"{ARCHIVE_REFS}/{action.task}/{action.model}/"
    return sum(1 for ref in state.refs if ref.startswith(prefix)
               and "/" not in ref[len(prefix):])


def notes_trailer(tp: TaskPlan) -> tuple[NoteRef, ...]:
    """Return the applied feedback, in order, as (annotated commit, note blob) items.

    The commit identifies a feedback (an edit of a shared note for another task keeps it);
    the blob keeps its text reachable for a later ``Revert:`` line, even after the notes
    history is rewritten.
    """
    return tuple(NoteRef(f.target, f.blob) for f in tp.task.feedback)


def attempt_base(repo: GitRepo, tp: TaskPlan, action: Action) -> tuple[list[str], str]:
    """Return the parents of a new attempt's first commit and the commit whose files it keeps.

    A new branch starts from the task tip. A branch that holds the task tip keeps its own
    files: what the user committed there (a helper file, a hand fix elsewhere) stays. When the
    task branch moved on, the attempt merges both, three-way: the user's work on the branch and
    the task's new commits both stay, and the attempt has both tips as parents.

    Raises:
        GitError: the branch and the task tip conflict outside the destination (which the
            attempt rewrites anyway); nothing is published until the user merges them.
    """
    task, head = tp.task, action.head
    if head is None:
        return [task.tip], task.tip
    if action.has_tip:
        return [head], head
    merged = repo.merge(head, task.tip, replaced=tp.destination)
    if not merged.tree:
        listed = ", ".join(merged.conflicts[:5]) + (" ..." if len(merged.conflicts) > 5 else "")
        raise GitError(
            f"task {task.name}: {action.branch} and {task.name} both changed {listed}; "
            "nothing was published for this branch",
            hint=f"merge them by hand: `git switch {action.branch} && git merge {task.name}`, "
                 "resolve, commit, switch away, and sync again (your merge is built upon)")
    # The merged files need a commit to be checked out and verified; it is never referenced
    # (the attempt's own commit has both tips as parents), so `git gc` removes it.
    base = repo.commit_tree(merged.tree, [head, task.tip],
                            f"Merge {task.name} into {action.branch}\n",
                            author="symergion", email="symergion@symergion.invalid")
    return [head, task.tip], base


def commit_file(repo: GitRepo, tp: TaskPlan, action: Action, blob: str, message: str) -> str:
    """Return a new commit with ``blob`` at the destination on top of the branch (no ref moves)."""
    model = action.model
    parents, base = attempt_base(repo, tp, action)
    tree = repo.tree_with_file(base, tp.destination, blob)
    return repo.commit_tree(tree, parents, message, author=model, email=f"{model}@symergion.invalid")


@dataclass
class Stack:
    """The commits one prompt leaves on a branch, oldest first, and what they add up to.

    ``kept`` and ``decode_seconds`` are None where the answers do not record them; ``final``
    is the verification of the top commit's file, for a checked branch.
    """

    commits: list[str] = field(default_factory=list)
    first_message: str = ""
    final: VerifyResult | None = None
    tokens: int = 0
    seconds: float = 0.0
    kept: int | None = None
    decode_seconds: float | None = None
    cache: str = "hit"
    stop: str = ""

    @classmethod
    def single(cls, commit: str, message: str, response: Response) -> Stack:
        """Return the one-commit stack of plain generation, with its response's own figures."""
        kept, decoding = figures(response)
        return cls([commit], message, tokens=int(response.tokens),
                   seconds=float(response.seconds), kept=kept, decode_seconds=decoding,
                   cache=str(response.cache), stop=str(response.stop))

    def add(self, commit: str, message: str, response: Response | None) -> None:
        """Put a commit on top; count the figures of the response it holds, if generated now."""
        self.commits.append(commit)
        if not self.first_message:
            self.first_message = message
        if response is None:
            return
        if response.cache == "miss":
            self.cache = "miss"
            self.tokens += int(response.tokens)
            self.seconds += float(response.seconds)
            kept, decoding = figures(response)
            self.kept = (self.kept or 0) + (kept if kept is not None else int(response.tokens))
            self.decode_seconds = (self.decode_seconds or 0.0) + (decoding or 0.0)
        self.stop = self.stop or str(response.stop)


# Makes a branch's stack from a state and its action, on the given attempt (0 first).
StackBuilder = Callable[[RepoState, Action, int], Stack]


def publish_stack(repo: GitRepo, state: RepoState, tp: TaskPlan, coder: Checkpoint,
                  action: Action, build: StackBuilder, on_event: Callable[[Event], None]) -> Result:
    """Build a branch's stack and move the branch to its top; a lost race re-plans and rebuilds.

    Args:
        repo: the repository.
        state: the state the action was planned from.
        tp: the task's plan.
        coder: the checkpoint the branch belongs to.
        action: what the plan wants of the branch.
        build: makes the stack for a state and an action.
        on_event: told when the branch is published.
    """
    for attempt in range(CAS_RETRIES):
        stack = build(state, action, attempt)
        if action.branch in repo.checked_out_branches():
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
        if repo.update_refs(updates, f"symergion: {action.model} on {tp.task.name}"):
            on_event(Event("done", action.task, action.model, tokens=stack.tokens,
                           seconds=stack.seconds, cache=stack.cache,
                           detail=stack.first_message.splitlines()[0][:72], kept=stack.kept,
                           decode_seconds=stack.decode_seconds or 0.0))
            return Result(
                action.task, action.model, action.branch,
                "updated" if action.head else "created", commit=final,
                message=body_of(stack.first_message), tokens=stack.tokens,
                seconds=stack.seconds, cache=stack.cache, stop=stack.stop,
                kept_tokens=stack.kept, decode_seconds=stack.decode_seconds,
                verify=stack.final.trailer() if stack.final else None,
            )
        state, fresh = replan(repo, state, tp, coder, action)
        if isinstance(fresh, Result):
            return fresh
        action = fresh
    return Result(action.task, action.model, action.branch, "failed",
                  reason="the branch kept moving while publishing; run sync again")


def replan(repo: GitRepo, state: RepoState, tp: TaskPlan, coder: Checkpoint,
           action: Action) -> tuple[RepoState, Action | Result]:
    """Re-plan one branch after a lost compare-and-swap: its new action, or its result.

    Someone moved the branch while we worked: a user commit is built upon, never
    overwritten; a deleted branch is not recreated.
    """
    state = refresh_branch(repo, state, action.task, tp.task.spec.target, action.model,
                           tp.task.tip)
    fresh = branch_action(state, tp, coder)
    if fresh.kind in ("generate", "publish"):
        return state, fresh
    reason = fresh.reason
    if fresh.kind == "skip":
        reason = "the branch was deleted while generating; not recreated"
    return state, Result(action.task, action.model, action.branch, STATUS[fresh.kind],
                         commit=fresh.head, reason=reason or None)


def archive(repo: GitRepo, state: RepoState, action: Action) -> str | None:
    """Archive a retired model branch and remove it; return the archive ref, None if raced."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{ARCHIVE_REFS}/{action.task}/{action.model}/{stamp}"
    # The stamp is to the second: a task that ended twice within one would collide.
    suffix = 1
    while name in state.refs:
        suffix += 1
        name = f"{ARCHIVE_REFS}/{action.task}/{action.model}/{stamp}-{suffix}"
    keep = action.head or action.shadow
    assert keep is not None and action.shadow is not None
    updates = [(name, keep, ZERO_OID), (shadow_ref(action.task, action.model), ZERO_OID,
                                        action.shadow)]
    if action.head is not None:
        updates.append((f"refs/heads/{action.branch}", ZERO_OID, action.head))
    if repo.update_refs(updates, f"symergion: task {action.task} ended"):
        return name
    return None
