"""``publish_stack``, the one compare-and-swap of generated work, on a real repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from symergion.core.ops import add_feedback
from symergion.core.plan import Action, plan
from symergion.core.publish import CAS_RETRIES, Stack, commit_file, publish_stack
from symergion.core.report import Event
from symergion.core.response import Response
from symergion.core.state import RepoState, shadow_ref
from tests.helpers.fleet import make_config
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"
ALPHA = f"alpha_{TASK}"
DESTINATION = "test_capture_output.py"


def planned(reconciler: Any) -> tuple[RepoState, Any, Any, Action]:
    """Return the state, alpha's task plan, checkpoint and action, as a pass would see them."""
    state = reconciler.read()
    (tp,) = plan(state, reconciler.config).tasks
    return state, tp, reconciler.config.coders[0], tp.actions[0]


def ref(path: Path, name: str) -> str | None:
    out = git(path, "for-each-ref", "--format=%(objectname)", name).strip()
    return out or None


def test_a_stack_moves_the_branch_and_its_shadow_to_its_top(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir)
    repo = reconciler.repo
    state, tp, coder, action = planned(reconciler)
    generated = Response(text="import unittest\n", tokens=10, seconds=1.5, kept_tokens=7,
                         decode_seconds=1.0, cache="miss")
    made: list[str] = []

    def build(state: RepoState, action: Action, attempt: int) -> Stack:
        stack = Stack()
        first = commit_file(repo, tp, action, repo.write_blob(b"import unittest\n"),
                            "Candidate\n\nbody\n")
        stack.add(first, "Candidate\n\nbody\n", generated)
        tree = git(repo_dir, "rev-parse", f"{first}^{{tree}}").strip()
        top = repo.commit_tree(tree, [first], "Prune: nothing\n", author="alpha",
                               email="alpha@symergion.invalid")
        stack.add(top, "Prune: nothing\n", None)
        made.extend(stack.commits)
        return stack

    events: list[Event] = []
    result = publish_stack(repo, state, tp, coder, action, build, events.append)
    first, top = made
    assert (result.status, result.commit) == ("created", top)
    assert ref(repo_dir, f"refs/heads/{ALPHA}") == top
    assert ref(repo_dir, shadow_ref(TASK, "alpha")) == top
    assert git(repo_dir, "rev-parse", f"{top}^").strip() == first
    # The result speaks for the stack: its first message, and the figures of what was generated.
    assert result.message == "Candidate\n\nbody\n"
    assert (result.tokens, result.kept_tokens, result.decode_seconds) == (10, 7, 1.0)
    assert (result.cache, result.stop) == ("miss", "eos")
    (done,) = events
    assert (done.kind, done.detail, done.kept) == ("done", "Candidate", 7)


def test_a_branch_that_keeps_moving_is_never_overwritten(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir)
    repo = reconciler.repo
    state, tp, coder, action = planned(reconciler)
    tip = git(repo_dir, "rev-parse", TASK).strip()
    users: list[str] = []
    built: list[Action] = []

    def build(state: RepoState, action: Action, attempt: int) -> Stack:
        # The user commits on the branch every time a stack is being made.
        built.append(action)
        parent = users[-1] if users else tip
        users.append(git(repo_dir, "commit-tree", f"{tip}^{{tree}}", "-p", parent, "-m",
                         f"user {attempt}").strip())
        git(repo_dir, "update-ref", f"refs/heads/{ALPHA}", users[-1])
        message = f"attempt {attempt}\n"
        blob = repo.write_blob(f"# attempt {attempt}\n".encode())
        return Stack.single(commit_file(repo, tp, action, blob, message), message,
                            Response(text="x"))

    result = publish_stack(repo, state, tp, coder, action, build, lambda _e: None)
    assert result.status == "failed"
    assert result.reason == "the branch kept moving while publishing; run sync again"
    assert len(built) == CAS_RETRIES
    # Each attempt after a lost race builds upon what the user committed before it.
    assert [a.head for a in built] == [None, *users[:-1]]
    assert ref(repo_dir, f"refs/heads/{ALPHA}") == users[-1]
    assert ref(repo_dir, shadow_ref(TASK, "alpha")) is None


def test_a_branch_deleted_while_generating_is_not_recreated(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir).sync()
    add_feedback(make_reconciler(repo_dir).repo, make_config(), "Use setUp method", ALPHA)
    reconciler = make_reconciler(repo_dir)
    repo = reconciler.repo
    state, tp, coder, action = planned(reconciler)
    assert action.kind == "generate" and action.head is not None
    shadow = ref(repo_dir, shadow_ref(TASK, "alpha"))

    def build(state: RepoState, action: Action, attempt: int) -> Stack:
        git(repo_dir, "branch", "-D", ALPHA)
        blob = repo.write_blob(b"# late\n")
        return Stack.single(commit_file(repo, tp, action, blob, "late\n"), "late\n",
                            Response(text="# late\n"))

    result = publish_stack(repo, state, tp, coder, action, build, lambda _e: None)
    assert result.status == "skipped"
    assert result.reason == "the branch was deleted while generating; not recreated"
    assert ref(repo_dir, f"refs/heads/{ALPHA}") is None
    assert ref(repo_dir, shadow_ref(TASK, "alpha")) == shadow


def test_an_empty_stack_moves_nothing(repo_dir, make_reconciler):
    start_task_with_git(repo_dir)
    reconciler = make_reconciler(repo_dir)
    state, tp, coder, action = planned(reconciler)
    before = git(repo_dir, "for-each-ref")
    result = publish_stack(reconciler.repo, state, tp, coder, action,
                           lambda _s, _a, _n: Stack(), lambda _e: None)
    assert (result.status, result.commit) == ("up-to-date", None)
    assert git(repo_dir, "for-each-ref") == before
