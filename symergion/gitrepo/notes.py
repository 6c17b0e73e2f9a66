"""Notes: the tasks and feedback, read with the order they were added in, and written."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from symergion.gitrepo.names import NOTES_REF, SYMERGION_REFS
from symergion.gitrepo.objects import Objects


@dataclass(frozen=True)
class Note:
    """One git note: the object it annotates, its blob and its text."""

    target: str
    blob: str
    text: str


@dataclass
class Snapshot:
    """The refs and notes symergion derives everything from, read at one moment."""

    refs: dict[str, str]
    notes_ref: str
    notes: dict[str, Note]
    note_order: dict[str, int] = field(default_factory=dict)

    def branch(self, name: str) -> str | None:
        """Return the commit a local branch points to, or None."""
        return self.refs.get(f"refs/heads/{name}")

    def branches(self) -> dict[str, str]:
        """Return local branch names mapped to their commits."""
        prefix = "refs/heads/"
        return {r[len(prefix):]: oid for r, oid in self.refs.items() if r.startswith(prefix)}


class Notes(Objects):
    """Reads and writes ``NOTES_REF``, whatever notes ref git is configured with."""

    def notes_ref(self) -> str:
        """Return the notes ref symergion reads and writes (always ``NOTES_REF``)."""
        return self._run(["notes", "get-ref"]).strip()

    def configured_notes_ref(self) -> str:
        """Return the notes ref plain ``git notes`` uses here (GIT_NOTES_REF, core.notesRef)."""
        value = os.environ.get("GIT_NOTES_REF") or self._run(
            ["config", "--get", "core.notesRef"], check=False).strip()
        if not value:
            return NOTES_REF
        # git's expand_notes_ref: "x" and "notes/x" both mean refs/notes/x.
        if value.startswith("refs/notes/"):
            return value
        return f"refs/{value}" if value.startswith("notes/") else f"refs/notes/{value}"

    def snapshot(self) -> Snapshot:
        """Read refs, notes and the order notes were added in, with a handful of git calls."""
        notes_ref = self.notes_ref()
        refs: dict[str, str] = {}
        out = self._run(["for-each-ref", "--format=%(objectname) %(refname)",
                         "refs/heads", SYMERGION_REFS, notes_ref])
        for line in out.splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        notes: dict[str, Note] = {}
        if notes_ref in refs:
            pairs = [line.split() for line in self._run(["notes", "list"]).splitlines()]
            texts = self.read_blobs([blob for blob, _ in pairs])
            for blob, target in pairs:
                notes[target] = Note(target=target, blob=blob, text=texts.get(blob, ""))
        snap = Snapshot(refs=refs, notes_ref=notes_ref, notes=notes)
        if notes:
            snap.note_order = self._note_order(notes_ref, notes)
        return snap

    def _note_order(self, notes_ref: str, notes: dict[str, Note]) -> dict[str, int]:
        """Rank notes by when they were last added, from the notes ref history.

        Notes whose history was rewritten or pruned rank after the known ones, by target.
        """
        out = self._run(["log", "--reverse", "--raw", "--no-renames", "--no-abbrev",
                         "--format=@%H", notes_ref], check=False)
        order: dict[str, int] = {}
        step = 0
        for line in out.splitlines():
            if line.startswith("@"):
                step += 1
            elif line.startswith(":"):
                meta, _, path = line.partition("\t")
                status = meta.split()[-1]
                target = path.replace("/", "")
                if status == "A":
                    order[target] = step
        last = step + 1
        return {t: order.get(t, last) for t in notes}

    def notes_at(self, ref: str) -> dict[str, str]:
        """Return the notes a notes commit holds (annotated object -> note blob)."""
        out = self._run(["ls-tree", "-r", "-z", ref])
        notes: dict[str, str] = {}
        for item in out.split("\0"):
            meta, _, path = item.partition("\t")
            if item and meta.split()[1] == "blob":
                notes[path.replace("/", "")] = meta.split()[2]  # fanout dirs join the id back
        return notes

    def notes_history(self, notes_ref: str) -> list[list[tuple[str, str, str, str]]]:
        """Return the notes ref's commits, oldest first, each as (status, target, old, new) rows.

        ``old``/``new`` are the note blobs before and after; a fanout rewrite shows as a delete
        and an add of the same target within one commit.
        """
        out = self._run(["log", "--reverse", "--raw", "--no-renames", "--no-abbrev",
                         "--format=@%H", notes_ref], check=False)
        history: list[list[tuple[str, str, str, str]]] = []
        for line in out.splitlines():
            if line.startswith("@"):
                history.append([])
            elif line.startswith(":") and history:
                meta, _, path = line.partition("\t")
                fields = meta.split()
                history[-1].append((fields[-1], path.replace("/", ""), fields[2], fields[3]))
        return history

    def note_changes(self, notes_ref: str) -> list[tuple[int, str, str, str, str]]:
        """Return every change the notes ref's history made, oldest first.

        Each change is ``(step, status, target, old_blob, new_blob)``: ``step`` counts notes
        commits from 1, ``status`` is git's A/M/D, and a missing blob is git's null id
        (``is_null_oid``). Notes that a merge brought in count as changes of that merge
        (against its first parent).
        """
        out = self._run(["log", "--reverse", "--first-parent", "-m", "--raw", "--no-renames",
                         "--no-abbrev", "--format=@%H", notes_ref, "--"], check=False)
        changes: list[tuple[int, str, str, str, str]] = []
        step = 0
        for line in out.splitlines():
            if line.startswith("@"):
                step += 1
            elif line.startswith(":"):
                meta, _, path = line.partition("\t")
                fields = meta.split()
                changes.append((step, fields[4][0], path.replace("/", ""), fields[2], fields[3]))
        return changes

    def add_note(self, target: str, text: str, *, append: bool = False) -> None:
        """Add (or append to) the note on ``target``."""
        args = ["notes", "append" if append else "add", "-F", "-", target]
        self._run(args, input=text.encode())

    def remove_note(self, target: str) -> None:
        """Remove the note on ``target``."""
        self._run(["notes", "remove", target])

    def replace_note(self, target: str, text: str) -> None:
        """Overwrite the note on ``target`` in place (the notes history shows a modification)."""
        self._run(["notes", "add", "-f", "-F", "-", target], input=text.encode())
