"""Task operations a person would otherwise type as git commands: start, feedback, revoke, list.

Each one is exactly what the plain-git workflow does (``git branch`` + ``git notes add``, a note
on a model branch, ``git notes remove``), with the checks a person might skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symergion.config import Config, is_safe_relative_path
from symergion.core.execute import (
    TRAILER_TASK,
    Reconciler,
    Task,
    model_branch,
    parse_trailers,
    shadow_ref,
)
from symergion.core.spec import split_sections
from symergion.errors import GitError, NoteError, TaskInputError
from symergion.gitrepo import ZERO_OID, GitRepo, Snapshot


@dataclass
class TaskView:
    """A task as ``ergon list`` and ``status`` show it."""

    task: str
    tip: str
    source: str | None
    destination: str
    feedback: list[str]
    branches: dict[str, str | None] = field(default_factory=dict)


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
    for role, path in (("source", source), ("destination", destination)):
        if path is not None and not is_safe_relative_path(path):
            raise TaskInputError(f"{role} {path!r} is not a path inside the repository",
                                 hint="use a relative path without '..', a leading '/' or '.git'")
    if "source" in template.params and source is None:
        raise TaskInputError(f"the {template.name} template needs a source",
                             hint="pass --source path/to/file")
    commit = repo.rev_parse(from_ref)
    if source is not None and repo.tree_entry(commit, source) is None:
        raise TaskInputError(f"source {source!r} does not exist at {from_ref}",
                             hint="commit it first, or pass --from a ref that has it")
    parts = [f"task_branch: {branch}"]
    if source is not None:
        parts.append(f"source: {source}")
    parts.append(f"destination: {destination}")
    text = ", ".join(parts) + (f"\n{extra.strip()}" if extra.strip() else "")
    if not repo.update_refs([(f"refs/heads/{branch}", commit, ZERO_OID)],
                            f"symergion: start {branch}"):
        raise GitError(f"branch {branch!r} already exists",
                       hint="pick another task name, or delete the old branch first")
    snap = repo.snapshot()
    existing = snap.notes.get(commit)
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


def _task_of_branch(snap: Snapshot, repo: GitRepo, config: Config, branch: str) -> str:
    tip = snap.branch(branch)
    if tip is None:
        raise GitError(f"branch {branch!r} does not exist",
                       hint="name a model branch, e.g. from `symergion status`")
    for _oid, message in repo.first_parent_log(tip, limit=50):
        task = parse_trailers(message).get(TRAILER_TASK)
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
    """Annotate a model branch's tip with feedback; return (branch, commit)."""
    if not text.strip():
        raise NoteError("the feedback is empty", hint="say what the models should change")
    if "task_branch:" in text:
        raise NoteError("feedback text must not contain 'task_branch:'",
                        hint="write the change you want; the branch names the task")
    branch = resolve_model_branch(repo, config, branch)
    snap = repo.snapshot()
    _task_of_branch(snap, repo, config, branch)
    tip = snap.branch(branch)
    assert tip is not None
    if tip in snap.notes:
        raise NoteError(
            f"the tip of {branch} already has a note",
            hint="wait for the models to regenerate (a new commit), or revoke that note first",
        )
    repo.add_note(tip, text.strip())
    return branch, tip


def revoke_feedback(
    repo: GitRepo, reconciler: Reconciler, config: Config, branch: str | None
) -> tuple[str, str]:
    """Remove the latest feedback of a model branch's task; return (commit, feedback text)."""
    branch = resolve_model_branch(repo, config, branch)
    snap = repo.snapshot()
    task_name = _task_of_branch(snap, repo, config, branch)
    tasks, _ = reconciler.discover(snap)
    task = next((t for t in tasks if t.name == task_name), None)
    if task is None or not task.feedback:
        raise NoteError(f"task {task_name!r} has no feedback to revoke",
                        hint="add feedback with `symergion feedback TEXT`")
    latest = task.feedback[-1]
    note = snap.notes[latest.target]
    sections = split_sections(note.text, config.task_branch_spec)
    others = [s for s in sections if s.task_branch not in (None, task_name)]
    if others:
        # The note also speaks to other tasks: keep their sections.
        kept = "\n".join(f"task_branch: {s.task_branch}, {s.text}" for s in others)
        repo.remove_note(latest.target)
        repo.add_note(latest.target, kept)
    else:
        repo.remove_note(latest.target)
    return latest.target, latest.text


def list_tasks(repo: GitRepo, reconciler: Reconciler, config: Config) -> tuple[
    list[TaskView], list[str]
]:
    """Return the active tasks with their model branches, and problems found in notes."""
    snap = repo.snapshot()
    tasks, problems = reconciler.discover(snap)
    return [_view(snap, task, config) for task in tasks], [
        f"{p.where}: {p.message}" for p in problems
    ]


def _view(snap: Snapshot, task: Task, config: Config) -> TaskView:
    view = TaskView(
        task=task.name,
        tip=task.tip,
        source=task.spec.params.get("source"),
        destination=task.spec.params["destination"],
        feedback=[f.text for f in task.feedback],
    )
    for coder in config.coders:
        branch = model_branch(coder.model_name, task.name)
        head = snap.branch(branch)
        if head is None and shadow_ref(task.name, coder.model_name) in snap.refs:
            view.branches[branch] = "deleted"
        else:
            view.branches[branch] = head
    return view
