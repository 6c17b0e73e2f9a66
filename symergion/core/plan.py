"""`plan(state, config) -> Plan`: what every model branch needs, and why; a pure function.

Tasks come from notes: a ``task_branch:`` section with a destination starts a task on a branch
whose history holds the annotated commit. Feedback is a note on a commit of the task's current
model branches (made after the task started: symergion's commits and hand commits alike), or a
``task_branch: NAME, ...`` section on a commit of the task branch. Commits of an ended task
(only reachable from ``refs/symergion/archive``) give nothing to a task restarted under the same
name. Each model branch then gets one action: generate, publish (an earlier attempt on the
branch had this very prompt), up-to-date, keep (checked out), skip (deleted by hand), retire
(the task ended) or problem.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from symergion.config.schema import Checkpoint, Config, Template
from symergion.core import prompt as prompts
from symergion.core.chain import base_digest, next_repair, prompt_chain
from symergion.core.inputs import task_inputs
from symergion.core.spec import TaskSpec, looks_like_task_spec, read_note
from symergion.core.state import Commit, RepoState, model_branch, shadow_ref
from symergion.core.task import Feedback, Task
from symergion.errors import TaskInputError
from symergion.gitrepo import SHADOW_REFS

CHECKED_OUT = "the branch is checked out; switch away and sync again to get the new attempt"


@dataclass
class Problem:
    """Something symergion could not act on; the message says what to fix."""

    where: str
    message: str


@dataclass
class Action:
    """What one model branch needs, and why."""

    kind: str  # generate | publish | up-to-date | keep | skip | retire | problem
    task: str
    model: str
    branch: str
    reason: str = ""
    head: str | None = None
    shadow: str | None = None
    previous: Commit | None = None
    reuse: str | None = None  # an earlier commit on the branch made from this very prompt
    # The newest hand commit above ``reuse`` before the branch's next answer: what the branch
    # held when that prompt was last current, so its file comes back with the prompt.
    hand: str | None = None
    has_tip: bool = False  # the branch already holds the task tip
    repair: int = 0  # the repair round to make (the prompt's candidate failed verification)


@dataclass
class TaskPlan:
    """One task's inputs, prompt (None until a reasoner has run) and per-branch actions."""

    task: Task
    files: list[tuple[str, str]]
    source_code: str | None
    destination: str
    base_digest: str
    reasoning: list[str] | None
    prompt: prompts.Prompt | None
    actions: list[Action] = field(default_factory=list)


@dataclass
class Plan:
    """Everything one pass is going to do."""

    tasks: list[TaskPlan] = field(default_factory=list)
    retire: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    blocked: list[Task] = field(default_factory=list)
    blocked_reason: dict[str, str] = field(default_factory=dict)


def plan(state: RepoState, config: Config) -> Plan:
    """Return the action of every model branch, from one state read; touches nothing."""
    tasks, problems, held = discover(state, config)
    result = Plan(problems=problems)
    if state.configured_notes_ref not in ("", state.notes_ref):
        result.problems.append(Problem(
            "notes", f"git is set to keep notes in {state.configured_notes_ref} (core.notesRef "
            f"or GIT_NOTES_REF), but symergion reads its tasks from {state.notes_ref}: notes "
            "added with plain `git notes` are not seen\n  hint: unset GIT_NOTES_REF and "
            f"`git config --unset core.notesRef`, or use `git notes --ref {state.notes_ref}`"))
    active = {t.name for t in tasks}
    for ref, shadow in sorted(state.refs.items()):
        if not ref.startswith(SHADOW_REFS + "/"):
            continue
        name, _, model = ref[len(SHADOW_REFS) + 1:].rpartition("/")
        if name in active or name in held:
            continue
        naming = notes_naming(state, name) if state.branch(name) is not None else []
        if naming:
            # A note still names the task while its branch exists: it stopped parsing (a typo,
            # a hand edit). Ending the task would archive its branches and lose its feedback,
            # so they wait for the note to be fixed.
            held.add(name)
            result.problems.append(Problem(
                f"note on {naming[0][:12]}",
                f"the note names task {name!r} but no longer starts it; its model branches "
                f"are kept\n  hint: fix the note (`git notes edit {naming[0]}`) so it reads "
                f"'task_branch: {name}, ... destination: path', or delete branch {name} to "
                "end the task"))
            continue
        branch = model_branch(model, name)
        head = state.branch(branch)
        if head is not None and branch in state.checked_out:
            result.retire.append(Action("keep", name, model, branch, head=head, shadow=shadow,
                                        reason="the task ended but the branch is checked out; "
                                               "switch away and sync again to archive it"))
        else:
            result.retire.append(Action("retire", name, model, branch, head=head, shadow=shadow))
    for task in tasks:
        try:
            files, source_code, destination = task_inputs(state, config, task)
        except TaskInputError as exc:
            result.problems.append(Problem(f"task {task.name}", str(exc)))
            result.blocked.append(task)
            result.blocked_reason[task.name] = str(exc)
            continue
        initial = [prompts.call_to_action(task.template.call_to_action, source_code),
                   *task.spec.rows]
        base = prompts.render(files, initial, [], code_starter(task.template, task.spec))
        digest = hashlib.sha256(base.text.encode("utf-8")).hexdigest()
        reasoning = recorded_reasoning(state, task, digest) if config.reasoners else []
        tp = TaskPlan(task, files, source_code, destination, digest, reasoning, None)
        if reasoning is not None:
            tp.prompt = task_prompt(tp, reasoning)
        tp.actions = [branch_action(state, tp, coder) for coder in config.coders]
        result.tasks.append(tp)
    return result


def notes_naming(state: RepoState, task: str) -> list[str]:
    """Return the commits whose note mentions ``task`` by name, whether or not it parses."""
    pattern = re.compile(rf"(?<![\w./-]){re.escape(task)}(?![\w./-])")
    return sorted(t for t, note in state.notes.items() if pattern.search(note.text))


def task_prompt(tp: TaskPlan, reasoning: list[str]) -> prompts.Prompt:
    """Return a task's prompt once its reasoning rows are known."""
    task = tp.task
    initial = [prompts.call_to_action(task.template.call_to_action, tp.source_code),
               *task.spec.rows, *reasoning]
    return prompts.render(tp.files, initial, [f.text for f in task.feedback],
                          code_starter(task.template, task.spec))


def code_starter(template: Template, spec: TaskSpec) -> str:
    """Return the template's code starter for a task: ``{module}`` is the module under test.

    Without a source there is no module to name, and the code starter is used as written.
    """
    return prompts.code_starter(template.code_starter, spec.params)


def checked(tp: TaskPlan) -> bool:
    """Return whether a task's candidates are checked: its template verifies, it has a source."""
    return tp.task.template.verify is not None and bool(tp.task.spec.params.get("source"))


def own_commits(state: RepoState, head: str, model: str, task: str) -> list[Commit]:
    """Return symergion's commits for (model, task) on ``head``'s first-parent chain, newest first."""
    return [c for c in state.first_parent_chain(head)
            if c.trailers.model == model and c.trailers.task == task]


def branch_action(state: RepoState, tp: TaskPlan, coder: Checkpoint) -> Action:
    """Return what one model branch of a task needs."""
    task, model = tp.task, coder.model_name
    branch = model_branch(model, task.name)
    head = state.branch(branch)
    shadow = state.refs.get(shadow_ref(task.name, model))
    action = Action("generate", task.name, model, branch, head=head, shadow=shadow,
                    has_tip=f"refs/heads/{branch}" in state.contains_tip.get(task.name, set()))
    if branch in state.bad_names:
        action.kind, action.reason = "problem", (
            f"git rejects the branch name {branch!r}; rename the task branch")
        return action
    if head is None and shadow is not None:
        action.kind, action.reason = "skip", "the branch was deleted by hand; not generated again"
        return action
    own = own_commits(state, head, model, task.name) if head else []
    action.previous = own[0] if own else None
    digest = tp.prompt.digest if tp.prompt is not None else None
    # Every commit made for this prompt (its candidate, prunes, repairs) counts as answering it.
    chain = prompt_chain(own, digest) if digest is not None else []
    if chain:
        action.repair = next_repair(chain, task.template.verify) or 0
        if not action.repair:
            action.kind = "up-to-date"
            return action
    if head is not None and branch in state.checked_out:
        action.kind, action.reason = "keep", CHECKED_OUT
        return action
    earlier = next((c for c in own if base_digest(c) == digest), None)
    if action.repair:
        action.reason = f"its candidate failed verification: repair round {action.repair}"
    elif earlier is not None:
        action.kind, action.reuse = "publish", earlier.oid
        action.hand = hand_tip(state.first_parent_chain(head), earlier, own) if head else None
        action.reason = f"the attempt of {earlier.oid[:12]} had this prompt"
    else:
        action.reason = "no attempt on this branch had this prompt"
    return action


def hand_tip(chain: list[Commit], earlier: Commit, own: list[Commit]) -> str | None:
    """Return the newest commit made by hand on top of ``earlier``, before the next answer.

    ``chain`` is the branch's first-parent chain and ``own`` symergion's commits on it, both
    newest first. A revoke brings ``earlier``'s prompt back; the branch then held ``earlier``
    and the hand commits above it, and their work is what the user expects back, not only
    the model's answer below it.
    """
    mine = {c.oid for c in own}
    above = [c.oid for c in chain[:next((i for i, c in enumerate(chain) if c.oid == earlier.oid), 0)]]
    tip = None
    for oid in reversed(above):  # oldest first: the hand commits end at the next answer
        if oid in mine:
            break
        tip = oid
    return tip


def recorded_reasoning(state: RepoState, task: Task, digest: str) -> list[str] | None:
    """Return the reasoning rows a commit of the task recorded for this base prompt, or None.

    A commit records them as the last rows of its body, with the trailer
    ``Symergion-Reasoning: <sha256 of the base prompt> <number of rows>``.
    """
    commits = state.history.get((task.name, task.spec.target), set())
    for oid in sorted(commits):
        commit = state.commits.get(oid)
        recorded = commit.trailers.reasoning if commit else None
        if commit is None or recorded is None or recorded.digest != digest:
            continue
        count = recorded.rows
        body = commit.message.strip().rsplit("\n\n", 1)[0].splitlines()
        return body[len(body) - count:] if count else []
    return None


def message_body(state: RepoState, config: Config, tp: TaskPlan, previous: Commit | None) -> str:
    """Return a new commit's message body: the initial prompt, else what changed since."""
    task = tp.task
    if previous is None:
        return "\n".join([prompts.call_to_action(task.template.call_to_action, tp.source_code),
                          *task.spec.rows])
    applied = applied_notes(state, previous)
    before = [target for target, _blob in applied]
    current = [f.target for f in task.feedback]
    texts = {f.target: f.text for f in task.feedback}
    lines = [f"Revert: {old_feedback(state, config, target, blob, task.name)}"
             for target, blob in applied if target not in current]
    lines += [texts[t] for t in current if t not in before]
    return "\n".join(lines) if lines else "Regenerate: the task's inputs changed"


def applied_notes(state: RepoState, commit: Commit) -> list[tuple[str, str]]:
    """Return the (annotated commit, note blob) pairs a commit's ``Symergion-Notes`` lists.

    Commits made before the trailer named the annotated commit list note blobs alone.
    """
    by_blob = {note.blob: target for target, note in state.notes.items()}
    pairs = []
    for ref in commit.trailers.notes or ():
        if ref.target is not None and ref.blob:
            pairs.append((ref.target, ref.blob))
        else:
            pairs.append((by_blob.get(str(ref), str(ref)), str(ref)))
    return pairs


def old_feedback(state: RepoState, config: Config, ident: str, blob: str, task: str) -> str:
    """Return the text a removed feedback had for ``task`` (its annotated commit and blob)."""
    candidates = [blob, *reversed(state.note_blobs.get(ident, []))]
    for blob in candidates:
        text = state.texts.get(blob)
        if text is None:
            continue
        sections = read_note(text, ident, blob, config)
        # Feedback appended to the task's own note: the spec section is not the feedback.
        named = [s for s in sections if s.section.task_branch == task and s.spec is None]
        unnamed = [s for s in sections if s.section.task_branch is None]
        if named or unnamed:
            return (named or unnamed)[0].feedback
    return f"note on {ident[:12]}"



@dataclass
class _Notes:
    """What the notes say, sorted by kind: task specs, feedback named by task, other feedback.

    ``problems`` and ``held`` (tasks on hold) gather what each step of ``discover`` finds.
    """

    specs: dict[str, list[TaskSpec]] = field(default_factory=dict)
    named: list[tuple[str, str, str, str]] = field(default_factory=list)  # task, target, blob, text
    unnamed: list[tuple[str, str, str]] = field(default_factory=list)  # target, blob, text
    spec_targets: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    held: set[str] = field(default_factory=set)


def discover(state: RepoState, config: Config) -> tuple[list[Task], list[Problem], set[str]]:
    """Return the active tasks, the notes that could not be understood, and the tasks on hold.

    A task on hold (its note is no longer on its branch, or the config lacks its template) is
    not retired: its model branches wait until the problem reported for it is fixed.
    """
    notes = _read_notes(state, config)
    tasks = _start_tasks(state, config, notes)
    _attach_feedback(state, config, tasks, notes)
    for task in tasks.values():
        _sort_feedback(state, config, task)
    return sorted(tasks.values(), key=lambda t: t.name), notes.problems, notes.held


def _read_notes(state: RepoState, config: Config) -> _Notes:
    """Read every note's sections, in the order the notes were added."""
    notes = _Notes()
    for target in sorted(state.notes, key=lambda t: (state.note_order.get(t, 0), t)):
        note = state.notes[target]
        for read in read_note(note.text, target, note.blob, config):
            name = read.section.task_branch
            if name is None:
                notes.unnamed.append((target, note.blob, read.feedback))
            elif read.template is None:
                notes.held.add(name)
                if looks_like_task_spec(read.section.text, config.templates):
                    notes.problems.append(Problem(
                        f"note on {target[:12]}",
                        f"task branch {name!r} matches no template "
                        f"({', '.join(config.templates)}); its model branches are kept"))
            elif read.spec is not None:
                notes.specs.setdefault(name, []).append(read.spec)
                notes.spec_targets.add(target)
            else:
                notes.named.append((name, target, note.blob, read.feedback))
    return notes


def _start_tasks(state: RepoState, config: Config, notes: _Notes) -> dict[str, Task]:
    """Return the tasks whose branch holds the commit their latest spec note is on."""
    tasks: dict[str, Task] = {}
    for name, candidates in notes.specs.items():
        tip = state.branch(name)
        if tip is None:
            if name in state.bad_names:
                notes.problems.append(Problem(
                    f"note on {candidates[0].target[:12]}",
                    f"git rejects the branch name {name!r}, so the task can never start"
                    "\n  hint: name the task branch with letters, digits, '_', '-', '.' "
                    "and '/' (no '..', no '.lock' at the end)"))
            continue
        reachable = [s for s in candidates if state.is_ancestor(s.target, tip)]
        if not reachable:
            notes.held.add(name)
            old = candidates[-1].target
            notes.problems.append(Problem(
                f"task {name}",
                f"the note that starts it is on {old[:12]}, which branch {name} no longer "
                "contains (amended or rebased?); its model branches are kept"
                f"\n  hint: git notes copy {old} {tip}   (or `git notes remove {old}` "
                "and delete the branch to end the task)"))
            continue
        reachable.sort(key=lambda s: (state.note_order.get(s.target, 0), s.target))
        template = config.template_for(name)
        assert template is not None
        tasks[name] = Task(name, tip, template, reachable[-1])
    return tasks


def _attach_feedback(state: RepoState, config: Config, tasks: dict[str, Task],
                     notes: _Notes) -> None:
    """Give each task the feedback notes on its own commits and on its branch's history."""

    def owned(task: Task, target: str) -> bool:
        return target in state.history.get((task.name, task.spec.target), set())

    for target, blob, text in notes.unnamed:
        owner = next((t for t in tasks.values() if owned(t, target)), None)
        if owner is not None and target != owner.spec.target and text:
            owner.feedback.append(Feedback(target, blob, text, state.note_order.get(target, 0)))
        elif owner is None and target not in notes.spec_targets and looks_like_task_spec(
                text, config.templates):
            notes.problems.append(Problem(f"note on {target[:12]}",
                                          "looks like a task spec but names no task_branch"))
    reported: set[str] = set()
    for name, target, blob, text in notes.named:
        task = tasks.get(name)
        if task is None:
            if name not in notes.specs and name not in reported and state.branch(name) is not None:
                # Kept, not ended: this may be the task's own note, edited by hand into one
                # that no longer parses (``destnation:``); the feedback is on its branches.
                reported.add(name)
                notes.held.add(name)
                notes.problems.append(Problem(
                    f"note on {target[:12]}",
                    f"the note on task branch {name!r} names no destination, so the task "
                    "cannot start; its model branches, if any, are kept\n  hint: write "
                    f"'destination: path/to/file' in the note on {target[:12]} "
                    f"(`git notes edit {target}`), or delete branch {name} to end the task"))
            continue
        if not text:
            continue
        if owned(task, target) or state.is_ancestor(target, task.tip):
            task.feedback.append(Feedback(target, blob, text, state.note_order.get(target, 0)))


def _sort_feedback(state: RepoState, config: Config, task: Task) -> None:
    """Order feedback as the notes were added; ties keep the order symergion recorded.

    Notes added in one notes commit (a squashed, imported or pruned notes history) tie: the
    order symergion's last commit recorded breaks the tie, so a rewritten notes ref does not
    reorder the feedback and regenerate everything.
    """
    ranks = [f.order for f in task.feedback]
    recorded: dict[str, int] = {}
    if len(set(ranks)) < len(ranks):
        for coder in config.coders:
            head = state.branch(model_branch(coder.model_name, task.name))
            own = own_commits(state, head, coder.model_name, task.name) if head else []
            if own:
                ids = [target for target, _blob in applied_notes(state, own[0])]
                recorded = {target: i for i, target in enumerate(ids)}
                break
    task.feedback.sort(key=lambda f: (f.order, recorded.get(f.target, len(recorded)), f.target))
