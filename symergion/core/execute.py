"""One idempotent reconcile pass: snapshot -> desired state of every model branch -> missing work.

Everything is derived from the repository: task specs and feedback from notes, what each model
branch already holds from the trailers of symergion's own commits, and whether a human deleted
a model branch from the shadow refs under ``refs/symergion/tasks``. Restarting after a crash
is just another pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from symergion.cache import ResponseStore, response_key
from symergion.config import Checkpoint, Config, Template, is_safe_relative_path
from symergion.core import prompt as prompts
from symergion.core.finish import FINISHER_VERSION, Finisher
from symergion.core.spec import (
    TaskSpec,
    feedback_text,
    looks_like_task_spec,
    parse_params,
    split_sections,
)
from symergion.engine.base import Engine, max_new_tokens
from symergion.errors import Cancelled, SymergionError, TaskInputError
from symergion.gitrepo import (
    ARCHIVE_REFS,
    MAX_FILE_BYTES,
    SHADOW_REFS,
    ZERO_OID,
    GitRepo,
    Snapshot,
)

TRAILER_MODEL = "Symergion-Model"
TRAILER_TASK = "Symergion-Task"
TRAILER_PROMPT = "Symergion-Prompt"
TRAILER_NOTES = "Symergion-Notes"
CAS_RETRIES = 3
CHECKED_OUT = "the branch is checked out; switch away and sync again to get the new attempt"


@dataclass(frozen=True)
class Feedback:
    """One active feedback note for a task."""

    blob: str
    target: str
    text: str
    order: int


@dataclass
class Task:
    """An active task: its branch, template, spec and ordered feedback."""

    name: str
    tip: str
    template: Template
    spec: TaskSpec
    feedback: list[Feedback] = field(default_factory=list)


@dataclass
class Problem:
    """Something symergion could not act on; the message says what to fix."""

    where: str
    message: str


@dataclass
class Result:
    """What one pass did for one model branch (or retired task)."""

    task: str
    model: str
    branch: str
    status: str  # created | updated | up-to-date | skipped | failed | retired | kept
    commit: str | None = None
    message: str | None = None
    tokens: int | None = None
    seconds: float | None = None
    cache: str | None = None
    stop: str | None = None
    reason: str | None = None


@dataclass
class Report:
    """The outcome of one pass."""

    results: list[Result] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Return whether anything failed or could not be understood."""
        return bool(self.problems) or any(r.status == "failed" for r in self.results)

    def changed(self) -> list[Result]:
        """Return results that moved a ref."""
        return [r for r in self.results if r.status in ("created", "updated", "retired")]

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data."""
        return {
            "ok": not self.failed,
            "results": [asdict(r) for r in self.results],
            "problems": [asdict(p) for p in self.problems],
            "notices": list(self.notices),
        }


@dataclass
class Event:
    """A progress event for the caller to render."""

    kind: str  # start | progress | done | problem
    task: str
    model: str
    tokens: int = 0
    seconds: float = 0.0
    cache: str | None = None
    detail: str = ""


EventSink = Callable[[Event], None]
EngineFactory = Callable[[Checkpoint], Engine]
FingerprintFn = Callable[[Checkpoint], str]


def parse_trailers(message: str) -> dict[str, str]:
    """Return the ``Key: value`` trailers of a commit message's last paragraph."""
    paragraphs = message.strip().split("\n\n")
    trailers: dict[str, str] = {}
    for line in paragraphs[-1].splitlines() if paragraphs else []:
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Symergion-"):
            trailers[key] = value.strip()
    return trailers


def model_branch(model: str, task: str) -> str:
    """Return the branch name of a model's attempt at a task."""
    return f"{model}_{task}"


def shadow_ref(task: str, model: str) -> str:
    """Return the ref that remembers symergion's last commit for a model branch."""
    return f"{SHADOW_REFS}/{task}/{model}"


class Reconciler:
    """Compute and apply the desired state of every model branch.

    Args:
        repo: the repository.
        config: the validated config.
        engines: returns a loaded engine for a checkpoint (called only on a cache miss).
        fingerprint: returns a cheap identity of a checkpoint's model file, for cache keys.
        store: the response store.
        on_event: receives progress events.
        cancel: set to stop between tokens; nothing half-made is published.
    """

    def __init__(
        self,
        repo: GitRepo,
        config: Config,
        *,
        engines: EngineFactory,
        fingerprint: FingerprintFn,
        store: ResponseStore,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.repo = repo
        self.config = config
        self.engines = engines
        self.fingerprint = fingerprint
        self.store = store
        self.on_event = on_event or (lambda _e: None)
        self.cancel = cancel or threading.Event()
        self._fingerprints: dict[str, str] = {}
        self._offline = False

    # -- discovery -------------------------------------------------------------------------

    def discover(self, snap: Snapshot) -> tuple[list[Task], list[Problem]]:
        """Return the active tasks and the notes that could not be understood."""
        problems: list[Problem] = []
        specs: dict[str, list[TaskSpec]] = {}
        loose_feedback: list[tuple[str | None, str, str, str]] = []  # task, target, blob, text
        spec_pattern = self.config.task_branch_spec
        for target, note in snap.notes.items():
            for section in split_sections(note.text, spec_pattern):
                name = section.task_branch
                if name is None:
                    loose_feedback.append((None, target, note.blob, feedback_text(section)))
                    continue
                template = self.config.template_for(name)
                is_spec = template is not None and "destination" in parse_params(
                    section.text, template
                )[0]
                if is_spec and template is not None:
                    params, rows = parse_params(section.text, template)
                    specs.setdefault(name, []).append(
                        TaskSpec(name, params, rows, target, note.blob)
                    )
                elif template is None and looks_like_task_spec(section.text, self.config.templates):
                    problems.append(Problem(
                        f"note on {target[:12]}",
                        f"task branch {name!r} matches no template "
                        f"({', '.join(self.config.templates)})",
                    ))
                else:
                    loose_feedback.append((name, target, note.blob, feedback_text(section)))

        tasks: dict[str, Task] = {}
        for name, candidates in specs.items():
            tip = snap.branch(name)
            if tip is None:
                if not self.repo.check_branch_name(name):
                    problems.append(Problem(
                        f"note on {candidates[0].target[:12]}",
                        f"git rejects the branch name {name!r}, so the task can never start"
                        "\n  hint: name the task branch with letters, digits, '_', '-', '.' "
                        "and '/' (no '..', no '.lock' at the end)"))
                continue
            template = self.config.template_for(name)
            assert template is not None
            reachable = [s for s in candidates if s.target == tip or self.repo.is_ancestor(
                s.target, tip)]
            if not reachable:
                continue
            reachable.sort(key=lambda s: snap.note_order.get(s.target, 0))
            tasks[name] = Task(name, tip, template, reachable[-1])

        unnamed = [item for item in loose_feedback if item[0] is None]
        owners = self._commit_tasks([target for _, target, _, _ in unnamed])
        unstarted: set[str] = set()
        for name, target, blob, text in loose_feedback:
            if name is None:
                name = owners.get(target)
                if name is None:
                    if looks_like_task_spec(text, self.config.templates):
                        problems.append(Problem(
                            f"note on {target[:12]}",
                            "looks like a task spec but names no task_branch",
                            ))
                    continue
            task = tasks.get(name)
            if task is None and name not in specs and name not in unstarted \
                    and snap.branch(name) is not None and self.config.template_for(name):
                # The task branch exists and its note names it, but the note is no task spec.
                unstarted.add(name)
                problems.append(Problem(
                    f"note on {target[:12]}",
                    f"the note on task branch {name!r} names no destination, so the task "
                    "cannot start\n  hint: write 'destination: path/to/file' in the note on "
                    f"{target[:12]}"))
            if task is None or target == task.spec.target or not text:
                continue
            task.feedback.append(Feedback(blob, target, text, snap.note_order.get(target, 0)))
        for task in tasks.values():
            ranks = [f.order for f in task.feedback]
            # Notes added in one notes commit (a squashed, imported or pruned notes history)
            # tie: the order symergion's last commit recorded breaks the tie, so a rewritten
            # notes ref does not reorder the feedback and regenerate everything.
            recorded = self._recorded_order(snap, task) if len(set(ranks)) < len(ranks) else {}
            task.feedback.sort(
                key=lambda f: (f.order, recorded.get(f.blob, len(recorded)), f.target))
        return sorted(tasks.values(), key=lambda t: t.name), problems

    def _recorded_order(self, snap: Snapshot, task: Task) -> dict[str, int]:
        """Return feedback note blobs in the order a model branch's last commit applied them."""
        for coder in self.config.coders:
            head = snap.branch(model_branch(coder.model_name, task.name))
            own = self.last_own_commit(head, coder.model_name, task.name) if head else None
            if own is not None:
                blobs = [b for b in own[1].get(TRAILER_NOTES, "").split() if b != "-"]
                return {blob: i for i, blob in enumerate(blobs)}
        return {}

    def _commit_tasks(self, targets: list[str]) -> dict[str, str]:
        """Map symergion commits among ``targets`` to the task named in their trailers."""
        owners: dict[str, str] = {}
        for oid, raw in self.repo.read_objects(targets).items():
            head, _, body = raw.partition(b"\n\n")
            if not head.startswith(b"tree "):
                continue
            trailers = parse_trailers(body.decode("utf-8", "replace"))
            if TRAILER_TASK in trailers:
                owners[oid] = trailers[TRAILER_TASK]
        return owners

    # -- inputs and prompts ---------------------------------------------------------------

    def read_inputs(self, task: Task) -> tuple[list[tuple[str, str]], str | None, str]:
        """Return (files for the prompt, source code, destination path) from the task tip."""
        params = task.spec.params
        destination = params["destination"]
        where = f"task {task.name}"
        files: list[tuple[str, str]] = []
        dest = self._read_text(task.tip, destination, where, "destination", must_exist=False)
        if dest is not None:
            files.append((destination, dest))
        source_code: str | None = None
        if "source" in task.template.params:
            if "source" not in params:
                raise TaskInputError(
                    f"{where}: the note names no source",
                    hint=f"add 'source: path/to/file' to the note on {task.spec.target[:12]}",
                )
            source_code = self._read_text(task.tip, params["source"], where, "source",
                                          must_exist=True)
            assert source_code is not None
            files.append((params["source"], source_code))
        return files, source_code, destination

    def _read_text(
        self, commit: str, path: str, where: str, role: str, *, must_exist: bool
    ) -> str | None:
        if not is_safe_relative_path(path):
            raise TaskInputError(
                f"{where}: {role} {path!r} is not a path inside the repository",
                hint="use a relative path without '..', a leading '/', or '.git'",
            )
        for parent, entry in self.repo.path_parents_kinds(commit, path):
            if entry is not None and entry.kind != "tree":
                raise TaskInputError(
                    f"{where}: {role} {path!r} goes through {parent!r}, which is not a directory",
                    hint="symlinked or file parents are not followed; use the real path",
                )
        entry = self.repo.tree_entry(commit, path)
        if entry is None:
            if must_exist:
                raise TaskInputError(
                    f"{where}: {role} {path!r} does not exist on the task branch",
                    hint="commit the file to the task branch, or fix the path in the note",
                )
            return None
        if entry.mode == "120000":
            raise TaskInputError(f"{where}: {role} {path!r} is a symlink",
                                 hint="point the note at the real file")
        if entry.kind == "commit":
            raise TaskInputError(f"{where}: {role} {path!r} is a submodule",
                                 hint="name a file inside this repository")
        if entry.kind != "blob":
            raise TaskInputError(f"{where}: {role} {path!r} is a directory",
                                 hint="name a file")
        if entry.size > MAX_FILE_BYTES:
            raise TaskInputError(
                f"{where}: {role} {path!r} is {entry.size} bytes, over the "
                f"{MAX_FILE_BYTES}-byte limit", hint="split the file or name a smaller one",
            )
        data = self.repo.read_blob_bytes(entry.oid)
        if b"\0" in data:
            raise TaskInputError(f"{where}: {role} {path!r} is a binary file",
                                 hint="name a text file")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskInputError(f"{where}: {role} {path!r} is not UTF-8 text",
                                 hint="re-encode the file as UTF-8") from None

    def build_prompt(self, task: Task) -> tuple[prompts.Prompt, str]:
        """Return the task's prompt (with reasoning) and its destination path."""
        files, source_code, destination = self.read_inputs(task)
        initial = [prompts.call_to_action(task.template.call_to_action, source_code),
                   *task.spec.rows]
        base = prompts.render(files, initial, [], task.template.code_starter)
        for reasoner in self.config.reasoners:
            initial += prompts.reasoning_rows(self._reason(task, reasoner, base.text))
        feedback = [f.text for f in task.feedback]
        return prompts.render(files, initial, feedback, task.template.code_starter), destination

    def planned_digest(self, task: Task) -> str | None:
        """Return the digest of the prompt a task needs now, or None if that needs a model."""
        self._offline = True
        try:
            return self.build_prompt(task)[0].digest
        except LookupError:
            return None
        finally:
            self._offline = False

    def _model_fingerprint(self, checkpoint: Checkpoint) -> str:
        if checkpoint.name_or_path not in self._fingerprints:
            self._fingerprints[checkpoint.name_or_path] = self.fingerprint(checkpoint)
        return self._fingerprints[checkpoint.name_or_path]

    def _key(self, kind: str, checkpoint: Checkpoint, text: str, **extra: Any) -> str:
        return response_key(
            kind=kind,
            model=self._model_fingerprint(checkpoint),
            prompt=text,
            sampling=checkpoint.sampling.as_dict(),
            context_size=checkpoint.context_size,
            ntokens=self.config.ntokens,
            **extra,
        )

    def _reason(self, task: Task, reasoner: Checkpoint, text: str) -> str:
        key = self._key("reasoning", reasoner, text,
                        start=list(reasoner.reasoning_start_tokens),
                        stop=list(reasoner.reasoning_stop_tokens),
                        markers=reasoner.reasoning_markers)
        cached = self.store.get(key)
        if cached is not None:
            self.on_event(Event("done", task.name, reasoner.model_name, cache="hit",
                                detail="reasoning"))
            return str(cached["text"])
        if self._offline:
            raise LookupError("reasoning is not cached")
        engine = self.engines(reasoner)
        chat = engine.chat_prompt(text)
        start_marker, stop_marker = self._markers(engine, reasoner)
        budget = max_new_tokens(engine.n_ctx, engine.count_tokens(chat), self.config.ntokens)
        self.on_event(Event("start", task.name, reasoner.model_name, detail="reasoning"))
        out: list[str] = []
        began = time.monotonic()
        joined = ""
        for count, piece in enumerate(self._tokens(engine, chat, budget, 0), start=1):
            out.append(piece)
            self._progress(task.name, reasoner.model_name, count, began)
            if stop_marker and piece and stop_marker[-1] in piece:
                joined = "".join(out)
                if stop_marker in joined:
                    break
        joined = "".join(out)
        reasoning = joined
        if start_marker and start_marker in reasoning:
            reasoning = reasoning.split(start_marker, 1)[1]
        if stop_marker and stop_marker in reasoning:
            reasoning = reasoning.split(stop_marker, 1)[0]
        reasoning = reasoning.strip()
        seconds = time.monotonic() - began
        self.store.put(key, {"text": reasoning, "tokens": len(out), "seconds": seconds})
        self.on_event(Event("done", task.name, reasoner.model_name, tokens=len(out),
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
        gen = engine.generate(text, max_tokens=budget, cancel=self.cancel, stable_prefix=stable)
        try:
            for piece in gen:
                if self.cancel.is_set():
                    raise Cancelled("stopped before the response was finished; nothing was "
                                    "published", hint="run sync again to finish the work")
                yield piece
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if self.cancel.is_set():
            raise Cancelled("stopped before the response was finished; nothing was published",
                            hint="run sync again to finish the work")

    def _progress(self, task: str, model: str, count: int, began: float) -> None:
        if count % 16 == 0:
            self.on_event(Event("progress", task, model, tokens=count,
                                seconds=time.monotonic() - began))

    # -- generation ------------------------------------------------------------------------

    def respond(
        self, task: Task, coder: Checkpoint, prompt: prompts.Prompt, destination: str
    ) -> dict[str, Any]:
        """Return the finished file for a prompt: from the store, else from the model."""
        key = self._key("coder", coder, prompt.text, path=destination, finisher=FINISHER_VERSION)
        cached = self.store.get(key)
        if cached is not None:
            return {**cached, "cache": "hit"}
        engine = self.engines(coder)
        prompt_tokens = engine.count_tokens(prompt.text)
        budget = max_new_tokens(engine.n_ctx, prompt_tokens, self.config.ntokens)
        if budget <= 0:
            raise TaskInputError(
                f"task {task.name}: the prompt is {prompt_tokens} tokens, which fills the "
                f"{engine.n_ctx}-token context of {coder.model_name}",
                hint="shorten the source file, or raise context_size for this checkpoint",
            )
        finisher = Finisher(destination, prompt.code_starter)
        self.on_event(Event("start", task.name, coder.model_name,
                            detail=f"{prompt_tokens} prompt tokens, budget {budget}"))
        began = time.monotonic()
        generated = prompt.code_starter
        stop = "budget"
        count = 0
        for count, piece in enumerate(
            self._tokens(engine, prompt.text, budget, prompt.stable_prefix), start=1
        ):
            generated += piece
            self._progress(task.name, coder.model_name, count, began)
            reason = finisher.check(generated)
            if reason:
                stop = reason
                break
        else:
            if count < budget:
                stop = "eos"
        seconds = time.monotonic() - began
        done = finisher.finish(generated, stop)
        record = {
            "text": done.text,
            "tokens": count,
            "budget": budget,
            "seconds": round(seconds, 3),
            "stop": done.stop,
            "trimmed_chars": done.trimmed_chars,
            "trimmed_lines": done.trimmed_lines,
            "parses": done.parses,
        }
        self.store.put(key, record)
        return {**record, "cache": "miss"}

    # -- the pass --------------------------------------------------------------------------

    def sync(self) -> Report:
        """Run one reconcile pass and return what it did."""
        report = Report()
        snap = self.repo.snapshot()
        tasks, problems = self.discover(snap)
        report.problems.extend(problems)
        for problem in problems:
            self.on_event(Event("problem", problem.where, "", detail=problem.message))
        active = {t.name for t in tasks}
        self._retire_ended(snap, active, report)
        checked_out = self.repo.checked_out_branches()
        prepared: list[tuple[Task, prompts.Prompt, str]] = []
        for task in tasks:
            try:
                prompt, destination = self.build_prompt(task)
            except SymergionError as exc:
                report.problems.append(Problem(f"task {task.name}", str(exc)))
                self.on_event(Event("problem", task.name, "", detail=str(exc)))
                continue
            prepared.append((task, prompt, destination))
        # Coder-major order: each model is loaded once per pass even with model_cache_size 1.
        for coder in self.config.coders:
            for task, prompt, destination in prepared:
                self.cancel_check()
                try:
                    result = self._reconcile_branch(snap, task, coder, prompt, destination,
                                                    checked_out)
                except Cancelled:
                    raise
                except SymergionError as exc:
                    result = Result(task.name, coder.model_name,
                                    model_branch(coder.model_name, task.name), "failed",
                                    reason=str(exc))
                    self.on_event(Event("problem", task.name, coder.model_name, detail=str(exc)))
                report.results.append(result)
        rebuilt = getattr(self.store, "rebuilt", None)
        if rebuilt is not None:
            report.notices.append(f"the response cache was corrupt: moved it aside to {rebuilt} "
                                  "and started a new one (delete the old one when done)")
        return report

    def cancel_check(self) -> None:
        """Raise Cancelled if a stop was requested."""
        if self.cancel.is_set():
            raise Cancelled("stopped; nothing half-made was published",
                            hint="run sync again to finish the work")

    def _reconcile_branch(
        self,
        snap: Snapshot,
        task: Task,
        coder: Checkpoint,
        prompt: prompts.Prompt,
        destination: str,
        checked_out: set[str],
    ) -> Result:
        model = coder.model_name
        branch = model_branch(model, task.name)
        if not self.repo.check_branch_name(branch):
            return Result(task.name, model, branch, "failed",
                          reason=f"git rejects the branch name {branch!r}; rename the task branch")
        head = snap.branch(branch)
        shadow = snap.refs.get(shadow_ref(task.name, model))
        if head is None and shadow is not None:
            return Result(task.name, model, branch, "skipped",
                          reason="the branch was deleted by hand; not generated again")
        previous = self.last_own_commit(head, model, task.name) if head else None
        if previous is not None and previous[1].get(TRAILER_PROMPT) == prompt.digest:
            return Result(task.name, model, branch, "up-to-date", commit=head)
        if branch in checked_out:
            # Moving the branch a work tree has checked out would change what its HEAD is
            # under the user's index and files (git refuses the same for fetch and push).
            return Result(task.name, model, branch, "kept", commit=head, reason=CHECKED_OUT)
        response = self.respond(task, coder, prompt, destination)
        message = self._message(task, prompt, previous, response, model)
        if branch in self.repo.checked_out_branches():
            # Checked out while the model was generating: the response waits in the cache.
            return Result(task.name, model, branch, "kept", commit=head, reason=CHECKED_OUT)
        blob = self.repo.write_blob(response["text"].encode("utf-8"))
        for _attempt in range(CAS_RETRIES):
            parents = [head] if head else []
            if head is None or not self.repo.is_ancestor(task.tip, head):
                parents.append(task.tip)
            # On a branch that already holds the task tip, start from the branch's own files:
            # what the user committed there (a helper file, a hand fix elsewhere) stays.
            base = head if head is not None and parents == [head] else task.tip
            tree = self.repo.tree_with_file(base, destination, blob)
            commit = self.repo.commit_tree(tree, parents, message, author=model,
                                           email=f"{model}@symergion.invalid")
            updates = [
                (f"refs/heads/{branch}", commit, head or ZERO_OID),
                (shadow_ref(task.name, model), commit, shadow or ZERO_OID),
            ]
            if self.repo.update_refs(updates, f"symergion: {model} on {task.name}"):
                self.on_event(Event("done", task.name, model, tokens=int(response["tokens"]),
                                    seconds=float(response["seconds"]), cache=response["cache"],
                                    detail=message.splitlines()[0][:72]))
                return Result(
                    task.name, model, branch, "updated" if head else "created", commit=commit,
                    message=message.split("\n\n" + TRAILER_MODEL)[0],
                    tokens=int(response["tokens"]), seconds=float(response["seconds"]),
                    cache=str(response["cache"]), stop=str(response["stop"]),
                )
            # Someone moved the branch while we worked: build on the new tip, never overwrite.
            fresh = self.repo.snapshot().refs
            head = fresh.get(f"refs/heads/{branch}")
            shadow = fresh.get(shadow_ref(task.name, model))
            if head is None and shadow is not None:
                return Result(task.name, model, branch, "skipped",
                              reason="the branch was deleted while generating; not recreated")
        return Result(task.name, model, branch, "failed",
                      reason="the branch kept moving while publishing; run sync again")

    def last_own_commit(
        self, head: str, model: str, task: str
    ) -> tuple[str, dict[str, str]] | None:
        for oid, message in self.repo.first_parent_log(head, limit=100):
            trailers = parse_trailers(message)
            if trailers.get(TRAILER_MODEL) == model and trailers.get(TRAILER_TASK) == task:
                return oid, trailers
        return None

    def _message(
        self,
        task: Task,
        prompt: prompts.Prompt,
        previous: tuple[str, dict[str, str]] | None,
        response: dict[str, Any],
        model: str,
    ) -> str:
        current = [f.blob for f in task.feedback]
        texts = {f.blob: f.text for f in task.feedback}
        if previous is None:
            body = prompt.initial_message
        else:
            before = [b for b in previous[1].get(TRAILER_NOTES, "").split() if b != "-"]
            removed = [b for b in before if b not in current]
            added = [b for b in current if b not in before]
            lines = [f"Revert: {self._old_feedback(b, task.name)}" for b in removed]
            lines += [texts[b] for b in added]
            body = "\n".join(lines) if lines else "Regenerate: the task's inputs changed"
        trailers = [
            f"{TRAILER_MODEL}: {model}",
            f"{TRAILER_TASK}: {task.name}",
            f"{TRAILER_PROMPT}: {prompt.digest}",
            f"{TRAILER_NOTES}: {' '.join(current) or '-'}",
            f"Symergion-Tokens: {response['tokens']}",
            f"Symergion-Seconds: {float(response['seconds']):.1f}",
            f"Symergion-Cache: {response['cache']}",
            f"Symergion-Stop: {response['stop']}",
            f"Symergion-Trimmed: {response['trimmed_chars']} chars, "
            f"{response['trimmed_lines']} lines",
        ]
        return f"{body.strip()}\n\n" + "\n".join(trailers) + "\n"

    def _old_feedback(self, blob: str, task: str) -> str:
        text = self.repo.read_blobs([blob]).get(blob)
        if text is None:
            return f"note {blob[:12]}"
        for section in split_sections(text, self.config.task_branch_spec):
            if section.task_branch in (None, task):
                return feedback_text(section)
        return text.strip()

    # -- ending tasks ------------------------------------------------------------------------

    def _retire_ended(self, snap: Snapshot, active: set[str], report: Report) -> None:
        """Archive and remove the model branches of tasks that ended."""
        prefix = SHADOW_REFS + "/"
        checked_out: set[str] | None = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for ref, shadow in sorted(snap.refs.items()):
            if not ref.startswith(prefix):
                continue
            task, _, model = ref[len(prefix):].rpartition("/")
            if task in active:
                continue
            branch = model_branch(model, task)
            head = snap.branch(branch)
            if head is not None:
                if checked_out is None:
                    checked_out = self.repo.checked_out_branches()
                if branch in checked_out:
                    report.results.append(Result(
                        task, model, branch, "kept",
                        reason="the task ended but the branch is checked out; switch away "
                               "and sync again to archive it"))
                    continue
            archive = f"{ARCHIVE_REFS}/{task}/{model}/{stamp}"
            # The stamp is to the second: a task that ended twice within one would collide.
            suffix = 1
            while archive in snap.refs:
                suffix += 1
                archive = f"{ARCHIVE_REFS}/{task}/{model}/{stamp}-{suffix}"
            updates = [(archive, head or shadow, ZERO_OID), (ref, ZERO_OID, shadow)]
            if head is not None:
                updates.append((f"refs/heads/{branch}", ZERO_OID, head))
            if self.repo.update_refs(updates, f"symergion: task {task} ended"):
                report.results.append(Result(task, model, branch, "retired",
                                             commit=head or shadow, reason=f"archived as {archive}"))
                self.on_event(Event("done", task, model, detail=f"task ended; archived {archive}"))
