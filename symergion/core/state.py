"""`RepoState`: everything one pass decides from, read from git in a few batched calls.

The read has two phases. First refs, notes (with the order they were added in) and the checked
out branches; then, for the tasks those notes name, the history of their model branches (with
the trailers of symergion's commits), the ancestry the plan asks about, and the task files.
After that nothing reads git again: ``plan`` is a function of this state alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from symergion.config.schema import Config
from symergion.core.spec import TaskSpec, parse_params, split_sections
from symergion.gitrepo import (
    MAX_FILE_BYTES,
    REMOTE_NOTES_REFS,
    SHADOW_REFS,
    Entry,
    GitRepo,
    Note,
)
from symergion.trailers import Trailers


def model_branch(model: str, task: str) -> str:
    """Return the branch name of a model's attempt at a task."""
    return f"{model}_{task}"


def shadow_ref(task: str, model: str) -> str:
    """Return the ref that remembers symergion's last commit for a model branch."""
    return f"{SHADOW_REFS}/{task}/{model}"


@dataclass(frozen=True)
class Commit:
    """A commit as the plan needs it: parents, message and symergion trailers."""

    oid: str
    parents: tuple[str, ...]
    message: str
    trailers: Trailers


@dataclass(frozen=True)
class FileRead:
    """A task file at the task tip: its entry, bytes, and the parent that is no directory."""

    entry: Entry | None
    data: bytes | None = None
    bad_parent: str | None = None


@dataclass
class RepoState:
    """One consistent read of what the pass decides from."""

    refs: dict[str, str]
    notes_ref: str
    notes: dict[str, Note]
    note_order: dict[str, int]
    note_blobs: dict[str, list[str]]
    texts: dict[str, str]
    checked_out: set[str]
    commits: dict[str, Commit] = field(default_factory=dict)
    history: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    ancestry: dict[tuple[str, str], bool] = field(default_factory=dict)
    contains_tip: dict[str, set[str]] = field(default_factory=dict)
    files: dict[tuple[str, str], FileRead] = field(default_factory=dict)
    bad_names: set[str] = field(default_factory=set)
    # The notes ref plain `git notes` uses here, when it is not the one symergion reads.
    configured_notes_ref: str = ""
    # Tasks started by a note that a remote's notes (fetched by `sync --remote`) also hold.
    remote_tasks: set[str] = field(default_factory=set)

    def branch(self, name: str) -> str | None:
        """Return the commit a local branch points to, or None."""
        return self.refs.get(f"refs/heads/{name}")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Return whether ``ancestor`` is in ``descendant``'s history (as read)."""
        return ancestor == descendant or self.ancestry.get((ancestor, descendant), False)

    def first_parent_chain(self, head: str) -> list[Commit]:
        """Return the commits read along ``head``'s first-parent chain, newest first."""
        chain: list[Commit] = []
        oid: str | None = head
        while oid is not None and oid in self.commits and len(chain) < 10_000:
            commit = self.commits[oid]
            chain.append(commit)
            oid = commit.parents[0] if commit.parents else None
        return chain


def note_order(history: list[list[tuple[str, str, str, str]]], present: set[str]) -> tuple[
    dict[str, int], dict[str, list[str]]
]:
    """Rank notes by when their target last gained a note, and list each target's blobs.

    An edit in place (``git notes add -f``, ``git notes edit``) or a fanout rewrite keeps the
    rank: only a target that had no note and got one moves to the end. Targets the history
    does not show (a squashed or pruned notes ref) rank after the known ones.
    """
    rank: dict[str, int] = {}
    blobs: dict[str, list[str]] = {}
    for step, changes in enumerate(history, start=1):
        added = {t for s, t, _o, _n in changes if s in ("A", "M")}
        deleted = {t for s, t, _o, _n in changes if s == "D"}
        for status, target, _old, new in changes:
            if status in ("A", "M"):
                blobs.setdefault(target, []).append(new)
        for target in deleted - added:
            rank.pop(target, None)
        for target in added:
            if target not in rank:
                rank[target] = step
    last = len(history) + 1
    return {t: rank.get(t, last) for t in present}, blobs


def read_state(repo: GitRepo, config: Config) -> RepoState:
    """Read everything the plan needs, in a handful of batched git calls."""
    snap = repo.snapshot()
    notes = snap.notes
    history = repo.notes_history(snap.notes_ref) if notes or snap.notes_ref in snap.refs else []
    order, blobs = note_order(history, set(notes))
    state = RepoState(
        refs=snap.refs, notes_ref=snap.notes_ref, notes=notes, note_order=order,
        note_blobs=blobs, texts={n.blob: n.text for n in notes.values()},
        checked_out=repo.checked_out_branches(),
        configured_notes_ref=repo.configured_notes_ref(),
    )
    _read_tasks(repo, config, state)
    return state


def _read_tasks(repo: GitRepo, config: Config, state: RepoState) -> None:
    specs: dict[str, list[TaskSpec]] = {}
    named: dict[str, set[str]] = {}
    for target, note in state.notes.items():
        for section in split_sections(note.text, config.task_branch_spec):
            name = section.task_branch
            template = config.template_for(name) if name else None
            if name is None or template is None:
                continue
            params, rows = parse_params(section.text, template)
            if "destination" in params:
                specs.setdefault(name, []).append(TaskSpec(name, params, rows, target, note.blob))
            else:
                named.setdefault(name, set()).add(target)
    state.remote_tasks = _remote_tasks(repo, config, state, set(specs))
    wanted_commits: set[str] = set()
    wanted_blobs: set[str] = set()
    for name, candidates in specs.items():
        tip = state.branch(name)
        if tip is None:
            if not repo.check_branch_name(name):
                state.bad_names.add(name)
            continue
        model_refs = [f"refs/heads/{model_branch(c.model_name, name)}" for c in config.coders]
        tips = [state.refs[r] for r in model_refs if r in state.refs]
        tips += [oid for ref, oid in state.refs.items()
                 if ref.startswith(f"{SHADOW_REFS}/{name}/")]
        state.contains_tip[name] = repo.refs_containing(tip, [r for r in model_refs
                                                              if r in state.refs])
        for coder in config.coders:
            branch = model_branch(coder.model_name, name)
            if f"refs/heads/{branch}" not in state.refs and not repo.check_branch_name(branch):
                state.bad_names.add(branch)
        for spec in candidates:
            if spec.target != tip:
                state.ancestry[(spec.target, tip)] = repo.is_ancestor(spec.target, tip)
            if not state.is_ancestor(spec.target, tip):
                continue
            commits = set(repo.rev_list(tips, [spec.target]))
            state.history[(name, spec.target)] = commits
            wanted_commits |= commits
            paths = [spec.params[p] for p in ("source", "destination") if p in spec.params]
            _read_files(repo, state, tip, paths, wanted_blobs)
        for target in named.get(name, set()):
            if target != tip and (target, tip) not in state.ancestry:
                state.ancestry[(target, tip)] = repo.is_ancestor(target, tip)
    objects = repo.read_objects([*wanted_commits, *wanted_blobs])
    for oid in wanted_commits:
        raw = objects.get(oid)
        if raw is None:
            continue
        head, _, body = raw.partition(b"\n\n")
        parents = tuple(line.split()[1].decode() for line in head.splitlines()
                        if line.startswith(b"parent "))
        message = body.decode("utf-8", "replace")
        state.commits[oid] = Commit(oid, parents, message, Trailers.parse(message))
    for key, read in list(state.files.items()):
        if read.entry is not None and read.entry.oid in objects:
            state.files[key] = FileRead(read.entry, objects[read.entry.oid], read.bad_parent)
    # Texts of notes that were removed since symergion applied them: their "Revert:" lines.
    applied = {part for c in state.commits.values() for ref in c.trailers.notes or ()
               for part in str(ref).split(":")}
    past = {blob for target in applied for blob in state.note_blobs.get(target, [])}
    past |= applied  # the note blobs the trailers name (and the commits, filtered out below)
    missing = [b for b in past if b not in state.texts]
    for blob, data in repo.read_objects(missing).items():
        if not data.startswith(b"tree ") or b"\nauthor " not in data:
            state.texts[blob] = data.decode("utf-8", "replace")


def _remote_tasks(repo: GitRepo, config: Config, state: RepoState, names: set[str]) -> set[str]:
    """Return which of the tasks ``names`` a note fetched from a remote starts.

    Anyone who may push to the remote wrote those notes, so their destinations get the remote
    allow-list (``core.inputs.destination_allowed``); the local notes merged with them do not
    hide that.
    """
    found: set[str] = set()
    for ref in sorted(r for r in state.refs if r.startswith(REMOTE_NOTES_REFS + "/")):
        blobs = repo.notes_at(state.refs[ref])
        for text in repo.read_blobs(blobs.values()).values():
            for section in split_sections(text, config.task_branch_spec):
                name = section.task_branch
                template = config.template_for(name) if name in names and name else None
                if template is not None and "destination" in parse_params(section.text, template)[0]:
                    found.add(section.task_branch or "")
    return found


def _read_files(repo: GitRepo, state: RepoState, tip: str, paths: list[str],
                wanted: set[str]) -> None:
    from symergion.config.paths import is_safe_relative_path

    safe = [p for p in paths if is_safe_relative_path(p)]
    parents = {"/".join(p.split("/")[:i]) for p in safe for i in range(1, len(p.split("/")))}
    entries = repo.tree_entries(tip, [*safe, *sorted(parents)])
    for path in safe:
        parts = path.split("/")
        bad = next((parent for parent in ("/".join(parts[:i]) for i in range(1, len(parts)))
                    if parent in entries and entries[parent].kind != "tree"), None)
        entry = entries.get(path)
        state.files[(tip, path)] = FileRead(entry, None, bad)
        if entry is not None and entry.kind == "blob" and entry.mode != "120000" \
                and entry.size <= MAX_FILE_BYTES:
            wanted.add(entry.oid)


def poll_digest(repo: GitRepo) -> str:
    """Return a cheap digest of refs, notes and checked-out branches: equal means unchanged."""
    refs = repo.list_refs("refs/heads", "refs/symergion", repo.notes_ref())
    lines = [f"{k} {v}" for k, v in sorted(refs.items())]
    lines += [f"checked-out {b}" for b in sorted(repo.checked_out_branches())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def refresh_branch(repo: GitRepo, state: RepoState, task: str, base: str, model: str,
                   tip: str) -> RepoState:
    """Return ``state`` with one model branch re-read (after a lost compare-and-swap)."""
    branch_ref = f"refs/heads/{model_branch(model, task)}"
    shadow = shadow_ref(task, model)
    fresh = repo.list_refs(branch_ref, shadow)
    refs = {k: v for k, v in state.refs.items() if k not in (branch_ref, shadow)}
    refs.update({k: v for k, v in fresh.items() if k in (branch_ref, shadow)})
    commits = dict(state.commits)
    tips = [refs[r] for r in (branch_ref, shadow) if r in refs]
    new = [oid for oid in repo.rev_list(tips, [base]) if oid not in commits]
    for oid, raw in repo.read_objects(new).items():
        head, _, body = raw.partition(b"\n\n")
        parents = tuple(line.split()[1].decode() for line in head.splitlines()
                        if line.startswith(b"parent "))
        message = body.decode("utf-8", "replace")
        commits[oid] = Commit(oid, parents, message, Trailers.parse(message))
    contains = set(state.contains_tip.get(task, set())) - {branch_ref}
    if branch_ref in refs:
        contains |= repo.refs_containing(tip, [branch_ref])
    return RepoState(
        refs=refs, notes_ref=state.notes_ref, notes=state.notes, note_order=state.note_order,
        note_blobs=state.note_blobs, texts=state.texts, checked_out=repo.checked_out_branches(),
        commits=commits, history=state.history, ancestry=state.ancestry,
        contains_tip={**state.contains_tip, task: contains}, files=state.files,
        bad_names=state.bad_names, configured_notes_ref=state.configured_notes_ref,
        remote_tasks=state.remote_tasks,
    )
