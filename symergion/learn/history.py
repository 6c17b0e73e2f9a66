"""What happened to every task, active or ended, read back from the repository alone.

A task's history is its model branches (``refs/heads/<model>_<task>`` while it runs, archived
under ``refs/symergion/archive/<task>/<model>/<stamp>`` once it ended), the ``Symergion-*``
trailers of their commits, the notes ref's own log (which note was added on which commit) and
the ancestry of the user's branches (which model branch a human merged). ``harvest`` and
``stats`` are views of it.

This is the one module of the views that imports the pass's helpers (note grammar, prompt
builder) and reads trailers (through ``symergion.trailers``), so they can move without
touching the views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from symergion.config.schema import Config, Template
from symergion.core import prompt as prompts
from symergion.core.chain import repair_paragraph
from symergion.core.plan import code_starter
from symergion.core.spec import TaskSpec, feedback_text, read_note, split_sections
from symergion.core.state import model_branch
from symergion.errors import SymergionError
from symergion.gitrepo import ARCHIVE_REFS, SHADOW_REFS, GitRepo, is_null_oid
from symergion.trailers import PROMPT, Trailers, body_of

# Without a task note to bound the walk, a model branch is read this far back at most.
UNBOUNDED_WALK = 1000

Progress = Callable[[str, int, int], None]


class HistoryError(SymergionError):
    """The history cannot be read as asked (an unknown task or revision)."""


@dataclass(eq=False)
class Candidate:
    """One generated commit: a model's answer to one prompt of a task."""

    commit: str
    task: str
    model: str
    attempt: int
    prompt_sha256: str
    notes: tuple[str, ...]
    body: str
    trailers: Trailers
    parents: tuple[str, ...]
    time: int
    round: int = 0

    @property
    def by_hand(self) -> bool:
        """Return whether the commit publishes a hand commit's file (a revoke, ``Symergion-Hand``).

        It stays in its chain (the revoke detection compares consecutive answers), but its
        text is the human's, not the model's: no dataset row or model figure counts it.
        """
        return self.trailers.hand is not None

    @property
    def verified(self) -> bool | None:
        """Return the verification outcome recorded in the trailers, or None without one."""
        value = (self.trailers.verify or "").strip()
        if not value:
            return None
        from symergion.verify.result import parse_trailer

        return parse_trailer(value).ok


@dataclass
class Chain:
    """One model branch of a task, live or archived: its commits from the model's first answer."""

    task: str
    model: str
    ref: str
    archived: bool
    commits: list[str]
    candidates: list[Candidate]

    def answer_at(self, commit: str) -> Candidate | None:
        """Return the model's last answer at or below ``commit`` on this branch."""
        position = self.commits.index(commit)
        below = set(self.commits[: position + 1])
        found = [c for c in self.candidates if c.commit in below]
        return found[-1] if found else None


@dataclass
class Choice:
    """A feedback note on a model's answer: the human built on that answer."""

    candidate: Candidate
    target: str
    blob: str
    text: str


@dataclass
class Merge:
    """A model branch a human merged: the model's last answer and the commit that was merged."""

    candidate: Candidate
    merged: str
    into: str
    hand_edited_lines: int


@dataclass
class TaskHistory:
    """Everything one task went through."""

    name: str
    template: Template | None
    specs: list[TaskSpec] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    @property
    def candidates(self) -> list[Candidate]:
        """Return every answer of the task, by round, then model and attempt."""
        found = {c.commit: c for chain in self.chains for c in chain.candidates}
        return sorted(found.values(), key=lambda c: (c.round, c.model, c.attempt, c.commit))

    @property
    def archived(self) -> bool:
        """Return whether the task ended (all its branches are archived)."""
        return all(chain.archived for chain in self.chains)


@dataclass
class Rebuilt:
    """The exact prompt a candidate was generated from, and the file it answered."""

    prompt: prompts.Prompt
    destination: str


@dataclass
class History:
    """The tasks of a repository and the means to rebuild their prompts and files."""

    repo: GitRepo
    config: Config
    tasks: dict[str, TaskHistory]
    note_texts: dict[str, str]
    times: dict[str, int]
    new: set[str] | None = None
    since_time: int = 0
    _chain_of: dict[str, Chain] = field(default_factory=dict)
    _files: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _rebuilt: dict[str, Rebuilt | str] = field(default_factory=dict)

    def is_new(self, commit: str) -> bool:
        """Return whether a commit falls after ``--since`` (always True without it)."""
        if self.new is None:
            return True
        return commit in self.new and self.times.get(commit, 0) >= self.since_time

    def file_text(self, commit: str, path: str) -> str | None:
        """Return a file's UTF-8 text at a commit, or None if it is absent or not text."""
        key = (commit, path)
        if key not in self._files:
            data = self.repo.read_paths([key]).get(key)
            text: str | None = None
            if data is not None and b"\0" not in data:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            self._files[key] = text
        return self._files[key]

    def rebuild(self, candidate: Candidate) -> Rebuilt | str:
        """Return the exact prompt of a candidate, or why it cannot be rebuilt exactly.

        The prompt is rendered with the pass's own builder from the task note, the task's
        files at the commit the model branched from (or last took the task branch in from),
        the initial rows (the first answer's commit message, which holds any reasoning) and
        the feedback the ``Symergion-Notes`` trailer lists; it counts only when its sha256
        equals the commit's ``Symergion-Prompt``.
        """
        if candidate.commit not in self._rebuilt:
            self._rebuilt[candidate.commit] = self._rebuild(candidate)
        return self._rebuilt[candidate.commit]

    def _rebuild(self, candidate: Candidate) -> Rebuilt | str:
        task = self.tasks[candidate.task]
        if task.template is None:
            return "no template of the config matches the task name"
        if not task.specs:
            return "the task note is not in the notes history"
        feedback = self._feedback(candidate)
        if feedback is None:
            return "a feedback note it applied is no longer in the repository"
        chain = self._chain_of[candidate.commit]
        if candidate.trailers.repair is not None:
            # A repair round's prompt is the notes' prompt with the failures as one more
            # feedback paragraph, which the round's commit message holds as it was sent.
            failures = next((p for c in chain.candidates if c.prompt_sha256 == candidate.prompt_sha256
                             and (p := repair_paragraph(c.body)) is not None), None)
            if failures is None:
                return "its repair round's feedback is not in the round's commit message"
            feedback = [*feedback, failures]
        template = task.template
        first_rows = chain.candidates[0].body.split("\n")
        for tip in self._task_tips(chain, candidate, task):
            for spec in reversed(task.specs):
                inputs = self._inputs(template, spec, tip)
                if inputs is None:
                    continue
                files, source_code = inputs
                from_note = [prompts.call_to_action(template.call_to_action, source_code),
                             *spec.rows]
                for initial in (from_note, first_rows):
                    rendered = prompts.render(files, initial, feedback, code_starter(template, spec))
                    if rendered.digest == candidate.prompt_sha256:
                        return Rebuilt(rendered, spec.params["destination"])
        return f"no rebuilt prompt matches its {PROMPT} sha256"

    def _feedback(self, candidate: Candidate) -> list[str] | None:
        """Return the feedback texts a candidate applied, in order; None if a note is gone."""
        pending: dict[str, list[str]] = {}
        texts: list[str] = []
        for blob in candidate.notes:
            if blob not in pending:
                note = self.note_texts.get(blob)
                if note is None:
                    return None
                sections = split_sections(note, self.config.task_branch_spec)
                pending[blob] = [feedback_text(s) for s in sections
                                 if s.task_branch in (None, candidate.task) and feedback_text(s)]
            if not pending[blob]:
                return None
            texts.append(pending[blob].pop(0))
        return texts

    def _task_tips(self, chain: Chain, candidate: Candidate, task: TaskHistory) -> list[str]:
        """Return the commits the task branch may have been at, the likeliest first."""
        own = chain.candidates[: chain.candidates.index(candidate) + 1]
        tips = [c.parents[1] for c in reversed(own) if len(c.parents) > 1]
        if own[0].parents:
            tips.append(own[0].parents[0])
        tips += [spec.target for spec in reversed(task.specs)]
        return list(dict.fromkeys(tips))

    def _inputs(
        self, template: Template, spec: TaskSpec, tip: str
    ) -> tuple[list[tuple[str, str]], str | None] | None:
        """Return the prompt's files and the source code at ``tip``, as the pass reads them."""
        destination = spec.params["destination"]
        files: list[tuple[str, str]] = []
        existing = self.file_text(tip, destination)
        if existing is not None:
            files.append((destination, existing))
        source_code: str | None = None
        if "source" in template.params:
            if "source" not in spec.params:
                return None
            source_code = self.file_text(tip, spec.params["source"])
            if source_code is None:
                return None
            files.append((spec.params["source"], source_code))
        return files, source_code


@dataclass
class _NoteRecord:
    target: str
    blob: str
    step: int


def read_history(
    repo: GitRepo,
    config: Config,
    *,
    task: str | None = None,
    since: str | None = None,
    progress: Progress | None = None,
) -> History:
    """Read every task's history: model branches live and archived, choices, revokes, merges.

    Args:
        repo: the repository.
        config: the config whose templates and ``task_branch_spec`` the notes were written in.
        task: read only this task.
        since: a revision; only commits after it (not reachable from it, and not older) count.
        progress: called with (what, done, total) while branches are read.
    """
    snap = repo.snapshot()
    refs = snap.refs
    report = progress or (lambda _what, _done, _total: None)

    # Every note ever added, from the notes ref's own log: removed ones (revoked feedback,
    # notes of ended tasks) are still there.
    changes = repo.note_changes(snap.notes_ref) if snap.notes_ref in refs else []
    added = [_NoteRecord(target, new, step) for step, status, target, _old, new in changes
             if status in ("A", "M") and not is_null_oid(new)]
    note_texts = repo.read_blobs(
        [r.blob for r in added] + [old for *_, old, _new in changes if not is_null_oid(old)])

    specs: dict[str, list[TaskSpec]] = {}
    for record in added:
        for read in read_note(note_texts.get(record.blob, ""), record.target, record.blob, config):
            if read.spec is not None:
                found = specs.setdefault(read.spec.task_branch, [])
                if read.spec not in found:
                    found.append(read.spec)

    sources = _branch_tips(refs)
    known_pairs = {(t, m) for t, m, _ref, _tip, _archived in sources}
    if task is not None and task not in specs and all(t != task for t, _m in known_pairs):
        names = sorted({t for t, _m in known_pairs} | set(specs))
        raise HistoryError(f"no task named {task!r} in the history",
                           hint=f"known tasks: {', '.join(names) or 'none'}")
    sources = [s for s in sources if task is None or s[0] == task]

    tasks: dict[str, TaskHistory] = {}
    times: dict[str, int] = {}
    chain_of: dict[str, Chain] = {}
    seen_tips: set[tuple[str, str, str]] = set()
    for done, (name, model, ref, tip, archived) in enumerate(sources, start=1):
        report(f"{model}_{name}", done, len(sources))
        if (name, model, tip) in seen_tips:
            continue
        seen_tips.add((name, model, tip))
        history = tasks.setdefault(name, TaskHistory(name, config.template_for(name),
                                                     specs.get(name, [])))
        chain = _read_chain(repo, history, model, ref, tip, archived, times)
        if chain is None:
            continue
        history.chains.append(chain)
        for commit in chain.commits:
            chain_of.setdefault(commit, chain)
    tasks = {n: t for n, t in tasks.items() if t.chains}

    for history in tasks.values():
        _number_rounds(history)
        history.revoked = _revoked(history)
    _read_choices(tasks, added, note_texts, config, chain_of)
    _read_merges(repo, tasks, snap.branches(), known_pairs, specs)

    result = History(repo, config, dict(sorted(tasks.items())), note_texts, times,
                     _chain_of=chain_of)
    if since is not None:
        since_oid = repo.rev_parse(since)
        result.since_time = repo.commit_time(since_oid)
        result.new = repo.reachable([c.commits[-1] for t in tasks.values() for c in t.chains],
                                    since_oid)
    return result


def _branch_tips(refs: dict[str, str]) -> list[tuple[str, str, str, str, bool]]:
    """Return (task, model, ref, tip, archived) for every model branch, live then archived."""
    found: list[tuple[str, str, str, str, bool]] = []
    shadow_prefix, archive_prefix = SHADOW_REFS + "/", ARCHIVE_REFS + "/"
    for ref, oid in sorted(refs.items()):
        if ref.startswith(shadow_prefix):
            name, _, model = ref[len(shadow_prefix):].rpartition("/")
            branch = f"refs/heads/{model_branch(model, name)}"
            # The branch may hold hand edits on top of symergion's last commit.
            found.append((name, model, branch if branch in refs else ref,
                          refs.get(branch, oid), False))
    for ref, oid in sorted(refs.items()):
        if ref.startswith(archive_prefix):
            head, _, _stamp = ref[len(archive_prefix):].rpartition("/")
            name, _, model = head.rpartition("/")
            if name and model:
                found.append((name, model, ref, oid, True))
    return found


def _read_chain(
    repo: GitRepo,
    history: TaskHistory,
    model: str,
    ref: str,
    tip: str,
    archived: bool,
    times: dict[str, int],
) -> Chain | None:
    """Read a model branch down to the model's first answer; None if it holds none."""
    # The task note sits at or below the commit the branch started from: the walk stops there.
    bounds = [s.target for s in history.specs if repo.is_ancestor(s.target, tip)]
    records = repo.log_records(tip, list(dict.fromkeys(bounds)),
                               limit=0 if bounds else UNBOUNDED_WALK)
    records.reverse()
    own: list[int] = []
    for i, (_oid, _parents, _time, message) in enumerate(records):
        trailers = Trailers.parse(message)
        if trailers.model == model and trailers.task == history.name and trailers.prompt is not None:
            own.append(i)
    if not own:
        return None
    records = records[own[0]:]
    candidates: list[Candidate] = []
    for oid, parents, stamp, message in records:
        times[oid] = stamp
        trailers = Trailers.parse(message)
        if trailers.model != model or trailers.task != history.name or trailers.prompt is None:
            continue
        candidates.append(Candidate(
            commit=oid, task=history.name, model=model, attempt=len(candidates) + 1,
            prompt_sha256=trailers.prompt,
            # Items are ``<annotated commit>:<note blob>`` (a bare blob in older commits).
            notes=tuple(str(ref).rpartition(":")[2] for ref in trailers.notes or ()),
            body=body_of(message).strip(),
            trailers=trailers, parents=tuple(parents), time=stamp,
        ))
    return Chain(history.name, model, ref, archived, [r[0] for r in records], candidates)


def _number_rounds(history: TaskHistory) -> None:
    """Number the task's distinct prompts in the order the models first answered them."""
    rounds: dict[str, int] = {}
    everyone = [c for chain in history.chains for c in chain.candidates]
    for candidate in sorted(everyone, key=lambda c: (c.attempt, c.time, c.model)):
        rounds.setdefault(candidate.prompt_sha256, len(rounds) + 1)
    for candidate in everyone:
        candidate.round = rounds[candidate.prompt_sha256]


def _revoked(history: TaskHistory) -> list[str]:
    """Return the feedback notes that left the prompt again (revoked or rewritten)."""
    revoked: dict[str, None] = {}
    for chain in history.chains:
        for before, after in zip(chain.candidates, chain.candidates[1:], strict=False):
            for blob in before.notes:
                if blob not in after.notes:
                    revoked[blob] = None
    return list(revoked)


def _read_choices(
    tasks: dict[str, TaskHistory],
    added: list[_NoteRecord],
    note_texts: dict[str, str],
    config: Config,
    chain_of: dict[str, Chain],
) -> None:
    """Turn every feedback note that ever sat on a model branch into a choice of that answer."""
    seen: set[tuple[str, str]] = set()
    for record in added:
        chain = chain_of.get(record.target)
        if chain is None or chain.task not in tasks:
            continue
        history = tasks[chain.task]
        for read in read_note(note_texts.get(record.blob, ""), record.target, record.blob, config):
            text, named = read.feedback, read.section.task_branch
            if not text or named not in (None, chain.task):
                continue
            if read.spec is not None:
                continue  # a task note, not feedback
            answer = chain.answer_at(record.target)
            if named is None and (answer is None or answer.commit != record.target):
                continue  # the pass reads an unnamed note only on its own commits
            # An edited or re-added note on the same commit is still one choice.
            if answer is None or (chain.task, record.target) in seen:
                continue
            seen.add((chain.task, record.target))
            history.choices.append(Choice(answer, record.target, record.blob, text))


def _read_merges(
    repo: GitRepo,
    tasks: dict[str, TaskHistory],
    branches: dict[str, str],
    known_pairs: Iterable[tuple[str, str]],
    specs: dict[str, list[TaskSpec]],
) -> None:
    """Find the model branches whose commits a user branch holds: those were merged."""
    own_branches = {model_branch(m, t) for t, m in known_pairs} | set(specs)
    targets = {name: oid for name, oid in branches.items()
               if name not in own_branches and name not in tasks}
    for history in tasks.values():
        for chain in history.chains:
            best: tuple[int, str, str] | None = None
            position = {oid: i for i, oid in enumerate(chain.commits)}
            for name, oid in sorted(targets.items()):
                base = repo.merge_base(chain.commits[-1], oid)
                if base in position and (best is None or position[base] > best[0]):
                    best = (position[base], base, name)
            if best is None:
                continue
            answer = chain.answer_at(best[1])
            if answer is None:
                continue
            if any(m.candidate.commit == answer.commit and m.merged == best[1] for m in history.merges):
                continue  # the same branch archived twice
            edited = 0 if answer.commit == best[1] else repo.changed_lines(answer.commit, best[1])
            history.merges.append(Merge(answer, best[1], best[2], edited))
