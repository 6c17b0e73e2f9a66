"""Task operations a person would otherwise type as git commands, and the views of the plan.

``start_task``, ``add_feedback`` and ``revoke_feedback`` are exactly what the plain-git workflow
does (``git branch`` + ``git notes add``, a note on a model branch, ``git notes remove``), with
the checks a person might skip. ``views`` renders a plan for ``ergon list`` and ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symergion.config.paths import is_safe_relative_path
from symergion.config.schema import Config
from symergion.core.inputs import same_file
from symergion.core.plan import Plan, discover, plan
from symergion.core.spec import (
    Section,
    feedback_text,
    normalise_path,
    parse_params,
    split_sections,
    write_sections,
    write_spec,
)
from symergion.core.state import (
    RepoState,
    model_branch,
    read_state,
    shadow_ref,
)
from symergion.core.task import Task
from symergion.errors import GitError, NoteError, TaskInputError
from symergion.gitrepo import ZERO_OID, GitRepo
from symergion.trailers import Trailers
from symergion.verify.result import VerifyResult, rank


@dataclass
class TaskView:
    """A task as ``ergon list`` and ``status`` show it."""

    task: str
    tip: str
    source: str | None
    destination: str
    feedback: list[str]
    branches: dict[str, str | None] = field(default_factory=dict)
    # The verified candidates, best first: branch, commit, rank, and the Symergion-Verify trailer.
    ranking: list[dict[str, Any]] = field(default_factory=list)


def start_task(
    repo: GitRepo,
    config: Config,
    branch: str,
    *,
    source: str | None,
    destination: str,
    from_ref: str = "HEAD",
    extra: str = "",
) -> str:
    """Create a task branch and its initial note; return the annotated commit.

    Raises:
        TaskInputError: the branch name, template, or paths cannot be used.
        GitError: the branch exists already.
    """
    template = config.template_for(branch)
    if template is None:
        raise TaskInputError(
            f"task branch {branch!r} does not start with a template name",
            hint=f"name it like {next(iter(config.templates))}_<what>; templates: "
            + ", ".join(config.templates),
        )
    if not repo.check_branch_name(branch) or branch.startswith("-"):
        raise TaskInputError(f"git rejects the branch name {branch!r}",
                             hint="use letters, digits, '_', '-', '.' and '/'")
    source = normalise_path(source) if source is not None else None
    destination = normalise_path(destination)
    for role, path in (("source", source), ("destination", destination)):
        if path is not None and not is_safe_relative_path(path):
            raise TaskInputError(f"{role} {path!r} is not a path inside the repository",
                                 hint="use a relative path without '..', a leading '/' or '.git'")
    same_file(source, destination)
    if "source" in template.params and source is None:
        raise TaskInputError(f"the {template.name} template needs a source",
                             hint="pass --source path/to/file")
    if "source" not in template.params and source is not None:
        raise TaskInputError(f"the {template.name} template takes no source",
                             hint="leave out --source, or add a source pattern to the template")
    commit = repo.rev_parse(from_ref)
    if source is not None and repo.tree_entry(commit, source) is None:
        raise TaskInputError(f"source {source!r} does not exist at {from_ref}",
                             hint="commit it first, or pass --from a ref that has it")
    params = {"source": source} if source is not None else {}
    params["destination"] = destination
    # Written in the config's own grammar and parsed back: what is asked is what the note says.
    text = write_spec(config.task_branch_spec, template, branch, params, extra)
    if not repo.update_refs([(f"refs/heads/{branch}", commit, ZERO_OID)],
                            f"symergion: start {branch}"):
        raise GitError(f"branch {branch!r} already exists",
                       hint="pick another task name, or delete the old branch first")
    existing = repo.snapshot().notes.get(commit)
    try:
        if existing is not None:
            names = {s.task_branch for s in split_sections(existing.text, config.task_branch_spec)}
            if branch in names:
                raise NoteError(f"the note on {commit[:12]} already starts task {branch!r}")
            # Several tasks from one commit share its note: one section each.
            repo.add_note(commit, text, append=True)
        else:
            repo.add_note(commit, text)
    except Exception:
        repo.update_refs([(f"refs/heads/{branch}", ZERO_OID, commit)], "symergion: undo start")
        raise
    return commit


def _task_of_branch(state: RepoState, repo: GitRepo, config: Config, branch: str) -> str:
    tip = state.branch(branch)
    if tip is None:
        raise GitError(f"branch {branch!r} does not exist",
                       hint="name a model branch, e.g. from `symergion status`")
    for _oid, message in repo.first_parent_log(tip, limit=50):
        task = Trailers.parse(message).task
        if task:
            return task
    for coder in config.coders:
        prefix = f"{coder.model_name}_"
        if branch.startswith(prefix):
            return branch[len(prefix):]
    raise NoteError(f"{branch!r} is not a model branch of any task",
                    hint="give feedback on a branch named <model>_<task branch>")


def resolve_model_branch(repo: GitRepo, config: Config, branch: str | None) -> str:
    """Return ``branch``, or the checked-out branch when it is a model branch."""
    if branch:
        return branch
    current = repo.current_branch()
    if current is None:
        raise GitError("HEAD is detached, so there is no current model branch",
                       hint="pass --branch <model>_<task>")
    if not any(current.startswith(f"{c.model_name}_") for c in config.coders):
        raise NoteError(f"the checked-out branch {current!r} is not a model branch",
                        hint="pass --branch <model>_<task>, or check out a model branch")
    return current


def add_feedback(repo: GitRepo, config: Config, text: str, branch: str | None) -> tuple[str, str]:
    """Annotate a model branch's tip with feedback; return (branch, commit).

    The tip may be a hand commit: a note on any commit of the task's model branch made after
    the task started is feedback for that task.
    """
    if not text.strip():
        raise NoteError("the feedback is empty", hint="say what the models should change")
    if any(s.task_branch for s in split_sections(text, config.task_branch_spec)):
        raise NoteError("feedback text must not name a task branch ('task_branch:')",
                        hint="write the change you want; the branch names the task")
    branch = resolve_model_branch(repo, config, branch)
    snap = repo.snapshot()
    tip = snap.branch(branch)
    if tip is None:
        raise GitError(f"branch {branch!r} does not exist",
                       hint="name a model branch, e.g. from `symergion status`")
    for _oid, message in repo.first_parent_log(tip, limit=50):
        if Trailers.parse(message).task:
            break
    else:
        if not any(branch.startswith(f"{c.model_name}_") for c in config.coders):
            raise NoteError(f"{branch!r} is not a model branch of any task",
                            hint="give feedback on a branch named <model>_<task branch>")
    if tip in snap.notes:
        raise NoteError(
            f"the tip of {branch} already has a note",
            hint="wait for the models to regenerate (a new commit), or revoke that note first",
        )
    repo.add_note(tip, text.strip())
    return branch, tip


def revoke_feedback(repo: GitRepo, config: Config, branch: str | None) -> tuple[str, str]:
    """Remove the latest feedback of a model branch's task; return (commit, feedback text).

    In a note that also speaks to other tasks only this task's section goes, and the note is
    edited in place: the other tasks' feedback keeps its place in the order.
    """
    branch = resolve_model_branch(repo, config, branch)
    state = read_state(repo, config)
    task_name = _task_of_branch(state, repo, config, branch)
    tasks, _problems, _held = discover(state, config)
    task = next((t for t in tasks if t.name == task_name), None)
    if task is None or not task.feedback:
        raise NoteError(f"task {task_name!r} has no feedback to revoke",
                        hint="add feedback with `symergion feedback TEXT`")
    latest = task.feedback[-1]
    note = state.notes[latest.target]
    sections = split_sections(note.text, config.task_branch_spec)
    template = config.template_for(task_name)

    def feedback_of_task(section: Section) -> bool:
        # Text before any task_branch: (a note on a model branch's commit), or a section that
        # names the task without starting it: never the section with the task's destination.
        if section.task_branch is None:
            return True
        if section.task_branch != task_name or template is None:
            return False
        return "destination" not in parse_params(section.text, template)[0]

    mine = [i for i, s in enumerate(sections) if feedback_of_task(s)]
    same = [i for i in mine if feedback_text(sections[i]) == latest.text]
    if not (same or mine):
        raise NoteError(f"the note on {latest.target[:12]} has no feedback section of task "
                        f"{task_name!r} to remove", hint=f"edit it with `git notes edit "
                        f"{latest.target}`")
    drop = (same or mine)[-1]
    # Only the feedback goes: the task's own spec and other tasks' sections stay, and the note
    # is edited in place, so the other feedback keeps its place in the order.
    kept = [Section(s.task_branch, s.text) for i, s in enumerate(sections) if i != drop]
    if kept:
        repo.replace_note(latest.target, write_sections(config.task_branch_spec, kept))
    else:
        repo.remove_note(latest.target)
    return latest.target, latest.text


@dataclass
class Views:
    """The plan as ``ergon list`` and ``status`` show it."""

    tasks: list[TaskView]
    rows: list[dict[str, Any]]
    problems: list[str]


def views(state: RepoState, the_plan: Plan, config: Config) -> Views:
    """Return the task list and one status row per model branch; loads no model."""
    result = Views([], [], [f"{p.where}: {p.message}" for p in the_plan.problems])
    planned = {tp.task.name: tp for tp in the_plan.tasks}
    for task in sorted([*(tp.task for tp in the_plan.tasks), *the_plan.blocked],
                       key=lambda t: t.name):
        view = TaskView(task=task.name, tip=task.tip, source=task.spec.params.get("source"),
                        destination=task.spec.params["destination"],
                        feedback=[f.text for f in task.feedback])
        tp = planned.get(task.name)
        results: list[tuple[str, VerifyResult]] = []
        for coder in config.coders:
            branch = model_branch(coder.model_name, task.name)
            head = state.branch(branch)
            deleted = head is None and shadow_ref(task.name, coder.model_name) in state.refs
            view.branches[branch] = "deleted" if deleted else head
            action = next((a for a in tp.actions if a.model == coder.model_name), None) \
                if tp is not None else None
            if action is None:
                row_state, reason = "blocked", the_plan.blocked_reason.get(task.name)
            elif deleted:
                row_state, reason = "deleted", None
            else:
                row_state = {"up-to-date": "up-to-date", "keep": "kept", "problem": "failed"
                             }.get(action.kind, "pending")
                reason = action.reason or None if row_state != "up-to-date" else None
                if row_state == "pending" and tp is not None and tp.prompt is None:
                    reason = "its reasoning is not in the repository yet"
            verified = _verified(state, head) if head is not None else None
            result.rows.append({"task": task.name, "model": coder.model_name, "branch": branch,
                                "state": row_state, "commit": head,
                                "feedback": len(task.feedback), "reason": reason,
                                "verify": verified.trailer() if verified else None, "rank": None})
            if verified is not None:
                results.append((branch, verified))
        rows = {r["branch"]: r for r in result.rows if r["task"] == task.name}
        for place, (branch, verified) in enumerate(rank(results), start=1):
            rows[branch]["rank"] = place
            view.ranking.append({"branch": branch, "commit": view.branches[branch], "rank": place,
                                 "verify": verified.trailer()})
        result.tasks.append(view)
    return result


def _verified(state: RepoState, head: str) -> VerifyResult | None:
    """Return the verification a branch tip records, or None (not verified, or not read)."""
    commit = state.commits.get(head)
    return VerifyResult.from_message(commit.message) if commit is not None else None


def current_views(repo: GitRepo, config: Config) -> Views:
    """Read the repository and return its views."""
    state = read_state(repo, config)
    return views(state, plan(state, config), config)


__all__ = ["Task", "TaskView", "Views", "add_feedback", "current_views", "revoke_feedback",
           "start_task", "views"]
